"""Shared fixtures: real service checks (skip on a laptop, fail in CI) and helpers."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from iverton_webhooks import Router, sign
from iverton_webhooks.samples import sample_body

SECRET = "whsec_test_secret_0123456789"

SERVICE_URLS = {
    "postgres": ("IVERTON_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "redis": ("IVERTON_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "amqp": ("IVERTON_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
_DEFAULT_PORTS = {"postgres": 5432, "redis": 6379, "amqp": 5672}


def service_url(name: str) -> str:
    variable, default = SERVICE_URLS[name]
    return os.environ.get(variable, default)


def _reachable(name: str) -> bool:
    parts = urlsplit(service_url(name))
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or _DEFAULT_PORTS[name]), timeout=1.0
        ):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _command_logging_removed() -> Iterator[None]:
    """The command line's ``main`` configures the root logger, as a command's process
    should. In this shared test process its handler would outlive the test and write to
    that test's closed capture stream: take it away after each test."""
    yield
    from iverton_webhooks._cli import PrintableFormatter

    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, PrintableFormatter):
            root.removeHandler(handler)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name in SERVICE_URLS:
        if item.get_closest_marker(name) is None or _reachable(name):
            continue
        message = f"{name} server not reachable at {service_url(name)}"
        if os.environ.get("IVERTON_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " (IVERTON_REQUIRE_SERVICES=1)")
        pytest.skip(message)


@pytest.fixture
def postgres_url() -> str:
    return service_url("postgres")


@pytest.fixture
def redis_url() -> str:
    return service_url("redis")


@pytest.fixture
def amqp_url() -> str:
    return service_url("amqp")


@pytest.fixture
def router() -> Iterator[Router]:
    return Router()


def signed_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Iverton-Signature": sign(body, secret), "Content-Type": "application/json"}


def signed(
    event_type: str = "contact.created", **overrides: object
) -> tuple[bytes, dict[str, str]]:
    """A signed sample delivery: its body and headers."""
    body = sample_body(event_type, **overrides)
    return body, signed_headers(body)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` (bounded); True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@contextmanager
def mounted_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (``"2m"``) at ``mount``, for disk-full tests; skips the
    test with the reason when this machine cannot mount one (it needs root)."""
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def end_process(process: subprocess.Popen[Any], grace: float = 20.0) -> None:
    """SIGTERM a process this test started, then SIGKILL it if it has not ended."""
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(5)
