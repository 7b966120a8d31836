"""Endpoints registered in the store, on the request path and in processing: one
receiver serves every registered endpoint, each checked against its own secrets, its
events kept and processed under its name; unknown and disabled names get one 404."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import MemoryStore, Processor, Receiver, Router, SQLiteStore, sign
from iverton_webhooks._directory import EndpointDirectory, check_endpoint_name
from iverton_webhooks._errors import ConfigurationError
from iverton_webhooks._settings import ROTATION_GRACE, SENDER_RETRY_SPAN, SettingError, Settings
from iverton_webhooks.events import Event
from iverton_webhooks.inbox.base import EndpointRecord, Status
from iverton_webhooks.runners import BaseRunner
from iverton_webhooks.samples import sample_body
from iverton_webhooks.testing import isolate
from tests.conftest import wait_for
from tests.stores import STORE_PARAMS, STORES

ACME = "whsec_acme_4f3e2d1c0b9a"
ACME_NEXT = "whsec_acme_next_8e7d6c5b"
GLOBEX = "whsec_globex_1a2b3c4d5e"
NOT_FOUND = b'{"error":"no such endpoint"}'


def deliver(
    receiver: Receiver, secret: str, endpoint: str | None, event_id: str = "evt_1"
) -> tuple[int, bytes]:
    body = sample_body("deal.won", id=event_id)
    reply = receiver.receive("POST", body, {"X-Iverton-Signature": sign(body, secret)}, endpoint)
    return reply.status, reply.body


class CountingStore(MemoryStore):
    """A memory store that counts registry reads (and can fail them)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self.reads = 0
        self.down = False

    def get_endpoint(self, name: str) -> EndpointRecord | None:
        self.reads += 1
        if self.down:
            raise ConnectionError("registry unreachable")
        return super().get_endpoint(name)


class Collect(BaseRunner):
    """Keeps what it is given: processing is left to whoever comes next."""

    def __init__(self) -> None:
        self.given: list[tuple[str, str | None]] = []

    def submit(self, event_id: str, endpoint: str | None = None) -> None:
        self.given.append((event_id, endpoint))


def seen_by(router: Router) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def record(event: Event[Any]) -> None:
        seen.append((event.endpoint, event.id))

    router.add(record, "deal.won", name="record")
    return seen


