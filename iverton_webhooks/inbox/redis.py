"""A Redis inbox (redis-py), shared by every process and host that reaches the server.

Durability is whatever the Redis server's persistence gives, and nothing more: a 2xx
means the event is in the server's memory. Run Redis with ``appendonly yes`` (with
``appendfsync everysec`` a crash can lose the last second or two of acknowledged events;
with ``always``, none) and ``maxmemory-policy noeviction`` (an evicting policy drops events
silently; a full Redis that evicts nothing refuses writes, answered 503). A server that
keeps nothing on disk forgets every event when it restarts: the store checks at first use
and warns, in the log and in `RedisStore.warnings`. With replicas, failover can also lose
the last writes.

Layout, under the hash tag ``{prefix}``, so that all keys share one Redis Cluster slot
(a Lua script may touch several keys only within one slot). ``<base>`` is ``{prefix}``
for the ``default`` endpoint (the layout-1 names, so an older inbox reads as it is) and
``{prefix}:@<endpoint, percent-encoded>`` for any other:

- ``<base>:e:<id>``: a hash per event: its fields, plus ``o:<handler>`` per outcome;
- ``<base>:due``: sorted set, id -> ``due_at``, holding only events a worker may take
  (``due_at`` lives here, not in the hash);
- ``<base>:all`` and ``<base>:s:<status>``: sorted sets, id -> arrival number;
- ``<base>:finished``: sorted set of finished events, id -> received time (pruning);
- ``{prefix}:seq``: the arrival counter, shared by every endpoint (so listings of all
  endpoints merge newest first); ``{prefix}:endpoints``: the set of endpoint names;
- ``{prefix}:schema``: the layout version; older layouts are migrated forward on first use;
- ``<base>:m:<resource>:<handler>`` (both percent-encoded): a hash per newest-only mark
  (`ResourceMarks`): the applied event's ``applied_at`` and ``applied_id``, and the
  ``holder`` with its ``hold_until``. Prune leaves marks alone: a mark is what tells a
  late, older event of its resource that it is superseded, however old the events are;
- ``{prefix}:registry``: the set of registered endpoint names (`EndpointRegistry`), and
  ``{prefix}:registry:<name, percent-encoded>``: a hash per registered endpoint, its
  ``secrets`` (JSON, see ``base.dump_secrets``), ``enabled`` ("1" or "0"),
  ``created_at`` and ``updated_at``. Names are kept through `store_text`.

Each transition is one Lua script, so it is atomic: nobody sees or makes half of it. The
scripts know nothing of the lifecycle: the status sets are generated from
`base`, and every transition writes the field dict `base` gives it through one
generic ``apply`` that also keeps the indexes in step.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import quote

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "RedisStore needs redis-py: pip install 'iverton-webhooks[redis]'", name="redis"
    ) from exc

from .._errors import ConfigurationError
from . import base
from .base import DEFAULT_ENDPOINT, Claim, MarkAnswer, MarkKey, Status, StoredEvent, store_text

log = logging.getLogger("iverton_webhooks")

_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_STATUSES = tuple(status.value for status in Status)

#: The layout this code writes. 1: one endpoint, no schema key; 2: endpoints.
SCHEMA_VERSION = 2


def _lua_set(statuses: frozenset[Status]) -> str:
    return "{" + ", ".join(f"[{json.dumps(name)}] = true" for name in base.values(statuses)) + "}"


# Begins each transition script, whose KEYS always are: event hash, seq, endpoints, then
# the endpoint's indexes (see `_Keys`). ARGV: the id, one argument of the script's own,
# then the fields `apply` writes. Numbers that are stored are passed in from Python as
# strings: Lua would print them back with only 14 significant digits.
_PRELUDE = f"""
local EVENT, SEQ, ENDPOINTS, DUE, FINISHED, ALL = unpack(KEYS, 1, 6)
local ID = ARGV[1]
local STATUSES = {{{", ".join(json.dumps(name) for name in _STATUSES)}}}
local BY_STATUS = {{}}
for i, name in ipairs(STATUSES) do BY_STATUS[name] = KEYS[6 + i] end
local CLAIMABLE = {_lua_set(base.CLAIMABLE)}
local IS_FINISHED = {_lua_set(base.FINISHED)}
local FROM = {{replay = {_lua_set(base.REPLAYABLE)}, resolve = {_lua_set(base.RESOLVABLE)}}}

