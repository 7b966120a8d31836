"""Async Django: the URL patterns serve an async view under ASGI (AsyncClient, a real
uvicorn) and the sync view under WSGI; the DjangoTasksRunner (django.tasks, or the
django-tasks backport on older Django) with the immediate backend."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction, sync_to_async
from django.db import connections
from django.test import AsyncClient, Client, RequestFactory
from django.urls import resolve

from iverton_webhooks._errors import ConfigurationError
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.views import async_webhook_view, webhook_view
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers, wait_for
from tests.django.dj_helpers import SECOND_SECRET, URL, post
from tests.django.testapp import webhooks as handlers

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _close_executor_connections() -> Iterator[None]:
    yield
    # Outside Django's ASGI handler (AsyncClient, asyncio.run) sync_to_async runs in
    # asgiref's one long-lived thread, and the test client keeps connections open: close
    # that thread's, or SQLite stays open there for the rest of the session.
    asyncio.run(sync_to_async(connections.close_all)())


async def _resolve(path: str) -> Any:
    return resolve(path).func


@pytest.mark.parametrize("path", [URL, "/webhooks/iverton", "/webhooks/second"])
def test_resolved_on_an_event_loop_the_view_is_async(path: str) -> None:
    # Django resolves on its event loop only when it serves the request under ASGI.
    assert iscoroutinefunction(asyncio.run(_resolve(path)))
    assert not iscoroutinefunction(resolve(path).func)
    assert asyncio.run(_resolve(path)).endpoint is resolve(path).func.endpoint


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Iverton-Signature": signed_headers(body, secret)["X-Iverton-Signature"]}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which view kind answered each request, in order."""
    from iverton_webhooks.contrib.django import views

    kinds: list[str] = []
    sync_respond, async_respond = views.respond, views.respond_async

    def spy_sync(*args: Any) -> Any:
        kinds.append("sync")
        return sync_respond(*args)

    async def spy_async(*args: Any) -> Any:
        kinds.append("async")
        return await async_respond(*args)

    monkeypatch.setattr(views, "respond", spy_sync)
    monkeypatch.setattr(views, "respond_async", spy_async)
    return kinds


def test_async_client_is_served_by_the_async_view(settings: Any, served: list[str]) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5000
    body = sample_body("deal.won", id="evt_async")

    async def deliveries() -> list[Any]:
        client = AsyncClient()
        return [
            await client.post(URL, body, content_type="application/json", headers=_signed(body)),
            await client.post(URL, body, content_type="application/json", headers=_signed(body)),
            await client.post(URL, body, content_type="application/json"),
            await client.get(URL),
            await client.post(
                URL, b"x" * 6000, content_type="application/json", headers=_signed(b"x" * 6000)
            ),
            await client.post(
                "/webhooks/second",
                sample_body("deal.won", id="evt_async_2"),
                content_type="application/json",
                headers=_signed(sample_body("deal.won", id="evt_async_2"), SECOND_SECRET),
            ),
        ]

    first, again, forged, get, big, second = asyncio.run(deliveries())
    assert served == ["async"] * 6
    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert again.json() == {"status": "duplicate"}
    assert forged.status_code == 401
    assert (get.status_code, get["Allow"]) == (405, "POST")
    assert big.status_code == 413
    assert second.status_code == 200
    assert WebhookEvent.objects.get(event_id="evt_async").status == "done"
    assert WebhookEvent.objects.get(event_id="evt_async_2").endpoint == "second"
    assert handlers.calls[:2] == [("audit", "evt_async"), ("celebrate", "evt_async")]


def test_csrf_and_atomic_requests_do_not_touch_the_async_view() -> None:
    view = async_webhook_view()
    assert iscoroutinefunction(view)
    assert view.csrf_exempt is True  # type: ignore[attr-defined]
    assert view.login_required is False  # type: ignore[attr-defined]
    assert "default" in view._non_atomic_requests  # type: ignore[attr-defined]
    body = sample_body("contact.created", id="evt_async_direct")
    request = RequestFactory().post(
        URL, body, content_type="application/json", headers=_signed(body)
    )
    response = asyncio.run(view(request))
    assert response.status_code == 200


def test_the_sync_client_still_gets_the_sync_view(client: Client, served: list[str]) -> None:
    response = post(client, sample_body("deal.won", id="evt_sync"))
    assert response.status_code == 200
    assert served == ["sync"]


# A real ASGI server ---------------------------------------------------------------------