@pytest.fixture(params=STORE_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with STORES[request.param](tmp_path, time.time) as opened:
        yield opened


def test_a_registered_endpoint_is_served_and_its_events_kept_and_processed_under_its_name(
    store: Any, router: Router
) -> None:
    seen = seen_by(router)
    receiver = Receiver(store=store, router=router, runner="inline", endpoint_registry=True)
    assert store.add_endpoint("acme", ACME)
    assert store.add_endpoint("globex", GLOBEX)

    assert deliver(receiver, ACME, "acme", "evt_a") == (200, b'{"status":"accepted"}')
    assert deliver(receiver, GLOBEX, "globex", "evt_a")[0] == 200  # same id, other endpoint
    assert deliver(receiver, ACME, "acme", "evt_a") == (200, b'{"status":"duplicate"}')
    assert deliver(receiver, GLOBEX, "acme", "evt_b")[0] == 401  # another endpoint's secret

    assert seen == [("acme", "evt_a"), ("globex", "evt_a")]
    for name in ("acme", "globex"):
        stored = store.get("evt_a", endpoint=name)
        assert stored is not None
        assert stored.status is Status.DONE
    assert store.get("evt_a") is None  # nothing under the receiver's own endpoint
    # No secret of its own: its own endpoint is served to nobody.
    assert deliver(receiver, ACME, None) == (404, NOT_FOUND)


def test_unknown_disabled_removed_and_impossible_names_get_the_same_404(router: Router) -> None:
    store = CountingStore()
    receiver = Receiver(store=store, router=router, runner=Collect(), endpoint_registry=True)
    store.add_endpoint("acme", ACME)
    store.add_endpoint("globex", GLOBEX)
    store.add_endpoint("initech", ACME)
    store.set_endpoint_enabled("globex", False)
    store.remove_endpoint("initech")
    for name, secret in (("hooli", ACME), ("globex", GLOBEX), ("initech", ACME)):
        assert deliver(receiver, secret, name) == (404, NOT_FOUND), name
    reads = store.reads
    for name in ("", "../acme", "acme/x", "a" * 101, "ac me", "ünï", "acme\x00", "-acme"):
        assert deliver(receiver, ACME, name) == (404, NOT_FOUND), repr(name)
    assert store.reads == reads  # a name no endpoint may have costs no store read
    # A wrong method is still 405, before the name is looked up.
    assert receiver.receive("GET", b"", {}, "hooli").status == 405


class Notes:
    """An answer log that keeps what it is told."""

    def __init__(self) -> None:
        self.quiet: dict[str, float] = {}
        self.notes: list[tuple[str, bool, str]] = []

    def note(self, endpoint: str, ok: bool, kind: str) -> int:
        self.notes.append((endpoint, ok, kind))
        return 0 if ok else sum(1 for n in self.notes if n[0] == endpoint and not n[1])


def test_answers_are_read_once_per_period_and_unknown_names_are_not_counted(
    router: Router,
) -> None:
    store = CountingStore()
    notes = Notes()
    receiver = Receiver(
        store=store, router=router, runner=Collect(), endpoint_registry=True, answer_log=notes
    )
    store.add_endpoint("acme", ACME)
    for n in range(50):
        assert deliver(receiver, ACME, "acme", f"evt_{n}")[0] == 200
    for _ in range(50):
        assert deliver(receiver, ACME, "hooli")[0] == 404
    assert store.reads == 2  # one per name
    # The sender's failures at a registered endpoint count towards its disablement
    # warning; a made-up name leaves no trace.
    assert deliver(receiver, GLOBEX, "acme", "evt_x")[0] == 401
    assert {endpoint for endpoint, _, _ in notes.notes} == {"acme"}
    assert notes.notes[-1] == ("acme", False, "signature")


def test_a_disablement_takes_effect_when_the_cached_answer_ends(router: Router) -> None:
    store = MemoryStore()
    receiver = Receiver(store=store, router=router, runner=Collect(), endpoint_registry=True)
    assert receiver.directory is not None
    receiver.directory.ttl = 0.3
    store.add_endpoint("acme", ACME)
    assert deliver(receiver, ACME, "acme", "evt_1")[0] == 200
    store.set_endpoint_enabled("acme", False)
    time.sleep(0.35)
    assert deliver(receiver, ACME, "acme", "evt_2") == (404, NOT_FOUND)
    store.set_endpoint_enabled("acme", True)
    time.sleep(1.05)  # a refusal is re-read once it is a second old
    assert deliver(receiver, ACME, "acme", "evt_2")[0] == 200


def test_a_rotation_accepts_the_new_secret_at_once_and_the_old_until_its_grace_ends(
    router: Router,
) -> None:
    store = MemoryStore()
    receiver = Receiver(store=store, router=router, runner=Collect(), endpoint_registry=True)
    store.add_endpoint("acme", ACME)
    assert deliver(receiver, ACME, "acme", "evt_1")[0] == 200  # cached for 5 s
    time.sleep(1.05)
    store.rotate_endpoint("acme", ACME_NEXT, grace_seconds=1.0)
    assert deliver(receiver, ACME_NEXT, "acme", "evt_2")[0] == 200  # re-read on refusal
    assert deliver(receiver, ACME, "acme", "evt_3")[0] == 200  # within the grace
    time.sleep(1.1)
    # The cached answer ends with the grace, though 5 s have not passed.
    assert deliver(receiver, ACME, "acme", "evt_4")[0] == 401
    assert deliver(receiver, ACME_NEXT, "acme", "evt_5")[0] == 200


def test_the_registry_grace_by_default_outlasts_the_senders_retries() -> None:
    assert ROTATION_GRACE > SENDER_RETRY_SPAN


def test_a_registry_that_cannot_be_read_is_a_503_and_the_own_endpoint_still_works(
    router: Router,
) -> None:
    store = CountingStore()
    receiver = Receiver(
        secret=GLOBEX, store=store, router=router, runner=Collect(), endpoint_registry=True
    )
    store.add_endpoint("acme", ACME)
    store.down = True
    assert deliver(receiver, ACME, "acme")[0] == 503
    assert deliver(receiver, GLOBEX, None, "evt_own")[0] == 200
    store.down = False
    assert deliver(receiver, ACME, "acme")[0] == 200


def test_the_receivers_own_endpoint_wins_a_name_clash(router: Router) -> None:
    store = MemoryStore()
    receiver = Receiver(
        secret=GLOBEX, store=store, router=router, runner=Collect(), endpoint_registry=True
    )
    store.add_endpoint("default", ACME)
    assert deliver(receiver, ACME, "default")[0] == 401
    assert deliver(receiver, GLOBEX, "default")[0] == 200


def test_without_the_registry_a_named_endpoint_is_unknown(router: Router) -> None:
    store = MemoryStore()
    receiver = Receiver(secret=GLOBEX, store=store, router=router, runner=Collect())
    store.add_endpoint("acme", ACME)
    assert receiver.directory is None
    assert deliver(receiver, ACME, "acme") == (404, NOT_FOUND)
    with pytest.raises(ConfigurationError, match="no webhook secret"):
        Receiver(store=store, router=router)


def test_an_endpoint_whose_secret_is_unusable_refuses_and_says_why_without_it(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore()
    receiver = Receiver(store=store, router=router, runner=Collect(), endpoint_registry=True)
    store.add_endpoint("acme", " whsec_padded_secret ")  # stores do not validate
    with caplog.at_level(logging.ERROR, logger="iverton_webhooks"):
        assert deliver(receiver, " whsec_padded_secret ", "acme")[0] == 401
    assert "acme has no usable secret" in caplog.text
    assert "padded" not in caplog.text


def test_the_hand_off_names_the_endpoint_only_for_registered_ones(router: Router) -> None:
    runner = Collect()
    store = MemoryStore()
    receiver = Receiver(
        secret=GLOBEX, store=store, router=router, runner=runner, endpoint_registry=True
    )
    store.add_endpoint("acme", ACME)
    deliver(receiver, GLOBEX, None, "evt_own")
    deliver(receiver, ACME, "acme", "evt_acme")
    assert runner.given == [("evt_own", None), ("evt_acme", "acme")]


def test_registered_endpoints_pending_after_a_restart_are_processed_with_no_traffic(
    tmp_path: Path, router: Router
) -> None:
    path = tmp_path / "inbox.sqlite3"
    first = Receiver(
        secret=GLOBEX, store=f"sqlite:///{path}", router=router, runner=Collect(),
        endpoint_registry=True,
    )  # fmt: skip
    store = first.store
    assert isinstance(store, SQLiteStore)
    store.add_endpoint("acme", ACME)
    store.add_endpoint("initech", ACME)
    for n in range(3):
        assert deliver(first, ACME, "acme", f"evt_{n}")[0] == 200
    assert deliver(first, ACME, "initech", "evt_0")[0] == 200
    store.set_endpoint_enabled("initech", False)  # what it accepted is still owed
    first.close()

    seen = seen_by(router)
    # A process that does not serve the registry leaves these events alone.
    assert Processor(SQLiteStore(path), router).recover() == {}
    second = Receiver(
        secret=GLOBEX, store=f"sqlite:///{path}", router=router, runner="thread",
        endpoint_registry=True,
    )  # fmt: skip
    try:
        second.start()
        assert wait_for(lambda: len(seen) == 4, timeout=20)
    finally:
        second.close()
    assert sorted(seen) == [
        ("acme", "evt_0"),
        ("acme", "evt_1"),
        ("acme", "evt_2"),
        ("initech", "evt_0"),
    ]


def test_recover_counts_registered_endpoints_events(router: Router) -> None:
    seen = seen_by(router)
    store = MemoryStore()
    receiver = Receiver(store=store, router=router, runner=Collect(), endpoint_registry=True)
    store.add_endpoint("acme", ACME)
    store.add_endpoint("globex", GLOBEX)
    deliver(receiver, ACME, "acme", "evt_1")
    deliver(receiver, GLOBEX, "globex", "evt_1")
    counts = receiver.recover()
    assert sum(counts.values()) == 2
    assert sorted(seen) == [("acme", "evt_1"), ("globex", "evt_1")]


def test_the_endpoint_of_an_event_cannot_come_from_its_body(router: Router) -> None:
    seen = seen_by(router)
    store = MemoryStore()
    receiver = Receiver(store=store, router=router, runner="inline", endpoint_registry=True)
    store.add_endpoint("acme", ACME)
    body = sample_body("deal.won", id="evt_1")[:-1] + b',"endpoint":"globex","_endpoint":"x"}'
    reply = receiver.receive("POST", body, {"X-Iverton-Signature": sign(body, ACME)}, "acme")
    assert reply.status == 200
    assert seen == [("acme", "evt_1")]


def test_the_setting_is_a_boolean_from_every_surface() -> None:
    assert Settings.from_mapping({"ENDPOINT_REGISTRY": True}, where="cfg").endpoint_registry
    with pytest.raises(SettingError, match=r"cfg\['ENDPOINT_REGISTRY'\]"):
        Settings.from_mapping({"ENDPOINT_REGISTRY": "yes"}, where="cfg")


def test_a_store_without_a_registry_is_refused_at_start() -> None:
    class NoRegistry:
        """Every store method a processor needs, by delegation; no registry."""

        def __init__(self) -> None:
            self._inner = MemoryStore()

        def __getattr__(self, name: str) -> Any:
            if name.endswith("_endpoint") or name == "list_endpoints":
                raise AttributeError(name)
            return getattr(self._inner, name)

    with pytest.raises(ConfigurationError, match="keeps no endpoints"):
        Processor(NoRegistry(), Router(), settings=Settings(endpoint_registry=True))  # type: ignore[arg-type]


def test_endpoint_names_are_one_url_segment() -> None:
    for good in ("acme", "acme-eu.1", "A_b~c", "9" * 100):
        assert check_endpoint_name(good) == good
    for bad in ("", "-acme", "a/b", "a b", "é", "a" * 101, None, 7):
        with pytest.raises(ConfigurationError, match="cannot be used"):
            check_endpoint_name(bad)


def test_the_directory_keeps_a_bounded_number_of_answers() -> None:
    store = MemoryStore()
    directory = EndpointDirectory(store, size=3)
    for n in range(10):
        assert directory.checker(f"name{n}") is None
    assert len(directory._answers) == 3


def test_isolate_looks_registered_endpoints_up_in_the_isolated_store(
    tmp_path: Path, router: Router
) -> None:
    seen = seen_by(router)
    receiver = Receiver(
        store=f"sqlite:///{tmp_path / 'real.sqlite3'}",
        router=router,
        runner=Collect(),
        endpoint_registry=True,
    )
    real = receiver.store
    assert isinstance(real, SQLiteStore)
    real.add_endpoint("acme", ACME)
    with isolate(receiver) as app:
        assert deliver(receiver, ACME, "globex", "evt_1") == (404, NOT_FOUND)
        app.store.add_endpoint("acme", GLOBEX)  # type: ignore[attr-defined]
        assert deliver(receiver, ACME, "acme", "evt_1")[0] == 401  # the real one's secret
        assert deliver(receiver, GLOBEX, "acme", "evt_1")[0] == 200
    assert seen == [("acme", "evt_1")]
    assert real.get("evt_1", endpoint="acme") is None
    assert deliver(receiver, ACME, "acme", "evt_2")[0] == 200  # the real registry again
    receiver.close()