-- Writes one transition's fields, given from ARGV[3] as: n, n field/value pairs, m, m
-- fields to delete. 'due_at' goes to the due index; deleting 'outcomes' deletes every
-- 'o:<handler>' field; a new 'status' moves the event between the status indexes and in
-- or out of the finished one.
local function apply()
  local old, new = redis.call('HGET', EVENT, 'status'), nil
  local i = 4
  for k = 1, tonumber(ARGV[3]) do
    local field, value = ARGV[i], ARGV[i + 1]; i = i + 2
    if field == 'due_at' then redis.call('ZADD', DUE, value, ID)
    else redis.call('HSET', EVENT, field, value) end
    if field == 'status' then new = value end
  end
  local m = tonumber(ARGV[i]); i = i + 1
  for k = 1, m do
    local field = ARGV[i]; i = i + 1
    if field == 'due_at' then redis.call('ZREM', DUE, ID)
    elseif field == 'outcomes' then
      for _, name in ipairs(redis.call('HKEYS', EVENT)) do
        if string.sub(name, 1, 2) == 'o:' then redis.call('HDEL', EVENT, name) end
      end
    else redis.call('HDEL', EVENT, field) end
  end
  if new and new ~= old then
    if BY_STATUS[old] then redis.call('ZREM', BY_STATUS[old], ID) end
    redis.call('ZADD', BY_STATUS[new], redis.call('HGET', EVENT, 'seq'), ID)
    if IS_FINISHED[new] then
      redis.call('ZADD', FINISHED, redis.call('HGET', EVENT, 'received_at'), ID)
    else
      redis.call('ZREM', FINISHED, ID)
    end
  end
end
"""

# ARGV[2]: the endpoint, as stored.
_RECORD = (
    _PRELUDE
    + """
if redis.call('EXISTS', EVENT) == 1 then
  redis.call('HINCRBY', EVENT, 'deliveries', 1)
  return 0
end
local seq = redis.call('INCR', SEQ)
redis.call('HSET', EVENT, 'seq', seq)
redis.call('SADD', ENDPOINTS, ARGV[2])
redis.call('ZADD', ALL, seq, ID)
apply()
return 1
"""
)

# ARGV[2]: now. Returns the event's hash, or nil.
_CLAIM = (
    _PRELUDE
    + """
if not CLAIMABLE[redis.call('HGET', EVENT, 'status')] then return false end
local due = redis.call('ZSCORE', DUE, ID)
if not due or tonumber(due) > tonumber(ARGV[2]) then return false end
redis.call('HINCRBY', EVENT, 'attempts', 1)
apply()
return redis.call('HGETALL', EVENT)
"""
)

# Renew, checkpoint and finish, only while the token in ARGV[2] holds the lease.
_CLAIMED = (
    _PRELUDE
    + """
if redis.call('HGET', EVENT, 'lease_token') ~= ARGV[2] then return 0 end
apply()
return 1
"""
)

# Replay and resolve. ARGV[2]: which of the two, so which statuses the event may leave.
_MOVE = (
    _PRELUDE
    + """
