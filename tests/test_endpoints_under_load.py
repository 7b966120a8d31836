"""Registered endpoints changing under load: two gunicorn servers (two workers each, so
four caches of the registry) share one PostgreSQL store while a controller in this
process adds endpoints, rotates their secrets, disables, re-enables and removes them.

Each request is judged by the controller's log (each change with the times its store
call started and returned) and the client's own clock (``sent``: before connecting,
``answered``: the reply read). The margins come from what ``iverton_webhooks._directory``
promises, written here as numbers so that a change to the promise fails this test: an
answer is reused up to 5 s (``CACHE_SECONDS``), and one that would refuse a request is
read again once it is 1 s old (``RECHECK_SECONDS``).

* Must be accepted (2xx): the endpoint was added or re-enabled, and the secret made
  current, by calls that returned at least ``SEEN_AFTER`` (1 s + 0.5 s slack) before
  ``sent``, and the reply was read before any later disable, removal or rotation that
  ends the secret's validity started (a rotated-out secret stays valid until its grace
  ends, with ``CLOCK_SLACK`` for the store's wall clock against this one's monotonic).
* Must be refused with 401, the endpoint being enabled as above: a secret the endpoint
  never had; one not yet rotated in when the reply was read; one whose grace ended
  (upper bound: the rotation's return plus ``GRACE``) at least ``GONE_AFTER`` (5 s +
  0.5 s slack) before ``sent``. Checked on both servers.
* Must be 404, with one body whatever the cause: a name never registered, a request
  answered before the endpoint's addition started, and an endpoint disabled or removed
  by a call that returned at least ``GONE_AFTER`` before ``sent`` and not re-enabled
  before the reply.
* Anything else is within a change's window: 2xx, 401 or 404 may all be right.

Never a 5xx or a failed connection. Afterwards every accepted (endpoint, event id) is
stored once under its endpoint (one ``accepted`` reply, the rest ``duplicate``), nothing
refused is stored, and each is processed exactly once (a handler row per run, in
PostgreSQL, counted across both servers).
"""

from __future__ import annotations

import http.client
import math
import os
import random
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from iverton_webhooks import PostgresStore, Status, sign
from iverton_webhooks.samples import sample_body
from tests.conftest import end_process
from tests.endpoints_load_app import create_effects_table, effects_connection
from tests.fault_app import free_port, wait_port
from tests.stores import drop_postgres_table, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent

LOAD_SECONDS = 30.0
CLIENTS = 4
RATE_PER_CLIENT = 20.0  # requests per second
MOST_REQUESTS = 4000
GRACE = 3.0
SEEN_AFTER = 1.0 + 0.5
GONE_AFTER = 5.0 + 0.5
CLOCK_SLACK = 0.1
DRAIN_SECONDS = 30.0

INITIAL = ("shop-a", "shop-b", "shop-c", "shop-d", "shop-e", "shop-f")
# (seconds after the load starts, action, endpoint): each kind of change more than once,
# on endpoints present from the start and on ones added during the load; the last
# change leaves more than GONE_AFTER of load after it.
PLAN = (
    (2.0, "add", "late-a"),
    (3.0, "rotate", "shop-a"),
    (5.0, "disable", "shop-b"),
    (6.0, "remove", "shop-c"),
    (8.0, "add", "late-b"),
    (9.0, "rotate", "late-a"),
    (11.0, "enable", "shop-b"),
    (12.0, "rotate", "shop-a"),
    (13.0, "disable", "shop-d"),
    (14.0, "remove", "late-b"),
    (16.0, "rotate", "shop-e"),
    (17.0, "disable", "late-a"),
    (18.0, "enable", "shop-d"),
    (20.0, "rotate", "shop-a"),
    (21.0, "remove", "shop-f"),
    (22.0, "enable", "late-a"),
)
NEVER = "ghost"
NAMES = (*INITIAL, "late-a", "late-b", NEVER)
TYPES = ("contact.created", "deal.won", "email.opened", "client.updated")
WRONG = -1  # the secret index of a secret no endpoint ever had


