"""RedisStore's newest-only marks (`ResourceMarks`), on the real server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

pytest.importorskip("redis")

from iverton_webhooks.inbox.base import ResourceMarks, Status, Verdict
from iverton_webhooks.inbox.redis import RedisStore
from tests.conftest import service_url
from tests.marks_checks import KEY, LATER, RUN, SUPERSEDED, T0, Clock, MarksChecks
from tests.stores import delete_redis_prefix, unique_name

pytestmark = pytest.mark.redis


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> Iterator[RedisStore]:
    prefix = unique_name("iverton_test")
    made = RedisStore(service_url("redis"), prefix=prefix, clock=clock)
    yield made
    made.close()
    delete_redis_prefix(service_url("redis"), prefix)


class TestRedisMarks(MarksChecks):
    @contextmanager
    def racer(self, store: ResourceMarks) -> Iterator[ResourceMarks]:
        assert isinstance(store, RedisStore)
        own = RedisStore(service_url("redis"), prefix=store.prefix, clock=store.clock)
        try:
            yield own
        finally:
            own.close()


def test_a_mark_is_one_hash_under_the_endpoint_keys(store: RedisStore, clock: Clock) -> None:
    store.take_mark(KEY, LATER, "evt_2", "w1", 30)
    store.release_mark(KEY, "w1", (LATER, "evt_2"))
    key = "{" + store.prefix + "}:m:deal%2Fd_1:sync_deal"
    # Kept as repr: all 17 significant digits, not Lua's 14.
    assert store.redis.hgetall(key) == {
        b"applied_at": repr(LATER).encode(),
        b"applied_id": b"evt_2",
    }


def test_prune_keeps_marks(store: RedisStore, clock: Clock) -> None:
    # A mark outlives the events it saw: it is what supersedes their late, older kin.
    store.record("evt_1", "deal.won", datetime.fromtimestamp(T0, timezone.utc), b"{}")
    assert store.take_mark(KEY, T0, "evt_1", "w1", 30) is RUN
    store.release_mark(KEY, "w1", (T0, "evt_1"))
    claim = store.claim("evt_1", 30)
    assert claim is not None
    assert store.finish(claim, {}, Verdict(Status.DONE))
    assert store.prune(clock.now + 1) == 1
    assert store.take_mark(KEY, T0, "evt_1", "w2", 30) is SUPERSEDED
