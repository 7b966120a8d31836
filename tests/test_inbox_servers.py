"""What is specific to the server-backed stores (PostgreSQL, Redis): many processes at once,
servers that are down or stuck, and store URLs. The shared contract is in test_inbox.py."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import ConfigurationError, Receiver, Router, Status, Store, open_store
from iverton_webhooks.inbox import HandlerOutcome, PostgresStore, RedisStore
from iverton_webhooks.inbox.base import Verdict
from iverton_webhooks.inbox.postgres import SCHEMA_VERSION
from iverton_webhooks.samples import sample_body
from iverton_webhooks.store_contract import ContractClock, StoreContract
from tests.conftest import SECRET, service_url, signed_headers
from tests.stores import STORES, check_wave1_events_kept, drop_postgres_table, unique_name

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
SERVER_STORES = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]
# A port nothing listens on: connecting is refused at once.
CLOSED_PORT_URLS = {
    "postgres": "postgresql://postgres@127.0.0.1:1/test",
    "redis": "redis://127.0.0.1:1/0",
}


@pytest.fixture(params=SERVER_STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with STORES[request.param](tmp_path, time.time) as made:
        yield made


def post(receiver: Receiver, body: bytes) -> int:
    return receiver.receive("POST", body, signed_headers(body)).status


def _record_in_child(store: Store, ids: int, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(10)
        inserted = sum(store.record(f"evt_{n}", "deal.won", CREATED, b"{}") for n in range(ids))
        store.close()
        results.put(inserted)
    except BaseException as exc:  # reported to the parent, which fails the test
        results.put(repr(exc))


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs fork")
def test_four_processes_record_the_same_ids_each_is_stored_once(store: Store) -> None:
    # The parent uses the store before forking: the children inherit its open connection
    # and must neither use nor close it (that would end the parent's session).
    assert store.record("evt_parent", "deal.won", CREATED, b"{}") is True
    parent_conn = store._conn if isinstance(store, PostgresStore) else None
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(4), context.Queue()
    children = [
        context.Process(target=_record_in_child, args=(store, 100, barrier, results))
        for _ in range(4)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    assert sum(outcomes) == 100, outcomes  # each id new for exactly one process
    assert store.count() == 101
    events = [e for e in store.list(limit=1000) if e.id != "evt_parent"]
    assert {e.deliveries for e in events} == {4}
    assert {e.status for e in events} == {Status.PENDING}
    assert sorted(store.due(limit=1000)) == sorted(["evt_parent", *(e.id for e in events)])
    # The parent's own connection was neither used nor ended by the children.
    assert store.record("evt_parent", "deal.won", CREATED, b"{}") is False
    if parent_conn is not None:
        assert store._conn is parent_conn  # type: ignore[attr-defined]


def test_concurrent_claims_have_one_winner(store: Store) -> None:
    rounds, threads_per_round = 10, 6
    for n in range(rounds):
        store.record(f"evt_{n}", "deal.won", CREATED, b"{}")
    winners: dict[str, list[str]] = {f"evt_{n}": [] for n in range(rounds)}
    lock = threading.Lock()

    def contender(barrier: threading.Barrier) -> None:
        for n in range(rounds):
            barrier.wait(10)
            claim = store.claim(f"evt_{n}", lease_seconds=30)
            if claim is not None:
                with lock:
                    winners[claim.event.id].append(claim.token)

    barrier = threading.Barrier(threads_per_round)
    threads = [
        threading.Thread(target=contender, args=(barrier,)) for _ in range(threads_per_round)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert {event_id: len(tokens) for event_id, tokens in winners.items()} == dict.fromkeys(
        winners, 1
    )
    for event_id in winners:
        event = store.get(event_id)
        assert event is not None
        assert (event.status, event.attempts) == (Status.PROCESSING, 1)


class FractionalClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.123456

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("name", SERVER_STORES)
def test_times_survive_the_round_trip_exactly_at_the_lease_boundary(
    name: str, tmp_path: Path
) -> None:
    # Lua prints numbers with 14 significant digits and timestamptz keeps microseconds:
    # neither may shift a due time across "now".
    clock = FractionalClock()
    with STORES[name](tmp_path, clock) as store:
        store.record("evt_1", "deal.won", CREATED, b"{}")
        assert store.due() == ["evt_1"]
        claim = store.claim("evt_1", lease_seconds=30.000001)
        assert claim is not None
        clock.now += 30.000001
        assert store.due() == ["evt_1"]
        assert store.claim("evt_1", 30) is not None
        outcome = HandlerOutcome(ok=True, at=clock.now)
        assert store.finish(claim, {"h": outcome}, Verdict(Status.DONE)) is False  # lease lost
        event = store.get("evt_1")
        assert event is not None
        assert event.received_at.timestamp() == pytest.approx(1_700_000_000.123456, abs=1e-6)


@pytest.mark.parametrize("name", ["postgres", "redis"])
def test_closed_port_gives_503_within_the_timeout(name: str) -> None:
    store = (PostgresStore if name == "postgres" else RedisStore)(
        CLOSED_PORT_URLS[name], timeout=1.0
    )
    receiver = Receiver(SECRET, store=store, runner="inline")
    started = time.monotonic()
    assert post(receiver, sample_body("deal.won", id="evt_down")) == 503
    assert time.monotonic() - started < 1.0
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the driver raises
        store.claim("evt_down", 30)
    receiver.close()


@pytest.mark.parametrize("name", ["postgres", "redis"])
def test_store_url_to_a_closed_port_still_builds_a_receiver_that_answers_503(name: str) -> None:
    # Nothing connects before the first request: an app boots while its server is down.
    receiver = Receiver(SECRET, store=CLOSED_PORT_URLS[name], runner="inline")
    assert post(receiver, sample_body("deal.won")) == 503
    receiver.close()


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose kernel accepts connections that nobody ever answers: a stuck server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_stuck_redis_gives_503_after_the_timeout(black_hole: int) -> None:
    store = RedisStore(f"redis://127.0.0.1:{black_hole}/0", timeout=0.5)
    receiver = Receiver(SECRET, store=store, runner="inline")
    started = time.monotonic()
    assert post(receiver, sample_body("deal.won")) == 503
    assert 0.4 < time.monotonic() - started < 2.0
    receiver.close()


def test_stuck_postgres_gives_503_after_the_connect_timeout(black_hole: int) -> None:
    # libpq waits at least 2 s for a connection, whatever the timeout asks for.
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{black_hole}/test", timeout=2.0)
    receiver = Receiver(SECRET, store=store, runner="inline")
    started = time.monotonic()
    assert post(receiver, sample_body("deal.won")) == 503
    assert time.monotonic() - started < 3.5
    receiver.close()


@pytest.mark.postgres
def test_postgres_statement_timeout_gives_503_then_the_retry_goes_through(
    postgres_url: str,
) -> None:
    import psycopg
    from psycopg import sql

    table = unique_name("iverton_test")
    store = PostgresStore(postgres_url, table=table, timeout=0.3)
    router = Router()
    router.on("*")(lambda event: None)
    receiver = Receiver(SECRET, router=router, store=store, runner="inline")
    body = sample_body("deal.won", id="evt_locked")
    try:
        assert store.count() == 0  # creates the table
        with psycopg.connect(postgres_url) as blocker:
            blocker.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table))
            )
            started = time.monotonic()
            assert post(receiver, body) == 503
            assert time.monotonic() - started < 1.5
            blocker.rollback()
        assert store.get("evt_locked") is None
        assert post(receiver, body) == 200
        assert store.get("evt_locked").status is Status.DONE  # type: ignore[union-attr]
    finally:
        receiver.close()
        drop_postgres_table(postgres_url, table)


@pytest.mark.postgres
def test_postgres_reconnects_after_the_server_ends_an_idle_connection(
    postgres_url: str,
) -> None:
    import psycopg

    from iverton_webhooks.inbox.postgres import _went_away

    table = unique_name("iverton_test")
    store = PostgresStore(postgres_url, table=table)
    try:
        store.record("evt_1", "deal.won", CREATED, b"{}")
        conn = store._conn
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        for _ in range(100):  # until the goodbye reaches our socket
            if _went_away(conn):
                break
            time.sleep(0.02)
        assert store.record("evt_1", "deal.won", CREATED, b"{}") is False
        assert store._conn is not conn
        assert store.get("evt_1").deliveries == 2  # type: ignore[union-attr]
    finally:
        store.close()
        drop_postgres_table(postgres_url, table)


@pytest.mark.postgres
def test_postgres_schema_created_by_many_stores_at_once(postgres_url: str) -> None:
    table = unique_name("iverton_test")
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        store = PostgresStore(postgres_url, table=table)
        try:
            barrier.wait(10)
            store.record("evt_1", "deal.won", CREATED, b"{}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        check = PostgresStore(postgres_url, table=table)
        assert check.get("evt_1").deliveries == 4  # type: ignore[union-attr]
        check.close()
    finally:
        drop_postgres_table(postgres_url, table)


@pytest.mark.postgres
def test_postgres_schema_qualified_table(postgres_url: str) -> None:
    import psycopg

    schema = unique_name("iverton_schema")
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            store = PostgresStore(postgres_url, table=f"{schema}.events")
            assert store.record("evt_1", "deal.won", CREATED, b"{}") is True
            assert store.count() == 1
            store.close()
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.redis
def test_redis_keeps_every_key_under_its_prefix(redis_url: str) -> None:
    import redis

    from tests.stores import delete_redis_prefix

    prefix = unique_name("iverton_test")
    store = RedisStore(redis_url, prefix=prefix)
    client = redis.Redis.from_url(redis_url)
    try:
        store.record("evt_1", "deal.won", CREATED, b"{}")
        claim = store.claim("evt_1", 30)
        assert claim is not None
        store.finish(claim, {}, Verdict(Status.DONE))
        keys = {key.decode() for key in client.scan_iter(match=f"*{prefix}*")}
        assert keys <= {*store.keys(), f"{{{prefix}}}:e:evt_1"}
        assert f"{{{prefix}}}:e:evt_1" in keys
        assert store.prune(time.time() + 1) == 1
        assert store.count() == 0
    finally:
        client.close()
        store.close()
        delete_redis_prefix(redis_url, prefix)


def test_open_store_parses_server_urls() -> None:
    postgres = open_store("postgresql://postgres@127.0.0.1:5432/test?table=my_events")
    assert isinstance(postgres, PostgresStore)
    assert postgres.table == "my_events"
    assert postgres._params["dbname"] == "test"
    assert "table" not in postgres._params
    short = open_store("postgres://u:p@db.example:6543/app?sslmode=require")
    assert isinstance(short, PostgresStore)
    assert (short.table, short._params["port"], short._params["sslmode"]) == (
        "iverton_events",
        "6543",
        "require",
    )
    # Our own parameter is taken out; the driver's keep their exact spelling.
    tuned = open_store(
        "postgresql:///test?host=/run/postgresql&table=t1&options=-c%20work_mem%3D8MB+x"
    )
    assert isinstance(tuned, PostgresStore)
    assert tuned.table == "t1"
    assert tuned._params["host"] == "/run/postgresql"
    assert "-c work_mem=8MB+x" in tuned._params["options"]
    cache = open_store("redis://127.0.0.1:6379/3?prefix=app1")
    assert isinstance(cache, RedisStore)
    assert cache.prefix == "app1"
    assert cache.redis.connection_pool.connection_kwargs["db"] == 3
    secure = open_store("rediss://127.0.0.1:6380/0")
    assert isinstance(secure, RedisStore)
    assert secure.prefix == "iverton"
    for store in (postgres, short, tuned, cache, secure):
        store.close()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://127.0.0.1/test?table=events;drop",
        "postgresql://127.0.0.1/test?table=",
        "postgresql://127.0.0.1/test?table=a.b.c",
        "redis://127.0.0.1/0?prefix={oops}",
        "redis://127.0.0.1/0?prefix=",
        "mysql://127.0.0.1/test",
    ],
)
def test_open_store_rejects_bad_server_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("postgresql://127.0.0.1/test", "psycopg", "postgres"),
        ("redis://127.0.0.1/0", "redis", "redis"),
    ],
)
def test_missing_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    for name in ("iverton_webhooks.inbox.postgres", "iverton_webhooks.inbox.redis"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ConfigurationError, match=rf"pip install 'iverton-webhooks\[{extra}\]'"):
        open_store(url)


def test_core_imports_without_the_server_drivers() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = sys.modules['redis'] = None\n"
        "import iverton_webhooks, iverton_webhooks.inbox as inbox\n"
        "print(inbox.open_store('memory://'))\n"
        "try:\n    inbox.PostgresStore\nexcept ImportError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "MemoryStore" in done.stdout
    assert "pip install 'iverton-webhooks[postgres]'" in done.stdout


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    def make_store(self, clock: ContractClock, tmp_path: Path) -> Store:
        self.url, self.table = service_url("postgres"), unique_name("iverton_test")
        return PostgresStore(self.url, table=self.table, clock=clock)

    def cleanup_store(self, store: Store) -> None:
        store.close()
        drop_postgres_table(self.url, self.table)

    def make_unreachable_store(self, clock: ContractClock, tmp_path: Path) -> Store:
        return PostgresStore(CLOSED_PORT_URLS["postgres"], timeout=1.0, clock=clock)

    def write_unreadable_row(self, store: Store, event_id: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            # PostgreSQL holds years up to 294276; Python's datetime stops at 9999.
            conn.execute(
                f'INSERT INTO "{self.table}" (endpoint, id, type, created_at, received_at, '
                "body, due_at) VALUES ('default', %s, 'deal.won', '200000-01-01Z', "
                "to_timestamp(%s), '\\x7b7d', to_timestamp(%s))",
                (event_id, store.clock(), store.clock()),
            )


# The wave-1 schema (commit 1b12079), as its PostgresStore created it.
WAVE1_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text PRIMARY KEY,
    type text NOT NULL,
    created_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    body bytea NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    deliveries integer NOT NULL DEFAULT 1,
    due_at timestamptz,
    next_attempt_at timestamptz,
    lease_until timestamptz,
    lease_token text,
    processed_at timestamptz,
    last_error text,
    outcomes jsonb
);
CREATE INDEX IF NOT EXISTS {index} ON {table} (due_at)
    WHERE status IN ('pending', 'failed', 'processing')
"""