@dataclass(frozen=True)
class Change:
    name: str
    action: str
    secret: int  # the index of the secret it made current (add, rotate); else -1
    started: float
    returned: float


@dataclass(frozen=True)
class Request:
    sent: float
    answered: float
    server: int
    name: str
    secret: int
    event_id: str
    status: int
    body: bytes


@dataclass
class Registry:
    """The controller's log, and what the clients read of it to pick a secret."""

    token: str
    changes: list[Change] = field(default_factory=list)
    current: dict[str, int] = field(default_factory=dict)  # name -> index; absent: none
    lock: threading.Lock = field(default_factory=threading.Lock)

    def secret(self, name: str, index: int) -> str:
        if index == WRONG:
            return f"whsec_wrong_{self.token}"
        return f"whsec_{name}_{index}_{self.token}"

    def apply(self, store: PostgresStore, action: str, name: str) -> None:
        index = self.current.get(name, -1) + 1 if action in ("add", "rotate") else -1
        started = time.monotonic()
        if action == "add":
            done = store.add_endpoint(name, self.secret(name, index))
        elif action == "rotate":
            done = store.rotate_endpoint(name, self.secret(name, index), GRACE)
        elif action == "remove":
            done = store.remove_endpoint(name)
        else:
            done = store.set_endpoint_enabled(name, action == "enable")
        returned = time.monotonic()
        assert done, f"{action} {name} did nothing"
        with self.lock:
            self.changes.append(Change(name, action, index, started, returned))
            if index >= 0:
                self.current[name] = index


class Timeline:
    """One endpoint's state over time, as the controller's log tells it."""

    def __init__(self, name: str, changes: list[Change]) -> None:
        self.changes = sorted((c for c in changes if c.name == name), key=lambda c: c.started)
        # (opened: the call returned, closed: the next closing call started)
        self.enabled: list[tuple[float, float]] = []
        # (closed: the call returned, reopened: the next opening call started)
        self.disabled: list[tuple[float, float]] = []
        # secret index -> (current from: returned, grace ends at the earliest, at the latest)
        self.secrets: dict[int, tuple[float, float, float]] = {}
        self.rotated_in: dict[int, Change] = {}
        opened: float | None = None
        closed: float | None = None
        for change in self.changes:
            if change.action in ("add", "enable"):
                if closed is not None:
                    self.disabled.append((closed, change.started))
                opened, closed = change.returned, None
            elif change.action in ("disable", "remove"):
                if opened is not None:
                    self.enabled.append((opened, change.started))
                opened, closed = None, change.returned
            if change.secret >= 0:
                previous = change.secret - 1
                if previous in self.secrets:
                    start = self.secrets[previous][0]
                    ends = (change.started + GRACE, change.returned + GRACE)
                    self.secrets[previous] = (start, *ends)
                self.secrets[change.secret] = (change.returned, math.inf, math.inf)
                self.rotated_in[change.secret] = change
        if opened is not None:
            self.enabled.append((opened, math.inf))
        if closed is not None:
            self.disabled.append((closed, math.inf))

    def surely_enabled(self, sent: float, answered: float) -> bool:
        return any(o + SEEN_AFTER <= sent and answered <= c for o, c in self.enabled)

    def surely_unregistered(self, answered: float) -> bool:
        return not self.changes or answered <= self.changes[0].started

    def surely_gone(self, sent: float, answered: float) -> bool:
        return any(c + GONE_AFTER <= sent and answered <= o for c, o in self.disabled)

    def surely_valid(self, secret: int, sent: float, answered: float) -> bool:
        if secret not in self.secrets:
            return False
        start, ends, _ = self.secrets[secret]
        return start + SEEN_AFTER <= sent and answered <= ends - CLOCK_SLACK

    def never_valid_yet(self, secret: int, answered: float) -> bool:
        change = self.rotated_in.get(secret)
        return secret == WRONG or change is None or answered <= change.started

    def surely_expired(self, secret: int, sent: float) -> bool:
        return secret in self.secrets and self.secrets[secret][2] + GONE_AFTER <= sent

    # Nominal state (returned times, no margins), from a request's send to its reply:
    # how soon each change was seen.

    def enabled_since(self, sent: float, answered: float) -> float | None:
        return next((o for o, c in self.enabled if o <= sent and answered < c), None)

    def closed_since(self, sent: float, answered: float) -> float | None:
        return next((c for c, o in self.disabled if c <= sent and answered < o), None)

    def valid_since(self, secret: int, sent: float, answered: float) -> float | None:
        found = self.secrets.get(secret)
        return found[0] if found and found[0] <= sent and answered < found[1] else None