if not FROM[ARGV[2]][redis.call('HGET', EVENT, 'status')] then return 0 end
apply()
return 1
"""
)

# KEYS: the endpoint's indexes (see `_Keys`), then one event hash per id.
# ARGV: cutoff, then the ids. Re-checks each candidate: it may have been replayed since.
# Returns {deleted, left the finished set}.
_PRUNE = f"""
local IS_FINISHED = {_lua_set(base.FINISHED)}
local fixed = 3 + {len(_STATUSES)}
local deleted, dropped = 0, 0
for i = 2, #ARGV do
  local id, event = ARGV[i], KEYS[fixed + i - 1]
  local status, received = unpack(redis.call('HMGET', event, 'status', 'received_at'))
  if IS_FINISHED[status] and tonumber(received) < tonumber(ARGV[1]) then
    redis.call('DEL', event)
    for k = 1, fixed do redis.call('ZREM', KEYS[k], id) end
    deleted = deleted + 1
  elseif not IS_FINISHED[status] then
    dropped = dropped + redis.call('ZREM', KEYS[2], id)
  end
end
return {{deleted, deleted + dropped}}
"""

# KEYS: schema, seq, the default endpoint's 'all', endpoints. ARGV: this code's version,
# the default endpoint's name. Returns the version found before migrating (0: new inbox),
# or an error for a layout newer than this code.
_MIGRATE = """
local CURRENT = tonumber(ARGV[1])
local found = redis.call('GET', KEYS[1])
if found then
  found = tonumber(found)
elseif redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  found = 1  -- layout 1 has no schema key
else
  found = 0
end
if found > CURRENT then
  return redis.error_reply('inbox layout version ' .. found .. ' is newer than this code (' ..
                           CURRENT .. '): upgrade iverton-webhooks')
end
if found == 1 then
  -- 1 -> 2: the layout-1 keys are the default endpoint's, unchanged; list them as one.
  redis.call('SADD', KEYS[4], ARGV[2])
end
redis.call('SET', KEYS[1], CURRENT)
return found
"""

# The mark scripts: KEYS[1] is the mark's hash; times and created_at are given as
# repr() strings (kept exactly) and compared as numbers.

# ARGV: created_at, event id, holder, now, hold until. Returns a MarkAnswer value.
_TAKE_MARK = """
local mark = redis.call('HMGET', KEYS[1], 'applied_at', 'applied_id', 'holder', 'hold_until')
local applied_at, applied_id, holder, hold_until = mark[1], mark[2], mark[3], mark[4]
if applied_id == ARGV[2] or (applied_at and tonumber(applied_at) > tonumber(ARGV[1])) then
  return 'superseded'
end
if holder and holder ~= ARGV[3] and tonumber(hold_until) > tonumber(ARGV[4]) then
  return 'busy'
end
redis.call('HSET', KEYS[1], 'holder', ARGV[3], 'hold_until', ARGV[5])
return 'run'
"""

# ARGV: holder, hold until.
_RENEW_MARK = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'hold_until', ARGV[2])
return 1
"""

# ARGV: holder, then the applied event's created_at and id, if any.
_RELEASE_MARK = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'holder', 'hold_until')
end
if #ARGV == 3 then
  local applied_at = redis.call('HGET', KEYS[1], 'applied_at')
  if not applied_at or tonumber(applied_at) <= tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], 'applied_at', ARGV[2], 'applied_id', ARGV[3])
  end
end
return 1
"""

# Registering an endpoint: KEYS: the set of names, the endpoint's hash; ARGV: name,
# secrets, now (as a repr() string). Its other changes are read-modify-writes in Python
# (WATCH/MULTI), so the rotation rule stays in base.rotated.
_ADD_ENDPOINT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'secrets', ARGV[2], 'enabled', '1', 'created_at', ARGV[3],
           'updated_at', ARGV[3])
return 1
"""

_SCRIPTS = (
    _RECORD,
    _CLAIM,
    _CLAIMED,
    _MOVE,
    _PRUNE,
    _MIGRATE,
    _TAKE_MARK,
    _RENEW_MARK,
    _RELEASE_MARK,
    _ADD_ENDPOINT,
)
_PRUNE_BATCH = 500


def _num(value: float) -> str:
    """A float as Redis and Lua read it back exactly (repr round-trips)."""
    return repr(float(value))


def _encode(value: Any) -> str | bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, float):
        return _num(value)
    return str(value)