@pytest.mark.postgres
def test_a_wave1_postgres_inbox_is_upgraded_and_keeps_its_events(postgres_url: str) -> None:
    import psycopg

    table = unique_name("iverton_test")
    received = datetime.now(timezone.utc)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in WAVE1_POSTGRES_SCHEMA.format(table=table, index=f"{table}_due").split(";"):
            conn.execute(statement)  # type: ignore[call-overload]
        # As wave 1's record() and complete() wrote them.
        for event_id in ("evt_old_1", "evt_old_2", "evt_old_done"):
            conn.execute(
                f"INSERT INTO {table} (id, type, created_at, received_at, body, due_at) "  # type: ignore[call-overload]
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (event_id, "deal.won", CREATED, received, b'{"k":1}', received),
            )
        conn.execute(
            f"UPDATE {table} SET status = 'done', outcomes = '{{\"h\":{{\"ok\":true}}}}', "  # type: ignore[call-overload]
            "processed_at = now(), due_at = NULL WHERE id = 'evt_old_done'"
        )
    stores = [PostgresStore(postgres_url, table=table) for _ in range(3)]
    try:
        # Several processes open the old inbox at once: one upgrades, the others wait.
        threads = [threading.Thread(target=store.count) for store in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        store = stores[0]
        check_wave1_events_kept(store)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            version = conn.execute(
                "SELECT version FROM iverton_schema WHERE table_name = %s", (table,)
            ).fetchone()
        assert version == (SCHEMA_VERSION,)
    finally:
        for store in stores:
            store.close()
        drop_postgres_table(postgres_url, table)