def expectation(timeline: Timeline, request: Request) -> str:
    """What ``request`` must have got: one of the kinds the module docstring lists."""
    sent, answered, secret = request.sent, request.answered, request.secret
    if timeline.surely_unregistered(answered):
        return "404 never registered"
    if timeline.surely_gone(sent, answered):
        return "404 disabled or removed"
    if not timeline.surely_enabled(sent, answered):
        return "within a change"
    if timeline.surely_valid(secret, sent, answered):
        return "2xx valid"
    if secret == WRONG:
        return "401 wrong secret"
    if timeline.never_valid_yet(secret, answered):
        return "401 not yet rotated in"
    if timeline.surely_expired(secret, sent):
        return "401 grace over"
    return "within a change"


ALLOWED = {
    "2xx valid": {200},
    "401 wrong secret": {401},
    "401 not yet rotated in": {401},
    "401 grace over": {401},
    "404 never registered": {404},
    "404 disabled or removed": {404},
    "within a change": {200, 401, 404},
}


# The servers and the load ---------------------------------------------------------------


def start_server(store_url: str, effects: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        "ENDPOINTS_LOAD_STORE": store_url,
        "ENDPOINTS_LOAD_EFFECTS": effects,
        "PYTHONPATH": str(ROOT),
    }
    args = [
        str(Path(sys.executable).with_name("gunicorn")),
        *("--bind", f"127.0.0.1:{port}", "--workers", "2", "--graceful-timeout", "5"),
        "tests.endpoints_load_app:create_app()",
    ]
    with log.open("ab") as out:
        server = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out)
    if not wait_port(port, 20):
        end_process(server)
        raise RuntimeError(f"gunicorn did not start; see {log}")
    return server, port


