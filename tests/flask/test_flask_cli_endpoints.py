"""``flask iverton endpoints``: the registry of the app's own store, with the flags,
messages and exit codes of ``iverton-webhooks endpoints``; secrets read from standard
input and never shown whole; and ``--endpoint`` naming a registered endpoint."""

from __future__ import annotations

import json
import time

from flask import Flask

from iverton_webhooks import Status
from iverton_webhooks import _operations as ops
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox.base import EndpointRecord, EndpointRegistry
from iverton_webhooks.samples import sample_body
from tests.flask.flask_helpers import receiver_of
from tests.flask.test_flask_cli import MakeApp

FIRST = "whsec_first_9f8a7b6c5d4e3f2a"
SECOND = "whsec_second_0a1b2c3d4e5f6a7b"


class Cli:
    """``flask iverton endpoints ...`` on one app; keeps all it printed."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.shown: list[str] = []

    def __call__(self, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        result = self.app.test_cli_runner().invoke(args=["iverton", *args], input=stdin)
        self.shown.append(result.output)
        return result.exit_code, result.stdout, result.stderr

    def record(self, name: str) -> EndpointRecord | None:
        store = receiver_of(self.app).store
        assert isinstance(store, EndpointRegistry)
        return store.get_endpoint(name)

    def assert_no_secret_shown(self) -> None:
        for secret in (FIRST, SECOND):
            assert secret[6:] not in "".join(self.shown)


def test_add_list_rotate_disable_enable_remove(make_app: MakeApp) -> None:
    cli = Cli(make_app(endpoint_registry=True))
    code, out, _ = cli("endpoints", "add", "acme", stdin=f"{FIRST}\n".encode())
    assert code == ops.OK
    assert out.splitlines()[0] == "added endpoint acme, enabled, secret whsec_…3f2a"
    assert "running servers accept its requests within 5 s" in out
    assert [s.secret for s in cli.record("acme").secrets] == [FIRST]  # type: ignore[union-attr]

    code, _, err = cli("endpoints", "add", "acme", stdin=SECOND.encode())
    assert code == ops.FAILED
    assert "endpoint acme is registered already (rotate changes its secret)" in err

    code, out, _ = cli("endpoints", "list")
    assert code == ops.OK
    assert out.splitlines()[1].split()[:2] == ["acme", "enabled"]
    assert out.splitlines()[1].endswith("whsec_…3f2a current")

    before = time.time()
    code, out, _ = cli("endpoints", "rotate", "acme", "--grace", "30m", stdin=SECOND.encode())
    assert code == ops.OK
    found = cli.record("acme")
    assert found is not None
    assert found.secrets[0].secret == SECOND
    ends = found.secrets[1].valid_until
    assert ends is not None
    assert before + 1800 - 1 <= ends <= time.time() + 1800 + 1
    assert "the previous secret whsec_…3f2a is accepted until" in out
    assert "running servers take the change within 5 s" in out
    code, out, _ = cli("endpoints", "list", "--json")
    states = [s["state"] for s in json.loads(out)["secrets"]]
    assert (code, states) == (ops.OK, ["current", "valid"])

    code, out, _ = cli("endpoints", "disable", "acme")
    assert (code, cli.record("acme").enabled) == (ops.OK, False)  # type: ignore[union-attr]
    assert "within 5 s running servers answer its requests 404" in out
    code, _, _ = cli("endpoints", "enable", "acme")
    assert (code, cli.record("acme").enabled) == (ops.OK, True)  # type: ignore[union-attr]
    code, out, _ = cli("endpoints", "remove", "acme")
    assert (code, cli.record("acme")) == (ops.OK, None)
    for action in ("rotate", "disable", "enable", "remove"):
        code, _, err = cli("endpoints", action, "acme", stdin=SECOND.encode())
        assert (code, "no registered endpoint acme" in err) == (ops.FAILED, True)
    cli.assert_no_secret_shown()


def test_refused_secrets_names_and_options(make_app: MakeApp) -> None:
    cli = Cli(make_app(endpoint_registry=True))
    for stdin in (b"whsec_\xff_9f8a7b6c5d4e3f2a\n", b"\n", b"whsec_...\n"):
        code, _, err = cli("endpoints", "add", "acme", stdin=stdin)
        assert (code, "the secret read from standard input" in err) == (ops.USAGE, True)
    code, _, err = cli("endpoints", "add", "bad/name", stdin=FIRST.encode())
    assert (code, "cannot be used: it is part of the URL" in err) == (ops.USAGE, True)
    assert cli.record("acme") is None
    code, _, err = cli("endpoints", "add", "acme", "--secret", "whsec_x")
    assert (code, "No such option" in err and "--secret" in err) == (ops.USAGE, True)
    cli("endpoints", "add", "acme", stdin=FIRST.encode())
    code, _, err = cli("endpoints", "rotate", "acme", "--grace", "soon", stdin=SECOND.encode())
    assert (code, "--grace soon" in err) == (ops.USAGE, True)
    assert [s.secret for s in cli.record("acme").secrets] == [FIRST]  # type: ignore[union-attr]
    cli.assert_no_secret_shown()


def test_an_app_that_does_not_serve_the_registry_is_warned(make_app: MakeApp) -> None:
    cli = Cli(make_app())
    code, out, _ = cli("endpoints", "add", "acme", stdin=FIRST.encode())
    assert code == ops.OK
    assert out.splitlines()[-1].startswith(
        "warning: this app's receiver does not serve registered endpoints"
    )
    code, _, err = cli("stats", "--endpoint", "acme")
    assert (code, "no webhook endpoint 'acme'" in err) == (ops.USAGE, True)


def test_endpoint_option_names_a_registered_endpoint(make_app: MakeApp) -> None:
    app = make_app(endpoint_registry=True)
    cli = Cli(app)
    cli("endpoints", "add", "acme", stdin=FIRST.encode())
    cli("endpoints", "add", "globex", stdin=SECOND.encode())
    store = receiver_of(app).store
    for endpoint, event_id in (("acme", "evt_a1"), ("acme", "evt_a2"), ("globex", "evt_g1")):
        body = sample_body("deal.won", id=event_id)
        created_at = parse_envelope(body).created_at
        store.record(event_id, "deal.won", created_at, body, endpoint=endpoint)

    code, out, _ = cli("stats", "--endpoint", "acme")
    assert (code, out.splitlines()[0]) == (ops.OK, "endpoint acme: 2 event(s)")
    code, out, _ = cli("events", "--endpoint", "acme", "--json")
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == ["evt_a1", "evt_a2"]
    code, out, _ = cli("worker", "--once", "--endpoint", "acme")
    assert (code, out) == (ops.OK, "processed 2 event(s) (done=2)\n")
    assert store.get("evt_g1", endpoint="globex").status is Status.PENDING  # type: ignore[union-attr]
    code, _, err = cli("stats", "--endpoint", "initech")
    assert (code, "no webhook endpoint 'initech'" in err) == (ops.USAGE, True)