@pytest.fixture
def asgi_server(tmp_path: Path) -> Iterator[Any]:
    pytest.importorskip("uvicorn")
    from tests.starlette.test_starlette_uvicorn import Server

    database = tmp_path / "asgi.sqlite3"
    env = {
        "IVERTON_ASGI_DB": str(database),
        "IVERTON_ASGI_SECRET": SECRET,
        "DJANGO_SETTINGS_MODULE": "tests.django.asgi_site.settings",
        "PYTHONPATH": os.getcwd(),
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v", "0"],
        env={**os.environ, **env},
        check=True,
        timeout=120,
    )
    server = Server("tests.django.asgi_site.asgi:application", Path.cwd(), env, tmp_path / "log")
    server.database = database  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.terminate()


@pytest.mark.slow
def test_under_uvicorn_the_async_view_records_and_processes(asgi_server: Any) -> None:
    import httpx

    body = sample_body("deal.won", id="evt_uvicorn_django")
    log = asgi_server.log
    with httpx.Client(timeout=10) as client:
        answers = [
            client.post(asgi_server.url(path), content=body, headers=signed_headers(body))
            for path in ("/webhooks/iverton", "/webhooks/iverton/")
        ]
        forged = client.post(asgi_server.url("/webhooks/iverton"), content=body)
        get = client.get(asgi_server.url("/webhooks/iverton"))
    first, again = answers
    assert (first.status_code, first.json()) == (200, {"status": "accepted"}), log.read_text()
    assert first.headers["x-view-async"] == "True"  # Django ran the async view
    assert again.json() == {"status": "duplicate"}
    assert forged.status_code == 401
    assert (get.status_code, get.headers["allow"]) == (405, "POST")

    def status() -> str | None:
        with sqlite3.connect(asgi_server.database) as db:
            row = db.execute(
                "SELECT status FROM iverton_webhooks_webhookevent WHERE event_id = ?",
                ("evt_uvicorn_django",),
            ).fetchone()
        return None if row is None else str(row[0])

    assert wait_for(lambda: status() == "done", timeout=15), log.read_text()


# The django.tasks runner ----------------------------------------------------------------


def _framework() -> Any:
    from iverton_webhooks.contrib.django.task_runner import tasks_framework

    try:
        return tasks_framework()
    except ConfigurationError as exc:
        pytest.skip(f"no task framework: {exc}")


def test_django_tasks_runner_processes_through_a_task() -> None:
    framework = _framework()
    signals = __import__(f"{framework.__name__}.signals", fromlist=["task_finished"])
    from iverton_webhooks.contrib.django.task_runner import DjangoTasksRunner

    finished: list[Any] = []

    def on_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
        finished.append(task_result)

    signals.task_finished.connect(on_finished)
    try:
        view = webhook_view(
            endpoint="tasks", secret=SECRET, runner=DjangoTasksRunner(poll_interval=None)
        )
        body = sample_body("deal.won", id="evt_task")
        request = RequestFactory().post(
            URL, body, content_type="application/json", headers=_signed(body)
        )
        assert view(request).status_code == 200
    finally:
        signals.task_finished.disconnect(on_finished)
    (result,) = finished
    assert result.task.name == "process_event"
    assert list(result.args) == ["tasks", "evt_task"]
    assert result.return_value == "done"
    assert handlers.calls == [("audit", "evt_task"), ("celebrate", "evt_task")]
    assert WebhookEvent.objects.get(event_id="evt_task", endpoint="tasks").status == "done"


def test_a_task_worker_finds_an_endpoint_of_the_urlconf() -> None:
    _framework()
    from iverton_webhooks.contrib.django import task_runner

    task_runner._PROCESSORS.clear()  # a worker process: no runner bound yet
    processor = task_runner.processor_for("second")
    assert processor.endpoint == "second"
    with pytest.raises(LookupError):
        task_runner.processor_for("nowhere")


def test_a_task_worker_finds_the_default_endpoint_under_its_configured_name(
    settings: Any,
) -> None:
    _framework()
    from iverton_webhooks.contrib.django import task_runner

    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "ENDPOINT": "renamed"}
    task_runner._PROCESSORS.clear()  # a worker process: no runner bound yet
    assert task_runner.processor_for("renamed").endpoint == "renamed"


def test_the_task_is_found_by_its_path() -> None:
    _framework()
    from django.utils.module_loading import import_string

    task = import_string("iverton_webhooks.contrib.django.task_runner.process_event")
    assert task.module_path == "iverton_webhooks.contrib.django.task_runner.process_event"
