"""A Redis inbox says what its server cannot keep: on a private redis-server (never the
shared one on 6379), without persistence the store logs one WARNING naming
``appendonly yes`` and says it in ``warnings()`` and health; with ``--appendonly yes`` it
says nothing; where CONFIG is refused (managed Redis) it says, once, that persistence
could not be checked. A server that goes away turns into StoreUnavailable."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

pytest.importorskip("redis")

from iverton_webhooks import StoreUnavailable
from iverton_webhooks._health import Health, store_warnings
from iverton_webhooks._processor import Processor
from iverton_webhooks.inbox.redis import RedisStore

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
NO_PERSISTENCE = ["--appendonly", "no", "--save", ""]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """``redis-server`` on a free port of 127.0.0.1, its files in a temp dir."""

    def __init__(self, directory: Path, *options: str) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*args, "--dir", str(directory), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    started: list[PrivateRedis] = []

    def start(*options: str) -> PrivateRedis:
        server = PrivateRedis(tmp_path, *options)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "iverton_webhooks" and r.levelno == logging.WARNING
    ]


def use(store: RedisStore) -> None:
    """What a receiver and a worker do at start and on a first event."""
    store.due()
    store.record("evt_1", "deal.won", CREATED, b"{}")
    store.stats()
    store.list()


def test_no_persistence_is_one_warning_naming_appendonly_yes(
    private_redis: Callable[..., PrivateRedis], caplog: pytest.LogCaptureFixture
) -> None:
    server = private_redis(*NO_PERSISTENCE)
    store = RedisStore(server.url, timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="iverton_webhooks"):
        use(store)
        use(store)
    logged = warnings_logged(caplog)
    assert len(logged) == 1, logged
    assert "appendonly yes" in logged[0]
    assert "restart loses every acknowledged event" in logged[0]
    assert f"127.0.0.1:{server.port}" in logged[0]
    assert store.warnings() == logged
    # In health, for stats and probes (without making the inbox unhealthy).
    health = Health("default", store.stats(), None, warnings=store_warnings(store))
    assert health.to_json()["warnings"] == logged
    store.close()


def test_appendonly_yes_says_nothing(
    private_redis: Callable[..., PrivateRedis], caplog: pytest.LogCaptureFixture
) -> None:
    server = private_redis("--appendonly", "yes", "--save", "")
    store = RedisStore(server.url, timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="iverton_webhooks"):
        use(store)
    assert warnings_logged(caplog) == []
    assert store.warnings() == []
    assert "warnings" not in Health("default", {}, None, store_warnings(store)).to_json()
    store.close()


def test_save_points_alone_are_persistence_too(
    private_redis: Callable[..., PrivateRedis], caplog: pytest.LogCaptureFixture
) -> None:
    server = private_redis("--appendonly", "no", "--save", "900 1")
    store = RedisStore(server.url, timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="iverton_webhooks"):
        use(store)
    assert warnings_logged(caplog) == []
    store.close()


def test_a_refused_config_says_persistence_could_not_be_checked_once(
    private_redis: Callable[..., PrivateRedis], caplog: pytest.LogCaptureFixture
) -> None:
    # Managed Redis services rename or forbid CONFIG.
    server = private_redis(*NO_PERSISTENCE, "--rename-command", "CONFIG", "")
    store = RedisStore(server.url, timeout=2.0)
    with caplog.at_level(logging.WARNING, logger="iverton_webhooks"):
        use(store)
        use(store)
        assert len(store.warnings()) == 1
    logged = warnings_logged(caplog)
    assert len(logged) == 1, logged
    assert "could not be checked" in logged[0]
    assert "appendonly yes" in logged[0]
    store.close()


def test_a_server_that_goes_away_raises_store_unavailable(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis(*NO_PERSISTENCE)
    store = RedisStore(server.url, timeout=1.0)
    assert store.record("evt_1", "deal.won", CREATED, b"{}") is True
    server.stop()
    for call in (
        lambda: store.record("evt_2", "deal.won", CREATED, b"{}"),
        lambda: store.claim("evt_1", 30),
        store.due,
        store.stats,
        store.list,
    ):
        with pytest.raises(StoreUnavailable) as raised:
            call()
        assert raised.value.__cause__ is not None
        assert "redis" in type(raised.value.__cause__).__module__
    store.close()


def test_processor_health_shows_the_store_warnings(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis(*NO_PERSISTENCE)
    store = RedisStore(server.url, timeout=2.0)
    try:
        assert "appendonly yes" in Processor(store).health().to_json()["warnings"][0]
    finally:
        store.close()
