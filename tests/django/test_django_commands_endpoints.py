"""``manage.py iverton_webhooks_endpoints``: the registry in the project's database (on
SQLite and PostgreSQL), with the flags, messages and exit codes of ``iverton-webhooks
endpoints``; secrets read from standard input and never shown whole; and ``--endpoint``
of the other commands naming a registered endpoint."""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from iverton_webhooks import Status
from iverton_webhooks import _operations as ops
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox.base import EndpointRecord
from iverton_webhooks.samples import sample_body
from tests.django.dj_helpers import ALIASES

pytestmark = pytest.mark.django_db(transaction=True, databases=ALIASES)

FIRST = "whsec_first_9f8a7b6c5d4e3f2a"
SECOND = "whsec_second_0a1b2c3d4e5f6a7b"
COMMAND = "iverton_webhooks_endpoints"


@pytest.fixture(
    params=[
        pytest.param("default", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def using(request: pytest.FixtureRequest, settings: Any) -> str:
    alias: str = request.param
    if alias not in ALIASES:
        pytest.skip("no PostgreSQL configured for this run")
    settings.IVERTON_WEBHOOKS = {
        **settings.IVERTON_WEBHOOKS,
        "DATABASE": alias,
        "ENDPOINT_REGISTRY": True,
    }
    return alias


class Commands:
    """Management commands with ``stdin`` as standard input; keeps all they printed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.shown: list[str] = []

    def __call__(self, *args: str, stdin: bytes = b"") -> tuple[int, str]:
        """The exit code, and the output (or the error's message)."""
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        out = io.StringIO()
        try:
            call_command(*args, stdout=out)
        except CommandError as error:
            self.shown.append(str(error))
            return error.returncode, str(error)
        self.shown.append(out.getvalue())
        return ops.OK, out.getvalue()

    def assert_no_secret_shown(self) -> None:
        for secret in (FIRST, SECOND):
            assert secret[6:] not in "".join(self.shown)


@pytest.fixture
def command(monkeypatch: pytest.MonkeyPatch) -> Iterator[Commands]:
    commands = Commands(monkeypatch)
    yield commands
    commands.assert_no_secret_shown()


def record_of(using: str, name: str) -> EndpointRecord | None:
    return DjangoStore(using).get_endpoint(name)


def test_add_list_rotate_disable_enable_remove(command: Commands, using: str) -> None:
    code, out = command(COMMAND, "add", "acme", stdin=f"{FIRST}\n".encode())
    assert code == ops.OK
    assert out.splitlines()[0] == "added endpoint acme, enabled, secret whsec_…3f2a"
    assert "running servers accept its requests within 5 s" in out
    assert [s.secret for s in record_of(using, "acme").secrets] == [FIRST]  # type: ignore[union-attr]
    assert command(COMMAND, "add", "acme", stdin=SECOND.encode()) == (
        ops.FAILED,
        "endpoint acme is registered already (rotate changes its secret)",
    )

    code, out = command(COMMAND, "list")
    assert code == ops.OK
    assert out.splitlines()[1].split()[:2] == ["acme", "enabled"]
    assert out.splitlines()[1].endswith("whsec_…3f2a current")

    before = time.time()
    code, out = command(COMMAND, "rotate", "acme", "--grace", "90", stdin=SECOND.encode())
    assert code == ops.OK
    found = record_of(using, "acme")
    assert found is not None
    assert found.secrets[0].secret == SECOND
    ends = found.secrets[1].valid_until
    assert ends is not None
    assert before + 90 - 1 <= ends <= time.time() + 90 + 1
    assert "the previous secret whsec_…3f2a is accepted until" in out
    assert "running servers take the change within 5 s" in out
    code, out = command(COMMAND, "list", "--json")
    assert [s["state"] for s in json.loads(out)["secrets"]] == ["current", "valid"]

    code, out = command(COMMAND, "disable", "acme")
    assert (code, record_of(using, "acme").enabled) == (ops.OK, False)  # type: ignore[union-attr]
    assert "within 5 s running servers answer its requests 404" in out
    code, _ = command(COMMAND, "enable", "acme")
    assert (code, record_of(using, "acme").enabled) == (ops.OK, True)  # type: ignore[union-attr]
    code, _ = command(COMMAND, "remove", "acme")
    assert (code, record_of(using, "acme")) == (ops.OK, None)
    for action in ("rotate", "disable", "enable", "remove"):
        assert command(COMMAND, action, "acme", stdin=SECOND.encode()) == (
            ops.FAILED,
            "no registered endpoint acme",
        )


def test_refused_secrets_names_grace_and_options(command: Commands, using: str) -> None:
    for stdin in (b"whsec_\xff_9f8a7b6c5d4e3f2a\n", b"\n", b"whsec_...\n"):
        code, message = command(COMMAND, "add", "acme", stdin=stdin)
        assert (code, message.startswith("the secret read from standard input")) == (
            ops.USAGE,
            True,
        )
    code, message = command(COMMAND, "add", "bad/name", stdin=FIRST.encode())
    assert (code, "cannot be used: it is part of the URL" in message) == (ops.USAGE, True)
    assert record_of(using, "acme") is None
    # No option carries a secret (run from a shell, argparse exits 2 on it).
    code, message = command(COMMAND, "add", "acme", "--secret", "whsec_x")
    assert "unrecognized arguments: --secret" in message
    assert record_of(using, "acme") is None
    command(COMMAND, "add", "acme", stdin=FIRST.encode())
    code, message = command(COMMAND, "rotate", "acme", "--grace", "-1", stdin=SECOND.encode())
    assert (code, message.startswith("--grace -1")) == (ops.USAGE, True)
    assert [s.secret for s in record_of(using, "acme").secrets] == [FIRST]  # type: ignore[union-attr]


def test_settings_that_do_not_serve_the_registry_are_warned(
    command: Commands, settings: Any
) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "ENDPOINT_REGISTRY": False}
    code, out = command(COMMAND, "add", "acme", stdin=FIRST.encode())
    assert code == ops.OK
    assert out.splitlines()[-1].startswith(
        "warning: this app's receiver does not serve registered endpoints"
    )


def test_endpoint_option_names_a_registered_endpoint(command: Commands, using: str) -> None:
    command(COMMAND, "add", "acme", stdin=FIRST.encode())
    command(COMMAND, "add", "globex", stdin=SECOND.encode())
    store = DjangoStore(using)
    for endpoint, event_id in (("acme", "evt_a1"), ("acme", "evt_a2"), ("globex", "evt_g1")):
        body = sample_body("deal.won", id=event_id)
        created_at = parse_envelope(body).created_at
        store.record(event_id, "deal.won", created_at, body, endpoint=endpoint)

    code, out = command("iverton_webhooks_stats", "--endpoint", "acme")
    assert (code, out.splitlines()[0]) == (ops.OK, "endpoint acme: 2 event(s)")
    code, out = command("iverton_webhooks_events", "--endpoint", "acme", "--json")
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == ["evt_a1", "evt_a2"]
    # The worker for one registered endpoint processes its events only.
    code, out = command("iverton_webhooks_worker", "--once", "--endpoint", "acme")
    assert (code, out) == (ops.OK, "processed 2 event(s) (done=2)\n")
    assert store.get("evt_a1", endpoint="acme").status is Status.DONE  # type: ignore[union-attr]
    assert store.get("evt_g1", endpoint="globex").status is Status.PENDING  # type: ignore[union-attr]
