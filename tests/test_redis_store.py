"""What is specific to RedisStore, against the real Redis server: the key layout, the
schema version and the migration of a wave-1 inbox, endpoint scoping, exact times."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis")

import redis

from iverton_webhooks._errors import ConfigurationError
from iverton_webhooks.inbox.base import (
    CLAIMABLE,
    FINISHED,
    HandlerOutcome,
    Status,
    Store,
    Verdict,
)
from iverton_webhooks.inbox.redis import SCHEMA_VERSION, RedisStore
from iverton_webhooks.store_contract import ContractClock, StoreContract
from tests.conftest import service_url
from tests.stores import delete_redis_prefix, unique_name

pytestmark = pytest.mark.redis

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


class TestRedisStoreContract(StoreContract):
    """The shared store contract, on the real server, under a fresh key prefix per test."""

    def make_store(self, clock: ContractClock, tmp_path: Path) -> RedisStore:
        return RedisStore(service_url("redis"), prefix=unique_name("iverton_test"), clock=clock)

    def cleanup_store(self, store: Store) -> None:
        assert isinstance(store, RedisStore)
        store.close()
        delete_redis_prefix(service_url("redis"), store.prefix)

    def make_unreachable_store(self, clock: ContractClock, tmp_path: Path) -> RedisStore:
        # A port nothing listens on: connecting is refused at once.
        return RedisStore("redis://127.0.0.1:1/0", timeout=1.0, clock=clock)

    def write_unreadable_row(self, store: Store, event_id: str) -> None:
        assert isinstance(store, RedisStore)
        store.record(event_id, "deal.won", CREATED, b"{}")
        # A time no datetime can hold, as an older version or another tool could write.
        key = "{" + store.prefix + "}:e:" + event_id  # the default endpoint's event hash
        store.redis.hset(key, "created_at", "1e300")


class Clock:
    def __init__(self, now: float = 1_700_000_000.123456) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def prefix() -> Iterator[str]:
    name = unique_name("iverton_test")
    yield name
    delete_redis_prefix(service_url("redis"), name)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(service_url("redis"))
    yield made
    made.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(prefix: str, clock: Clock) -> Iterator[RedisStore]:
    made = RedisStore(service_url("redis"), prefix=prefix, clock=clock)
    yield made
    made.close()


def write_wave1_inbox(client: redis.Redis, prefix: str, now: float) -> None:
    """The keys wave 1 (commit 1b12079) wrote, as literal commands: one event of each
    status it knew. No schema key: wave 1 had none."""
    tag = "{" + prefix + "}"
    created = repr(CREATED.timestamp())

    def event(n: int, event_id: str, status: str, **fields: Any) -> None:
        received = repr(now - 100 + n)
        client.hset(
            f"{tag}:e:{event_id}",
            mapping={
                "type": "deal.won",
                "created_at": created,
                "received_at": received,
                "body": f'{{"id":"{event_id}"}}'.encode(),
                "status": status,
                "attempts": fields.pop("attempts", 0),
                "deliveries": 1,
                "seq": n,
                **fields,
            },
        )
        client.zadd(f"{tag}:all", {event_id: n})
        client.zadd(f"{tag}:s:{status}", {event_id: n})
        if status in ("done", "dead"):
            client.zadd(f"{tag}:finished", {event_id: float(received)})
        client.set(f"{tag}:seq", n)

    event(1, "evt_pending", "pending")
    client.zadd(f"{tag}:due", {"evt_pending": now - 99})
    ok = '{"ok":true,"error":"","at":1700000000.5}'
    event(2, "evt_done", "done", attempts=1, processed_at=repr(now - 50), **{"o:first": ok})
    failed_at = repr(now - 10)
    event(3, "evt_failed", "failed", attempts=1, last_error="first: boom")
    client.hset(f"{tag}:e:evt_failed", "next_attempt_at", failed_at)
    client.zadd(f"{tag}:due", {"evt_failed": float(failed_at)})
    event(4, "evt_dead", "dead", attempts=5, last_error="first: boom")


def test_a_wave1_inbox_is_migrated_and_keeps_its_events(
    client: redis.Redis, prefix: str, clock: Clock
) -> None:
    write_wave1_inbox(client, prefix, clock.now)
    store = RedisStore(service_url("redis"), prefix=prefix, clock=clock)
    try:
        assert store.schema_version() is None  # nothing is touched before first use
        assert store.migrate() == 1
        assert store.schema_version() == SCHEMA_VERSION
        listed = {e.id: (e.status, e.endpoint) for e in store.list(endpoint=None)}
        assert listed == {
            "evt_pending": (Status.PENDING, "default"),
            "evt_done": (Status.DONE, "default"),
            "evt_failed": (Status.FAILED, "default"),
            "evt_dead": (Status.DEAD, "default"),
        }
        assert [e.id for e in store.list()] == ["evt_dead", "evt_failed", "evt_done", "evt_pending"]
        done = store.get("evt_done")
        assert done is not None
        assert done.succeeded_handlers == {"first"}
        assert done.unreadable is None
        assert store.due() == ["evt_pending", "evt_failed"]
        assert store.stats(endpoint=None) == dict.fromkeys(
            (Status.PENDING, Status.DONE, Status.FAILED, Status.DEAD), 1
        )
        claim = store.claim("evt_pending", 30)
        assert claim is not None
        assert store.finish(claim, {}, Verdict(Status.DONE))
        failed = store.claim("evt_failed", 30)
        assert failed is not None
        assert failed.event.attempts == 2
        assert store.replay("evt_dead")
        # New events keep counting from the old arrival number (newest first still holds).
        assert store.record("evt_new", "deal.won", CREATED, b"{}")
        assert store.list(limit=1)[0].id == "evt_new"
        assert store.prune(clock.now + 1) == 2  # evt_done and evt_pending, both done
        assert store.count() == 3
        # A second store (another process) finds the migration done, and it is idempotent.
        again = RedisStore(service_url("redis"), prefix=prefix, clock=clock)
        assert again.migrate() == SCHEMA_VERSION
        assert again.count() == 3
        again.close()
    finally:
        store.close()


def test_a_wave1_inbox_is_migrated_on_first_use_without_an_explicit_call(
    client: redis.Redis, prefix: str, clock: Clock
) -> None:
    write_wave1_inbox(client, prefix, clock.now)
    store = RedisStore(service_url("redis"), prefix=prefix, clock=clock)
    try:
        assert store.due() == ["evt_pending", "evt_failed"]
        assert store.schema_version() == SCHEMA_VERSION
        assert store.count() == 4  # endpoint=None: the wave-1 events are the default's
    finally:
        store.close()


def test_a_new_inbox_gets_the_current_schema(store: RedisStore) -> None:
    assert store.migrate() == 0
    assert store.schema_version() == SCHEMA_VERSION


def test_a_layout_newer_than_the_code_is_refused(
    client: redis.Redis, prefix: str, store: RedisStore
) -> None:
    client.set("{" + prefix + "}:schema", SCHEMA_VERSION + 1)
    with pytest.raises(ConfigurationError, match="newer than this code"):
        store.record("evt_1", "deal.won", CREATED, b"{}")


def test_endpoints_are_separate_inboxes_sharing_one_prefix(
    store: RedisStore, client: redis.Redis, prefix: str
) -> None:
    assert store.record("evt_1", "deal.won", CREATED, b"{}")
    # The same id under another endpoint is another event; ':' in a name cannot make
    # two endpoints' keys meet.
    assert store.record("evt_1", "deal.won", CREATED, b"{}", endpoint="b")
    assert store.record("e:evt_1", "deal.won", CREATED, b"{}", endpoint="b")
    assert store.record("evt_1", "deal.won", CREATED, b"{}", endpoint="b:e")
    assert store.count() == 4
    assert store.count(endpoint="b") == 2
    assert [e.id for e in store.list()] == ["evt_1"]
    assert {(e.endpoint, e.id) for e in store.list(endpoint=None)} == {
        ("default", "evt_1"),
        ("b", "evt_1"),
        ("b", "e:evt_1"),
        ("b:e", "evt_1"),
    }
    claim = store.claim("evt_1", 30, endpoint="b")
    assert claim is not None
    assert claim.event.endpoint == "b"
    assert store.due() == ["evt_1"]  # the default's is untouched
    assert store.due(endpoint="b") == ["e:evt_1"]
    assert store.finish(claim, {}, Verdict(Status.DONE))
    assert store.get("evt_1").status is Status.PENDING  # type: ignore[union-attr]
    assert store.get("evt_1", endpoint="b").status is Status.DONE  # type: ignore[union-attr]
    assert store.stats(endpoint="b") == {Status.PENDING: 1, Status.DONE: 1}
    assert store.stats(endpoint=None) == {Status.PENDING: 3, Status.DONE: 1}
    assert store.prune(time.time() + 10**10, endpoint="default") == 0
    assert store.prune(time.time() + 10**10) == 1
    # Every key stays under the one hash tag (one Cluster slot).
    keys = {key.decode() for key in client.scan_iter(match=f"*{prefix}*")}
    assert all(key.startswith("{" + prefix + "}:") for key in keys)


def test_quarantined_events_are_listed_never_due(store: RedisStore) -> None:
    assert store.record(
        "sha256:abc", "unknown", CREATED, b"not json", status=Status.QUARANTINED, error="bad"
    )
    assert store.due() == []
    assert store.claim("sha256:abc", 30) is None
    event = store.get("sha256:abc")
    assert event is not None
    assert (event.status, event.last_error, event.body) == (
        Status.QUARANTINED,
        "bad",
        b"not json",
    )
    assert [e.id for e in store.list(status="quarantined")] == ["sha256:abc"]
    assert store.replay("sha256:abc")
    assert store.due() == ["sha256:abc"]


def test_an_unreadable_row_is_shown_quarantined_and_blocks_nothing(
    store: RedisStore, client: redis.Redis, prefix: str
) -> None:
    store.record("evt_bad", "deal.won", CREATED, b"{}")
    store.record("evt_good", "deal.won", CREATED, b"{}")
    # A time no datetime can hold, as an older version could have written.
    client.hset("{" + prefix + "}:e:evt_bad", "created_at", "1e300")
    events = {e.id: e for e in store.list()}
    assert events["evt_bad"].status is Status.QUARANTINED
    assert events["evt_bad"].unreadable
    assert events["evt_good"].unreadable is None
    assert [e.id for e in store.list(status="pending")] == ["evt_good", "evt_bad"]
    assert store.claim("evt_good", 30) is not None


def test_renew_extends_a_held_lease_and_fails_once_it_is_lost(
    store: RedisStore, clock: Clock
) -> None:
    store.record("evt_1", "deal.won", CREATED, b"{}")
    claim = store.claim("evt_1", 10)
    assert claim is not None
    clock.now += 9
    assert store.renew(claim, 10)
    clock.now += 9  # past the first lease, inside the renewed one
    assert store.due() == []
    clock.now += 2
    assert store.due() == ["evt_1"]
    thief = store.claim("evt_1", 10)
    assert thief is not None
    assert not store.renew(claim, 10)
    assert not store.checkpoint(claim, {"h": HandlerOutcome(ok=True)})
    assert not store.finish(claim, {}, Verdict(Status.DONE))
    assert store.finish(thief, {"h": HandlerOutcome(ok=True)}, Verdict(Status.DONE))
    assert store.get("evt_1").attempts == 2  # type: ignore[union-attr]


def test_times_survive_the_round_trip_exactly_at_the_lease_boundary(
    store: RedisStore, clock: Clock
) -> None:
    # Lua prints numbers with 14 significant digits: that must not shift a due time.
    store.record("evt_1", "deal.won", CREATED, b"{}")
    assert store.due() == ["evt_1"]
    claim = store.claim("evt_1", lease_seconds=30.000001)
    assert claim is not None
    clock.now += 30.000001
    assert store.due() == ["evt_1"]
    assert store.claim("evt_1", 30) is not None
    assert store.finish(claim, {}, Verdict(Status.DONE)) is False  # lease lost
    event = store.get("evt_1")
    assert event is not None
    assert event.received_at.timestamp() == pytest.approx(1_700_000_000.123456, abs=1e-6)


def test_every_key_stays_under_the_prefix(
    store: RedisStore, client: redis.Redis, prefix: str, clock: Clock
) -> None:
    store.record("evt_1", "deal.won", CREATED, b"{}")
    claim = store.claim("evt_1", 30)
    assert claim is not None
    store.finish(claim, {}, Verdict(Status.DONE))
    keys = {key.decode() for key in client.scan_iter(match=f"*{prefix}*")}
    assert keys <= {*store.keys(), f"{{{prefix}}}:e:evt_1"}
    assert f"{{{prefix}}}:e:evt_1" in keys
    assert store.prune(clock.now + 1) == 1
    assert store.count() == 0


def test_lua_status_sets_come_from_the_lifecycle_module() -> None:
    from iverton_webhooks.inbox import redis as module

    for statuses in (CLAIMABLE, FINISHED):
        table = module._lua_set(statuses)
        assert all(f'["{status.value}"] = true' in table for status in statuses)
    # No status name is spelled out in the scripts themselves.
    scripts = [module._RECORD, module._CLAIM, module._CLAIMED, module._MOVE]
    for status in Status:
        assert all(f"'{status.value}'" not in script for script in scripts)


def test_a_receiver_on_redis_processes_quarantines_and_scopes_by_endpoint(
    prefix: str,
) -> None:
    from iverton_webhooks import Receiver, Router
    from iverton_webhooks.samples import sample_body
    from tests.conftest import SECRET, signed_headers

    seen: list[tuple[str, str]] = []
    routers = {name: Router() for name in ("default", "billing")}
    for name, router in routers.items():
        router.add(lambda event, name=name: seen.append((name, event.id)), "*", name="h")
    store = RedisStore(service_url("redis"), prefix=prefix)
    receivers = [
        Receiver(SECRET, endpoint=name, router=router, store=store, runner="inline")
        for name, router in routers.items()
    ]
    try:
        for receiver in receivers:
            body = sample_body("deal.won", id="evt_same")
            assert receiver.receive("POST", body, signed_headers(body)).status == 200
        bad = b"signed, but not an event"
        reply = receivers[0].receive("POST", bad, signed_headers(bad))
        assert (reply.status, b"quarantined" in reply.body) == (200, True)
        assert seen == [("default", "evt_same"), ("billing", "evt_same")]
        assert store.stats(endpoint=None) == {Status.DONE: 2, Status.QUARANTINED: 1}
        assert store.due() == []
        assert store.due(endpoint="billing") == []
    finally:
        for receiver in receivers:
            receiver.close()
