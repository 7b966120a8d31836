"""A Redis inbox (redis-py), shared by every process and host that reaches the server.

Durability is whatever the Redis server's persistence gives, and nothing more: a 2xx
means the event is in the server's memory. For an inbox you can trust, run Redis with
``appendonly yes`` and ``appendfsync everysec`` (a crash or power cut can lose about the
last second or two of acknowledged events) or ``appendfsync always`` (loses none, at an
fsync per write). With persistence off, a Redis restart forgets every
event, pending ones included. With replicas, failover can also lose the last writes. Run
it with ``maxmemory-policy noeviction`` too: an evicting policy drops events silently
(with ``noeviction`` a full Redis refuses writes, and the receiver answers 503).

Layout, under the hash tag ``{prefix}``, so that all keys would share one Redis Cluster
slot (a Lua script may touch several keys only within one slot):

- ``{prefix}:e:<id>``: a hash per event: its fields, plus ``o:<handler>`` per outcome;
- ``{prefix}:due``: sorted set, id -> due time, holding only unfinished events;
- ``{prefix}:all`` and ``{prefix}:s:<status>``: sorted sets, id -> arrival number;
- ``{prefix}:finished``: sorted set of done and dead events, id -> received time (pruning);
- ``{prefix}:seq``: the arrival counter.

Each transition is one Lua script, so it is atomic: nobody sees or makes half of it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import cast

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "RedisStore needs redis-py: pip install 'iverton-webhooks[redis]'", name="redis"
    ) from exc

from ..errors import ConfigurationError
from .base import Claim, HandlerOutcome, Status, StoredEvent, to_datetime

_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_STATUSES = ("pending", "processing", "done", "failed", "dead")

# Shared by the transition scripts, whose KEYS always start: event hash, due, finished,
# then one sorted set per status in _STATUSES order. Numbers that are stored are passed in
# from Python as strings: Lua would print them back with only 14 significant digits.
_PRELUDE = """
local EVENT, DUE, FINISHED = KEYS[1], KEYS[2], KEYS[3]
local BY_STATUS = {pending = KEYS[4], processing = KEYS[5], done = KEYS[6],
                   failed = KEYS[7], dead = KEYS[8]}
local function set_status(id, old, new)
  local seq = redis.call('HGET', EVENT, 'seq')
  redis.call('ZREM', BY_STATUS[old], id)
  redis.call('ZADD', BY_STATUS[new], seq, id)
  redis.call('HSET', EVENT, 'status', new)
  if new == 'done' or new == 'dead' then
    redis.call('ZADD', FINISHED, redis.call('HGET', EVENT, 'received_at'), id)
  else
    redis.call('ZREM', FINISHED, id)
  end
end
local function merge_outcomes(first)
  for i = first, #ARGV, 2 do
    redis.call('HSET', EVENT, 'o:' .. ARGV[i], ARGV[i + 1])
  end
end
local function holds_lease(token)
  return redis.call('HGET', EVENT, 'lease_token') == token
end
"""

# KEYS[9] all, KEYS[10] seq. ARGV: id, type, created_at, now, body.
_RECORD = """
if redis.call('EXISTS', EVENT) == 1 then
  redis.call('HINCRBY', EVENT, 'deliveries', 1)
  return 0
end
local seq = redis.call('INCR', KEYS[10])
redis.call('HSET', EVENT, 'type', ARGV[2], 'created_at', ARGV[3], 'received_at', ARGV[4],
           'body', ARGV[5], 'status', 'pending', 'attempts', 0, 'deliveries', 1, 'seq', seq)