def _fields(fields: Mapping[str, Any]) -> list[str | bytes]:
    """A transition's field dict as the ``apply`` arguments: what to write, what to delete."""
    written = [(name, _encode(value)) for name, value in fields.items() if value is not None]
    deleted = [name for name, value in fields.items() if value is None]
    return [str(len(written)), *itertools.chain(*written), str(len(deleted)), *deleted]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _row(endpoint: str, event_id: str, fields: Mapping[bytes, bytes]) -> StoredEvent:
    """The event hash as a `read_row` mapping (outcomes gathered as JSON text);
    ``endpoint`` and ``event_id`` as stored (see `store_text`)."""
    row: dict[str, Any] = {}
    outcomes: list[str] = []
    for key, value in fields.items():
        name = _text(key)
        if name.startswith("o:"):
            outcomes.append(f"{json.dumps(name[2:])}:{_text(value)}")
        else:
            row[name] = value if name == "body" else _text(value)
    row["id"], row["endpoint"] = event_id, endpoint
    row["outcomes"] = "{" + ",".join(outcomes) + "}"
    return base.read_row(row)


def _config(reply: Any, name: str) -> str:
    """One setting from a ``CONFIG GET`` reply (keys and values as str or bytes)."""
    for key, value in dict(reply).items():
        if (key.decode() if isinstance(key, bytes) else key) == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


class _Keys:
    """The key names of one endpoint. Endpoints and ids are given as stored (through
    `store_text`), as they also appear in the indexes."""

    def __init__(self, prefix: str, endpoint: str) -> None:
        tag = "{" + prefix + "}"
        # ``<base>`` in the layout. Percent-encoding leaves no ':' in the name, so no two
        # endpoints' keys can meet.
        root = tag if endpoint == DEFAULT_ENDPOINT else f"{tag}:@{quote(endpoint, safe='')}"
        self.endpoint, self.root = endpoint, root
        self.due, self.finished, self.all = f"{root}:due", f"{root}:finished", f"{root}:all"
        self.seq, self.endpoints = f"{tag}:seq", f"{tag}:endpoints"
        self.answers = f"{tag}:answers"  # failed answers in a row, by endpoint
        self.by_status = {name: f"{root}:s:{name}" for name in _STATUSES}
        # Every sorted set an event may be in, in the order the scripts expect them.
        self.indexes = [self.due, self.finished, self.all, *self.by_status.values()]

    def event(self, event_id: str) -> str:
        return f"{self.root}:e:{event_id}"

    def mark(self, resource: str, handler: str) -> str:
        """The hash of one mark; percent-encoding leaves no ':' in either part."""
        return f"{self.root}:m:{quote(resource, safe='')}:{quote(handler, safe='')}"

    def script(self, event_id: str) -> list[str]:
        """KEYS of a transition script (see ``_PRELUDE``)."""
        return [self.event(event_id), self.seq, self.endpoints, *self.indexes]