def post(port: int, name: str, body: bytes, secret: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"X-Iverton-Signature": sign(body, secret), "Content-Type": "application/json"}
        conn.request("POST", f"/{name}", body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        conn.close()


class Load:
    """``CLIENTS`` threads, each at ``RATE_PER_CLIENT``, until ``LOAD_SECONDS`` or
    ``MOST_REQUESTS``. A client picks an endpoint at random (the never-registered one
    too), a server in turn, a secret by what the log says is current (mostly that one;
    also earlier ones, the next one, a wrong one), and mostly a new event (some are a
    redelivery of an earlier event, to the same endpoint or another)."""

    def __init__(self, ports: list[int], registry: Registry, started: float) -> None:
        self.ports, self.registry, self.started = ports, registry, started
        self.requests: list[Request] = []
        self.bodies: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def pick_secret(self, rng: random.Random, name: str) -> int:
        with self.registry.lock:
            current = self.registry.current.get(name, 0)
        roll = rng.random()
        if roll < 0.5:
            return current
        if roll < 0.75:
            return rng.randrange(current) if current else current
        if roll < 0.85:
            return current + 1
        return WRONG

    def client(self, number: int) -> None:
        rng = random.Random(number)
        deadline = self.started + LOAD_SECONDS
        next_at = time.monotonic()
        for n in range(MOST_REQUESTS):
            now = time.monotonic()
            if now >= deadline or len(self.requests) >= MOST_REQUESTS:
                return
            time.sleep(max(0.0, next_at - now))
            next_at += 1 / RATE_PER_CLIENT
            name = rng.choice(NAMES)
            with self.lock:
                again = self.bodies and rng.random() < 0.15
                event_id, body = rng.choice(self.bodies) if again else ("", b"")
            if not event_id:
                event_id = f"evt_{number}_{n:05d}"
                body = sample_body(TYPES[n % len(TYPES)], id=event_id)
                with self.lock:
                    self.bodies.append((event_id, body))
            secret = self.pick_secret(rng, name)
            server = (number + n) % len(self.ports)
            sent = time.monotonic()
            status, reply = post(self.ports[server], name, body, self.registry.secret(name, secret))
            answered = time.monotonic()
            with self.lock:
                self.requests.append(
                    Request(sent, answered, server, name, secret, event_id, status, reply)
                )

    def run(self) -> None:
        threads = [threading.Thread(target=self.client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(LOAD_SECONDS + 30)


def control(store: PostgresStore, registry: Registry, started: float) -> None:
    for at, action, name in PLAN:
        time.sleep(max(0.0, started + at - time.monotonic()))
        registry.apply(store, action, name)


# Inspection -----------------------------------------------------------------------------


def effect_counts(store_url: str, table: str) -> Counter[tuple[str, str]]:
    from psycopg import sql

    with effects_connection(store_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT endpoint, event_id FROM {}").format(sql.Identifier(table))
        ).fetchall()
    return Counter((endpoint, event_id) for endpoint, event_id in rows)


def described(item: Request | Change, started: float) -> str:
    """A request or a change for a failure message, its times from the load's start."""
    if isinstance(item, Change):
        return (
            f"  {item.action} {item.name} (secret #{item.secret}) "
            f"{item.started - started:+.2f}..{item.returned - started:+.2f} s"
        )
    return (
        f"got {item.status} {item.body.decode()} from server {item.server}: {item.name}, "
        f"secret #{item.secret}, {item.event_id}, "
        f"{item.sent - started:+.2f}..{item.answered - started:+.2f} s"
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def seen_within(timelines: dict[str, Timeline], requests: list[Request]) -> dict[str, float]:
    """The longest each kind of change took to be seen: a request refused after its
    endpoint and secret were (nominally) both in force, one accepted after its endpoint
    was disabled or removed, or one accepted after its secret's grace ended."""
    lags: dict[str, float] = {"added or rotated in": 0.0, "disabled or removed": 0.0}
    lags["grace over"] = 0.0
    for r in requests:
        timeline = timelines[r.name]
        if r.status in (401, 404):
            enabled = timeline.enabled_since(r.sent, r.answered)
            valid = timeline.valid_since(r.secret, r.sent, r.answered)
            if enabled is not None and valid is not None:
                lag = r.sent - max(enabled, valid)
                lags["added or rotated in"] = max(lags["added or rotated in"], lag)
        elif r.status == 200:
            closed = timeline.closed_since(r.sent, r.answered)
            if closed is not None:
                lags["disabled or removed"] = max(lags["disabled or removed"], r.sent - closed)
            ends = timeline.secrets.get(r.secret, (0.0, math.inf, math.inf))[2]
            if ends <= r.sent:
                lags["grace over"] = max(lags["grace over"], r.sent - ends)
    return lags


# The test -------------------------------------------------------------------------------


@pytest.fixture
def store_url(postgres_url: str) -> Iterator[tuple[str, str, str]]:
    table, effects = unique_name("iverton_test"), unique_name("iverton_effects")
    joiner = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{joiner}table={table}"
    yield url, table, effects
    drop_postgres_table(postgres_url, table)
    drop_postgres_table(postgres_url, effects)
    # The 401s were counted for the disablement warning, under the events table's name.
    with effects_connection(url) as conn:
        conn.execute("DELETE FROM iverton_answers WHERE scope = %s", (table,))


def test_endpoints_change_under_load_on_two_servers(
    store_url: tuple[str, str, str], postgres_url: str, tmp_path: Path
) -> None:
    url, table, effects = store_url
    store = PostgresStore(postgres_url, table=table)
    registry = Registry(secrets.token_hex(4))
    create_effects_table(url, effects)
    for name in INITIAL:
        registry.apply(store, "add", name)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        ports = []
        for n in range(2):
            server, port = start_server(url, effects, tmp_path / f"server{n}.log")
            servers.append(server)
            ports.append(port)
        started = time.monotonic()
        controller = threading.Thread(target=control, args=(store, registry, started))
        controller.start()
        load = Load(ports, registry, started)
        load.run()
        controller.join(30)
        load_took = time.monotonic() - started
        requests = load.requests

        timelines = {name: Timeline(name, registry.changes) for name in NAMES}
        judged = [(expectation(timelines[r.name], r), r) for r in requests]

        accepted: dict[tuple[str, str], list[bytes]] = {}
        for r in requests:
            if r.status == 200:
                accepted.setdefault((r.name, r.event_id), []).append(r.body)

        drain_started = time.monotonic()

        def drained() -> tuple[Counter[tuple[str, str]], dict[tuple[str, str], Status]]:
            stored = store.list(limit=10**6, endpoint=None)
            return effect_counts(url, effects), {(e.endpoint, e.id): e.status for e in stored}

        runs, stored = drained()
        while time.monotonic() - drain_started < DRAIN_SECONDS and (
            set(runs) != set(accepted) or set(stored.values()) != {Status.DONE}
        ):
            time.sleep(0.2)
            runs, stored = drained()
        drain_took = time.monotonic() - drain_started
    finally:
        for server in servers:
            end_process(server)
        store.close()

    latencies = [1000 * (r.answered - r.sent) for r in requests]
    by_status = Counter(r.status for r in requests)
    by_server = Counter(r.server for r in requests)
    replies = Counter(r.body.decode() for r in requests if r.status == 200)
    print(
        f"\n{len(requests)} requests in {load_took:.1f} s to 2 servers "
        f"({by_server[0]} / {by_server[1]}), {len(registry.changes)} registry changes"
    )
    print(f"statuses: {dict(sorted(by_status.items()))}; 2xx replies: {dict(replies)}")
    kinds = Counter((kind, r.status) for kind, r in judged)
    for (kind, status), count in sorted(kinds.items()):
        print(f"  must be {kind:26} got {status}: {count}")
    print(
        f"latency ms: p50 {statistics.median(latencies):.1f}, "
        f"p99 {percentile(latencies, 0.99):.1f}, max {max(latencies):.1f}"
    )
    lags = seen_within(timelines, requests)
    print("longest until seen: " + ", ".join(f"{k} {v:.2f} s" for k, v in lags.items()))
    print(
        f"{len(accepted)} (endpoint, event) accepted, {len(stored)} stored, "
        f"{sum(runs.values())} handler runs; drained in {drain_took:.1f} s"
    )

    assert not [r for r in requests if r.status == 0 or r.status >= 500]
    wrong = [(kind, r) for kind, r in judged if r.status not in ALLOWED[kind]]
    assert not wrong, "\n".join(
        [
            *(f"must be {kind}: {described(r, started)}" for kind, r in wrong[:10]),
            "changes:",
            *(described(change, started) for change in registry.changes),
        ]
    )
    assert len(requests) >= 1000, "the load was too small to show anything"
    # Every rule was put to the test on both servers.
    seen = Counter((kind, r.server) for kind, r in judged)
    for kind in ALLOWED:
        for number in (0, 1):
            assert seen[(kind, number)] >= 5, f"server {number}: {seen[(kind, number)]} {kind!r}"
    # After a disable or a removal, as for a name never registered: one body.
    assert {r.body for r in requests if r.status == 404} == {b'{"error":"no such endpoint"}'}

    # Stored once each, under its endpoint; nothing refused is stored.
    for key, bodies in accepted.items():
        assert sorted(bodies) == sorted(
            [b'{"status":"accepted"}'] + [b'{"status":"duplicate"}'] * (len(bodies) - 1)
        ), key
    assert set(stored) == set(accepted)
    # Processed exactly once each, by whichever worker of either server.
    assert set(stored.values()) == {Status.DONE}, Counter(stored.values())
    assert runs == Counter(dict.fromkeys(accepted, 1)), (
        f"lost: {sorted(set(accepted) - set(runs))[:5]}, "
        f"twice: {[k for k, n in runs.items() if n > 1][:5]}"
    )