redis.call('ZADD', DUE, ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[9], seq, ARGV[1])
redis.call('ZADD', BY_STATUS.pending, seq, ARGV[1])
return 1
"""

# ARGV: id, now, lease_until, token. Returns the event's hash, or nil.
_CLAIM = """
local status = redis.call('HGET', EVENT, 'status')
if status ~= 'pending' and status ~= 'failed' and status ~= 'processing' then return false end
local due = redis.call('ZSCORE', DUE, ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then return false end
set_status(ARGV[1], status, 'processing')
redis.call('HINCRBY', EVENT, 'attempts', 1)
redis.call('HSET', EVENT, 'lease_token', ARGV[4], 'lease_until', ARGV[3])
redis.call('ZADD', DUE, ARGV[3], ARGV[1])
return redis.call('HGETALL', EVENT)
"""

# ARGV: id, token, then outcome name/json pairs.
_CHECKPOINT = """
if not holds_lease(ARGV[2]) then return 0 end
merge_outcomes(3)
return 1
"""

# ARGV: id, token, now, then outcome name/json pairs.
_COMPLETE = """
if not holds_lease(ARGV[2]) then return 0 end
merge_outcomes(4)
set_status(ARGV[1], 'processing', 'done')
redis.call('HSET', EVENT, 'processed_at', ARGV[3])
redis.call('HDEL', EVENT, 'last_error', 'next_attempt_at', 'lease_until', 'lease_token')
redis.call('ZREM', DUE, ARGV[1])
return 1
"""

# ARGV: id, token, status, error, retry_at ('' for none: dead), then outcome pairs.
_FAIL = """
if not holds_lease(ARGV[2]) then return 0 end
merge_outcomes(6)
set_status(ARGV[1], 'processing', ARGV[3])
redis.call('HSET', EVENT, 'last_error', ARGV[4])
redis.call('HDEL', EVENT, 'lease_until', 'lease_token')
if ARGV[5] == '' then
  redis.call('HDEL', EVENT, 'next_attempt_at')
  redis.call('ZREM', DUE, ARGV[1])
else
  redis.call('HSET', EVENT, 'next_attempt_at', ARGV[5])
  redis.call('ZADD', DUE, ARGV[5], ARGV[1])
end
return 1
"""

# ARGV: id, now, rerun_all ('1' or '0').
_REPLAY = """
local status = redis.call('HGET', EVENT, 'status')
if status ~= 'done' and status ~= 'failed' and status ~= 'dead' then return 0 end
set_status(ARGV[1], status, 'pending')
redis.call('HSET', EVENT, 'attempts', 0)
redis.call('HDEL', EVENT, 'next_attempt_at')
redis.call('ZADD', DUE, ARGV[2], ARGV[1])
if ARGV[3] == '1' then
  for _, field in ipairs(redis.call('HKEYS', EVENT)) do
    if string.sub(field, 1, 2) == 'o:' then redis.call('HDEL', EVENT, field) end
  end
end
return 1
"""

# ARGV: id, now.
_RESOLVE = """
local status = redis.call('HGET', EVENT, 'status')
if status ~= 'failed' and status ~= 'dead' then return 0 end
set_status(ARGV[1], status, 'done')
redis.call('HSET', EVENT, 'processed_at', ARGV[2])
redis.call('ZREM', DUE, ARGV[1])
return 1
"""

# KEYS: finished, all, then the five status sets, then one event hash per id.
# ARGV: cutoff, then the ids. Re-checks each candidate: it may have been replayed since.
# Returns {deleted, left the finished set}.
_PRUNE = """
local deleted, dropped = 0, 0
for i = 2, #ARGV do
  local id, event = ARGV[i], KEYS[6 + i]
  local fields = redis.call('HMGET', event, 'status', 'received_at')
  local status, received = fields[1], fields[2]
  if (status == 'done' or status == 'dead') and tonumber(received) < tonumber(ARGV[1]) then
    redis.call('DEL', event)
    for k = 1, 7 do redis.call('ZREM', KEYS[k], id) end
    deleted = deleted + 1
  elseif status ~= 'done' and status ~= 'dead' then
    dropped = dropped + redis.call('ZREM', KEYS[1], id)
  end
end
return {deleted, deleted + dropped}
"""

_PRUNE_BATCH = 500


def _num(value: float) -> str:
    """A float as Redis and Lua read it back exactly (repr round-trips)."""
    return repr(float(value))


def _pairs(outcomes: Mapping[str, HandlerOutcome]) -> list[str]:
    args: list[str] = []
    for name, outcome in outcomes.items():
        args += (name, json.dumps(outcome.to_json(), separators=(",", ":")))
    return args


def _optional_time(fields: Mapping[bytes, bytes], name: bytes) -> datetime | None:
    value = fields.get(name)
    return None if value is None else to_datetime(float(value))


def _to_event(event_id: str, fields: Mapping[bytes, bytes]) -> StoredEvent:
    error = fields.get(b"last_error")
    return StoredEvent(
        id=event_id,
        type=fields[b"type"].decode(),
        created_at=to_datetime(float(fields[b"created_at"])),  # type: ignore[arg-type]
        received_at=to_datetime(float(fields[b"received_at"])),  # type: ignore[arg-type]
        body=fields[b"body"],
        status=Status(fields[b"status"].decode()),
        attempts=int(fields[b"attempts"]),
        deliveries=int(fields[b"deliveries"]),
        next_attempt_at=_optional_time(fields, b"next_attempt_at"),
        lease_until=_optional_time(fields, b"lease_until"),
        processed_at=_optional_time(fields, b"processed_at"),
        last_error=None if error is None else error.decode(),
        outcomes={
            key[2:].decode(): HandlerOutcome.from_json(json.loads(value))
            for key, value in fields.items()
            if key.startswith(b"o:")
        },
    )


def _pairs_to_dict(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisStore:
    """Events in Redis under one key prefix; safe to share across threads, processes
    (redis-py reconnects after a fork) and hosts.

    ``timeout`` bounds connecting and each reply, so a dead server turns into an error
    quickly (the receiver answers 503 and the sender retries). Failed commands are not
    retried by the client: a retry after a lost reply could run a transition twice.
    """

    blocking = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "iverton",
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _PREFIX.match(prefix):
            raise ConfigurationError(
                f"key prefix {prefix!r} must be 1-100 letters, digits or '_', '.', ':', '-'"
            )
        if timeout <= 0:
            raise ConfigurationError("timeout must be positive")
        self.prefix = prefix
        self.timeout = timeout
        self.clock = clock
        try:
            self.redis = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                decode_responses=False,  # bodies are raw bytes
            )
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL: {exc}") from None
        tag = "{" + prefix + "}"
        self._event_prefix = f"{tag}:e:"
        self._due, self._finished = f"{tag}:due", f"{tag}:finished"
        self._all, self._seq = f"{tag}:all", f"{tag}:seq"
        self._by_status = {name: f"{tag}:s:{name}" for name in _STATUSES}
        self._indexes = [self._due, self._finished, *self._by_status.values()]
        register = self.redis.register_script
        self._record = register(_PRELUDE + _RECORD)
        self._claim = register(_PRELUDE + _CLAIM)
        self._checkpoint = register(_PRELUDE + _CHECKPOINT)
        self._complete = register(_PRELUDE + _COMPLETE)
        self._fail = register(_PRELUDE + _FAIL)
        self._replay = register(_PRELUDE + _REPLAY)
        self._resolve = register(_PRELUDE + _RESOLVE)
        self._prune = register(_PRUNE)

    def __repr__(self) -> str:
        kwargs = self.redis.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"<RedisStore {where}/{kwargs.get('db', 0)} prefix={self.prefix!r}>"

    def keys(self) -> list[str]:
        """The fixed keys this store uses; each event adds one ``{prefix}:e:<id>`` hash."""
        return [*self._indexes, self._all, self._seq]

    def _keys(self, event_id: str) -> list[str]:
        return [self._event_prefix + event_id, *self._indexes]

    def record(self, event_id: str, event_type: str, created_at: datetime, body: bytes) -> bool:
        args = (event_id, event_type, _num(created_at.timestamp()), _num(self.clock()), body)
        keys = [*self._keys(event_id), self._all, self._seq]
        return bool(self._record(keys, args))

    def claim(self, event_id: str, lease_seconds: float) -> Claim | None:
        now = self.clock()
        token = uuid.uuid4().hex
        args = (event_id, _num(now), _num(now + lease_seconds), token)
        flat = self._claim(self._keys(event_id), args)
        if flat is None:
            return None
        return Claim(event=_to_event(event_id, _pairs_to_dict(flat)), token=token)

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        event_id = claim.event.id
        args = [event_id, claim.token, *_pairs(outcomes)]
        return bool(self._checkpoint(self._keys(event_id), args))

    def complete(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        event_id = claim.event.id
        args = [event_id, claim.token, _num(self.clock()), *_pairs(outcomes)]
        return bool(self._complete(self._keys(event_id), args))

    def fail(
        self,
        claim: Claim,
        outcomes: Mapping[str, HandlerOutcome],
        error: str,
        retry_at: float | None,
    ) -> bool:
        event_id = claim.event.id
        status = Status.DEAD if retry_at is None else Status.FAILED
        when = "" if retry_at is None else _num(retry_at)
        args = [event_id, claim.token, status.value, error, when, *_pairs(outcomes)]
        return bool(self._fail(self._keys(event_id), args))

    def due(self, limit: int = 100) -> list[str]:
        ids = self._range(self._due, "-inf", _num(self.clock()), limit)
        return [event_id.decode() for event_id in ids]

    def _range(self, key: str, low: str, high: str, limit: int) -> list[bytes]:
        # redis-py types replies loosely (sync and asyncio clients share the stubs).
        return cast("list[bytes]", self.redis.zrangebyscore(key, low, high, start=0, num=limit))

    def get(self, event_id: str) -> StoredEvent | None:
        fields = cast("dict[bytes, bytes]", self.redis.hgetall(self._event_prefix + event_id))
        return _to_event(event_id, fields) if fields else None

    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        wanted = None if status is None else Status(status)
        index = self._all if wanted is None else self._by_status[wanted.value]
        found: list[StoredEvent] = []
        start, page = 0, max(limit, 100)
        # Newest first, a page at a time; each event is re-checked, since it may have
        # moved on between reading the index and reading the event.
        while len(found) < limit:
            ids = cast("list[bytes]", self.redis.zrevrange(index, start, start + page - 1))
            if not ids:
                break
            start += page
            pipe = self.redis.pipeline(transaction=False)
            for event_id in ids:
                pipe.hgetall(self._event_prefix + event_id.decode())
            for event_id, fields in zip(ids, pipe.execute(), strict=True):
                if not fields:
                    continue
                event = _to_event(event_id.decode(), fields)
                if (wanted is None or event.status is wanted) and event_type in (None, event.type):
                    found.append(event)
                    if len(found) == limit:
                        break
        return found

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        args = (event_id, _num(self.clock()), "1" if rerun_all else "0")
        return bool(self._replay(self._keys(event_id), args))

    def resolve(self, event_id: str) -> bool:
        args = (event_id, _num(self.clock()))
        return bool(self._resolve(self._keys(event_id), args))

    def prune(self, received_before: float) -> int:
        cutoff = _num(received_before)
        fixed = [self._finished, self._all, *self._by_status.values()]
        deleted = 0
        # Batches keep each script short (Redis serves nobody else while one runs). Every
        # candidate leaves the finished set, so this ends; stopping when a batch removes
        # nothing guards against an index gone wrong.
        while True:
            ids = self._range(self._finished, "-inf", f"({cutoff}", _PRUNE_BATCH)
            names = [event_id.decode() for event_id in ids]
            keys = fixed + [self._event_prefix + name for name in names]
            gone, removed = self._prune(keys, [cutoff, *names]) if names else (0, 0)
            deleted += int(gone)
            if not removed:
                return deleted

    def count(self) -> int:
        return int(self.redis.zcard(self._all))

    def close(self) -> None:
        self.redis.close()
