"""How RedisStore keeps newest-only marks, on the real server (the contract tests what
they do)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

pytest.importorskip("redis")

from iverton_webhooks.inbox.base import MarkAnswer, MarkKey, Status, Verdict
from iverton_webhooks.inbox.redis import RedisStore
from tests.conftest import service_url
from tests.stores import delete_redis_prefix, unique_name

pytestmark = pytest.mark.redis

KEY = MarkKey("default", "deal/d_1", "sync_deal")
T0 = 1_700_000_000.123456
#: One ulp after T0: kept with fewer than 17 significant digits, it would be T0.
LATER = T0 + 2.384185791015625e-07
RUN, SUPERSEDED = MarkAnswer.RUN, MarkAnswer.SUPERSEDED


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.654321

    def __call__(self) -> float:
        return self.now


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