@base.store_edge(redis.RedisError)
class RedisStore(base.RecordsRows, base.ClaimedWrites):
    """Events in Redis under one key prefix; safe to share across threads, processes
    (redis-py reconnects after a fork) and hosts. Also keeps newest-only marks
    (`ResourceMarks`) and registered endpoints (`EndpointRegistry`).

    ``timeout`` bounds connecting and each reply, so a dead server turns into an error
    quickly (the receiver answers 503 and the sender retries). Failed commands are not
    retried by the client: a retry after a lost reply could run a transition twice.
    Nothing connects before the first call, which also migrates an older layout.
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
        self._tag = "{" + prefix + "}"
        self._schema = f"{self._tag}:schema"
        self._migrated = False
        self._warnings: list[str] | None = None
        # Registered once: each holds its SHA1, for EVALSHA.
        self._scripts = {script: self.redis.register_script(script) for script in _SCRIPTS}

    def __repr__(self) -> str:
        return f"<RedisStore {self._where()} prefix={self.prefix!r}>"

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """``redis://host:6379/0`` or ``rediss://...``; ``?prefix=name`` picks the key
        prefix, every other parameter goes to redis-py."""
        dsn, prefix = base.pop_query(url, "prefix")
        return cls(dsn) if prefix is None else cls(dsn, prefix=prefix)

    @classmethod
    def missing_inbox(cls, url: str) -> str | None:
        dsn, prefix = base.pop_query(url, "prefix")
        prefix = prefix or "iverton"
        client: Any = redis.Redis.from_url(dsn, socket_timeout=5, socket_connect_timeout=5)
        try:
            for _ in client.scan_iter(match="{" + prefix + "}:*", count=1000):
                return None
        except redis.RedisError as error:
            return f"cannot reach the Redis inbox: {error}"
        finally:
            client.close()
        return f"no keys under {{{prefix}}} on {dsn}: no inbox there (check --store)"

    def _where(self) -> str:
        kwargs = self.redis.connection_pool.connection_kwargs
        server = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"{server}/{kwargs.get('db', 0)}"

    # Keys and schema ------------------------------------------------------------------

    def keys(self, endpoint: str = DEFAULT_ENDPOINT) -> list[str]:
        """The fixed keys this store uses for one endpoint (plus the shared ones); each
        event adds one ``<base>:e:<id>`` hash."""
        k = _Keys(self.prefix, store_text(endpoint))
        return [*k.indexes, k.seq, k.endpoints, self._schema]

    def migrate(self) -> int:
        """Bring the layout up to `SCHEMA_VERSION` (atomic; safe from many processes
        at once); return the version found (0 for a new inbox). Runs on first use."""
        k = _Keys(self.prefix, DEFAULT_ENDPOINT)
        keys = [self._schema, k.seq, k.all, k.endpoints]
        try:
            found = int(self._run(_MIGRATE, keys, [SCHEMA_VERSION, DEFAULT_ENDPOINT]))
        except redis.ResponseError as exc:
            if "newer than this code" in str(exc):
                raise ConfigurationError(f"Redis inbox {self.prefix!r}: {exc}") from None
            raise
        self._migrated = True
        if self._warnings is None:
            self._warnings = self._check_persistence()
            for warning in self._warnings:
                log.warning("%s", warning)
        return found

    def warnings(self) -> list[str]:
        """What this store cannot keep, in words a person can act on: a server without
        persistence (a restart loses every acknowledged event), or one whose persistence
        could not be checked. Checked once, at first use (and logged then)."""
        if self._warnings is None:
            self.migrate()
        return list(self._warnings or ())

    def _check_persistence(self) -> list[str]:
        where = self._where()
        try:
            appendonly = _config(self.redis.config_get("appendonly"), "appendonly")
            save = _config(self.redis.config_get("save"), "save")
        except redis.ResponseError as exc:  # CONFIG renamed or refused, as managed Redis does
            return [
                f"Redis at {where}: persistence could not be checked (CONFIG GET refused: "
                f"{exc}); unless the server runs with appendonly yes, a restart loses "
                "acknowledged events"
            ]
        if appendonly == "no" and not save:
            return [
                f"Redis at {where} keeps nothing on disk (appendonly no, no save points): "
                "a restart loses every acknowledged event. Run it with appendonly yes "
                "(appendfsync everysec or always)"
            ]
        return []

    def schema_version(self) -> int | None:
        """The layout version stored in Redis (None before anything was written)."""
        value = self.redis.get(self._schema)
        return None if value is None else int(cast(bytes, value))

    def _ready(self, endpoint: str) -> _Keys:
        """The keys of ``endpoint`` (as given, not stored), the layout migrated first."""
        if not self._migrated:
            self.migrate()
        return _Keys(self.prefix, store_text(endpoint))

    def _endpoints(self, endpoint: str | None) -> list[_Keys]:
        if endpoint is not None:
            return [self._ready(endpoint)]
        names = cast("set[bytes]", self.redis.smembers(self._ready(DEFAULT_ENDPOINT).endpoints))
        return [_Keys(self.prefix, _text(name)) for name in sorted(names)]

    # Transitions -----------------------------------------------------------------------

    def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[script](keys, args)

    def _transition(
        self, script: str, endpoint: str, event_id: str, arg: str, fields: Mapping[str, Any]
    ) -> Any:
        """Run a transition script (see ``_PRELUDE``) on one event, as given."""
        stored_id = store_text(event_id)
        keys = self._ready(endpoint).script(stored_id)
        return self._run(script, keys, [stored_id, arg, *_fields(fields)])

    def insert_row(self, row: dict[str, Any], resource_id: str | None) -> bool:
        stored = row["endpoint"]  # as stored, by new_row
        endpoint, event_id = base.load_text(stored), base.load_text(row["id"])
        return bool(self._transition(_RECORD, endpoint, event_id, stored, row))

    def claim(
        self, event_id: str, lease_seconds: float, *, endpoint: str = DEFAULT_ENDPOINT
    ) -> Claim | None:
        now = self.clock()
        token = base.new_token()
        fields = base.claim_fields(now, lease_seconds, token)
        flat = self._transition(_CLAIM, endpoint, event_id, _num(now), fields)
        if flat is None:
            return None
        stored = dict(zip(flat[::2], flat[1::2], strict=True))
        return Claim(_row(store_text(endpoint), store_text(event_id), stored), token)

    def _claimed(
        self, claim: Claim, fields: Mapping[str, Any], outcomes: Mapping[str, base.HandlerOutcome]
    ) -> bool:
        event = claim.event
        written = {f"o:{store_text(name)}": base.outcome_json(o) for name, o in outcomes.items()}
        written.update(fields)
        return bool(self._transition(_CLAIMED, event.endpoint, event.id, claim.token, written))

    def replay(
        self, event_id: str, *, rerun_all: bool = False, endpoint: str = DEFAULT_ENDPOINT
    ) -> bool:
        fields = base.replay_fields(self.clock())
        if rerun_all:
            fields["outcomes"] = None
        return bool(self._transition(_MOVE, endpoint, event_id, "replay", fields))

    def resolve(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> bool:
        fields = base.resolve_fields(self.clock())
        return bool(self._transition(_MOVE, endpoint, event_id, "resolve", fields))

    # Newest-only marks ------------------------------------------------------------------

    def _mark(self, script: str, key: MarkKey, *args: str | float) -> Any:
        """Run a mark script; text goes in through `store_text`, times through `_num`."""
        keys = self._ready(key.endpoint)
        mark = keys.mark(store_text(key.resource), store_text(key.handler))
        stored = [store_text(arg) if isinstance(arg, str) else _num(arg) for arg in args]
        return self._run(script, [mark], stored)

    def take_mark(
        self, key: MarkKey, created_at: float, event_id: str, holder: str, hold_seconds: float
    ) -> MarkAnswer:
        now = self.clock()
        answer = self._mark(_TAKE_MARK, key, created_at, event_id, holder, now, now + hold_seconds)
        return MarkAnswer(_text(answer))

    def renew_mark(self, key: MarkKey, holder: str, hold_seconds: float) -> bool:
        return bool(self._mark(_RENEW_MARK, key, holder, self.clock() + hold_seconds))

    def release_mark(self, key: MarkKey, holder: str, applied: tuple[float, str] | None) -> None:
        self._mark(_RELEASE_MARK, key, holder, *(applied or ()))

    # Endpoint registry (see base.EndpointRegistry for the semantics) --------------------

    def _registry(self, stored_name: str | None = None) -> str:
        """The set of registered names, or the hash of the one given (as stored)."""
        if not self._migrated:
            self.migrate()
        names = f"{self._tag}:registry"
        return names if stored_name is None else f"{names}:{quote(stored_name, safe='')}"

    @staticmethod
    def _endpoint(stored_name: str, fields: Mapping[bytes, bytes]) -> base.EndpointRecord:
        return base.read_endpoint(
            stored_name,
            fields[b"secrets"],
            fields[b"enabled"] == b"1",
            float(fields[b"created_at"]),
            float(fields[b"updated_at"]),
        )

    def add_endpoint(self, name: str, secret: str) -> bool:
        stored = store_text(name)
        keys = [self._registry(), self._registry(stored)]
        secrets = base.dump_secrets((base.EndpointSecret(secret),))
        return bool(self._run(_ADD_ENDPOINT, keys, [stored, secrets, _num(self.clock())]))

    def get_endpoint(self, name: str) -> base.EndpointRecord | None:
        stored = store_text(name)
        fields = cast("dict[bytes, bytes]", self.redis.hgetall(self._registry(stored)))
        return self._endpoint(stored, fields) if fields else None

    def list_endpoints(self) -> list[base.EndpointRecord]:
        names = [_text(name) for name in cast("set[bytes]", self.redis.smembers(self._registry()))]
        pipe = self.redis.pipeline(transaction=False)
        for stored in names:
            pipe.hgetall(self._registry(stored))
        found = [
            self._endpoint(stored, fields)
            for stored, fields in zip(names, pipe.execute(), strict=True)
            if fields  # removed since the names were read
        ]
        return sorted(found, key=lambda endpoint: endpoint.name)

    def _update_endpoint(self, name: str, field: str, value: Callable[[bytes, float], str]) -> bool:
        """Set ``field`` of ``name`` to ``value(its secrets as stored, now)``; False if
        there is no such endpoint."""
        key = self._registry(store_text(name))
        found: list[bool] = []

        def write(pipe: redis.client.Pipeline) -> None:
            # Runs under WATCH: the write is applied only if nothing changed the endpoint
            # since it was read; else redis-py runs this again on a fresh read.
            found.clear()
            secrets = cast("bytes | None", pipe.hget(key, "secrets"))
            if secrets is None:
                return
            now = self.clock()
            pipe.multi()
            pipe.hset(key, mapping={field: value(secrets, now), "updated_at": _num(now)})
            found.append(True)

        self.redis.transaction(write, key)
        return bool(found)

    def rotate_endpoint(self, name: str, secret: str, grace_seconds: float) -> bool:
        def rotate(secrets: bytes, now: float) -> str:
            kept = base.load_secrets(secrets)
            return base.dump_secrets(base.rotated(kept, secret, now, grace_seconds))

        return self._update_endpoint(name, "secrets", rotate)

    def set_endpoint_enabled(self, name: str, enabled: bool) -> bool:
        return self._update_endpoint(name, "enabled", lambda _, __: "1" if enabled else "0")

    def remove_endpoint(self, name: str) -> bool:
        stored = store_text(name)
        pipe = self.redis.pipeline()  # MULTI/EXEC: both or neither
        pipe.srem(self._registry(), stored)
        pipe.delete(self._registry(stored))
        removed, _ = pipe.execute()
        return bool(removed)

    # Reading ---------------------------------------------------------------------------

    def due(self, limit: int = 100, *, endpoint: str = DEFAULT_ENDPOINT) -> list[str]:
        ids = self._range(self._ready(endpoint).due, _num(self.clock()), limit)
        return [base.load_text(_text(event_id)) for event_id in ids]

    def oldest_due(self, *, endpoint: str = DEFAULT_ENDPOINT) -> float | None:
        first = self._range(self._ready(endpoint).due, _num(self.clock()), 1, withscores=True)
        return float(first[0][1]) if first else None

    def note_failure(self, endpoint: str, kind: str) -> int:
        keys = self._ready(endpoint)
        return int(self.redis.hincrby(keys.answers, keys.endpoint, 1))

    def clear_failures(self, endpoint: str) -> None:
        keys = self._ready(endpoint)
        # Read first: most answers are 2xx and there is nothing to clear.
        if self.redis.hget(keys.answers, keys.endpoint) not in (None, b"0"):
            self.redis.hset(keys.answers, keys.endpoint, 0)

    def _range(self, key: str, high: str, limit: int, withscores: bool = False) -> Any:
        """The first ``limit`` members of ``key`` scored up to ``high``."""
        return self.redis.zrangebyscore(key, "-inf", high, 0, limit, withscores=withscores)

    def get(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> StoredEvent | None:
        keys, stored_id = self._ready(endpoint), store_text(event_id)
        fields = cast("dict[bytes, bytes]", self.redis.hgetall(keys.event(stored_id)))
        return _row(keys.endpoint, stored_id, fields) if fields else None

    def _list_one(
        self, keys: _Keys, wanted: Status | None, event_type: str | None, limit: int
    ) -> list[tuple[float, StoredEvent]]:
        index = keys.all if wanted is None else keys.by_status[wanted.value]
        found: list[tuple[float, StoredEvent]] = []
        start, page = 0, max(limit, 100)
        # Newest first, a page at a time; each event is re-checked, since it may have
        # moved on between reading the index and reading the event. The check is on the
        # stored status: an unreadable row (shown quarantined) still lists where it is.
        while len(found) < limit:
            ranked = cast(
                "list[tuple[bytes, float]]",
                self.redis.zrevrange(index, start, start + page - 1, withscores=True),
            )
            if not ranked:
                break
            start += page
            pipe = self.redis.pipeline(transaction=False)
            for event_id, _ in ranked:
                pipe.hgetall(keys.event(_text(event_id)))
            for (event_id, seq), fields in zip(ranked, pipe.execute(), strict=True):
                status = fields.get(b"status")
                if not fields or (wanted is not None and status != wanted.value.encode()):
                    continue
                event = _row(keys.endpoint, _text(event_id), fields)
                if event_type in (None, event.type):
                    found.append((seq, event))
        return found

    def stats(self, *, endpoint: str | None = DEFAULT_ENDPOINT) -> dict[Status, int]:
        every = self._endpoints(endpoint)
        pipe = self.redis.pipeline(transaction=False)
        for keys in every:
            for name in _STATUSES:
                pipe.zcard(keys.by_status[name])
        totals: dict[Status, int] = {}
        for name, n in zip(_STATUSES * len(every), pipe.execute(), strict=True):
            if n:
                totals[Status(name)] = totals.get(Status(name), 0) + int(n)
        return totals

    def count(self, *, endpoint: str | None = None) -> int:
        every = self._endpoints(endpoint)
        pipe = self.redis.pipeline(transaction=False)
        for keys in every:
            pipe.zcard(keys.all)
        return sum(int(n) for n in pipe.execute())

    def prune(self, received_before: float, *, endpoint: str | None = None) -> int:
        return sum(self._prune_one(keys, received_before) for keys in self._endpoints(endpoint))

    def _prune_one(self, keys: _Keys, received_before: float) -> int:
        cutoff = _num(received_before)
        deleted = 0
        # Batches keep each script short (Redis serves nobody else while one runs). Every
        # candidate leaves the finished set, so this ends; stopping when a batch removes
        # nothing guards against an index gone wrong.
        while True:
            names = [_text(i) for i in self._range(keys.finished, f"({cutoff}", _PRUNE_BATCH)]
            if not names:
                return deleted
            events = [keys.event(name) for name in names]
            gone, removed = self._run(_PRUNE, keys.indexes + events, [cutoff, *names])
            deleted += int(gone)
            if not removed:
                return deleted

    # Last in the class: below here, ``list`` names this method, not the builtin.
    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
        *,
        endpoint: str | None = DEFAULT_ENDPOINT,
    ) -> list[StoredEvent]:
        wanted = None if status is None else Status(status)
        found: list[tuple[float, StoredEvent]] = []
        for keys in self._endpoints(endpoint):
            found += self._list_one(keys, wanted, event_type, limit)
        # The arrival number is shared by every endpoint: newest first across them all.
        found.sort(key=lambda item: item[0], reverse=True)
        return [event for _, event in found[:limit]]

    def close(self) -> None:
        self.redis.close()
