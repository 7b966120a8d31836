"""After the ack: async handlers on the app's loop, sync handlers in threads, recovery at
startup, drain at shutdown, lazy attach without lifespan, and the route form."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import pytest

pytest.importorskip("starlette.applications")

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from iverton_webhooks import Event, MemoryStore, Receiver, Router, Status, ThreadRunner
from iverton_webhooks.contrib.starlette import (
    IvertonWebhookMiddleware,
    receiver_lifespan,
    webhook_route,
)
from iverton_webhooks.samples import sample_body
from tests.conftest import signed, wait_for
from tests.starlette.helpers import PATH, status_of


def app_with(
    receiver: Receiver, loops: list[asyncio.AbstractEventLoop], **options: float
) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loops.append(asyncio.get_running_loop())
        yield

    middleware = Middleware(IvertonWebhookMiddleware, path=PATH, receiver=receiver, **options)
    return Starlette(middleware=[middleware], lifespan=lifespan)


def test_async_handlers_run_on_the_loop_and_sync_handlers_in_threads(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    seen: dict[str, object] = {}

    @router.on("contact.created")
    async def on_loop(event: Event) -> None:
        seen["async_loop"] = asyncio.get_running_loop()
        seen["async_thread"] = threading.get_ident()

    @router.on("contact.created")
    def in_thread(event: Event) -> None:
        try:
            asyncio.get_running_loop()
            seen["sync_on_loop"] = True
        except RuntimeError:
            seen["sync_on_loop"] = False
        seen["sync_thread"] = threading.get_ident()

    loops: list[asyncio.AbstractEventLoop] = []
    body, headers = signed(id="evt_both")
    with TestClient(app_with(make_receiver(), loops)) as client:
        assert client.post(PATH, content=body, headers=headers).status_code == 200
        assert wait_for(lambda: status_of(store, "evt_both") == Status.DONE)
    assert seen["async_loop"] is loops[0]  # the server's own loop
    assert seen["sync_on_loop"] is False
    assert seen["sync_thread"] != seen["async_thread"]


def test_the_ack_does_not_wait_for_a_slow_handler(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    release = threading.Event()

    @router.on("deal.won")
    def slow(event: Event) -> None:
        release.wait(10)

    body, headers = signed("deal.won", id="evt_slow_ack")
    with TestClient(app_with(make_receiver(), [])) as client:
        started = time.monotonic()
        assert client.post(PATH, content=body, headers=headers).status_code == 200
        assert time.monotonic() - started < 3.0  # the handler blocks for up to 10 s
        assert status_of(store, "evt_slow_ack") != Status.DONE
        release.set()
        assert wait_for(lambda: status_of(store, "evt_slow_ack") == Status.DONE)


def test_startup_recovers_events_left_pending(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    ran: list[str] = []

    @router.on("deal.lost")
    async def handle(event: Event) -> None:
        ran.append(event.id)

    # Recorded by an earlier process that died before processing it.
    now = datetime.now(timezone.utc)
    for n in range(3):
        assert store.record(
            f"evt_left_{n}", "deal.lost", now, sample_body("deal.lost", id=f"evt_left_{n}")
        )
    app = app_with(make_receiver(), [])
    assert ran == []
    with TestClient(app):
        assert wait_for(lambda: len(ran) == 3)
    assert sorted(ran) == ["evt_left_0", "evt_left_1", "evt_left_2"]
    assert {status_of(store, f"evt_left_{n}") for n in range(3)} == {Status.DONE}


def test_shutdown_drains_then_leaves_the_unfinished_for_the_next_start(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    started = threading.Event()
    slow = {"on": True}
    finished: list[str] = []

    @router.on("campaign.sent")
    async def handle(event: Event) -> None:
        started.set()
        if slow["on"]:
            await asyncio.sleep(30)
        finished.append(event.id)

    @router.on("campaign.sent")
    def quick(event: Event) -> None:
        finished.append("quick:" + event.id)

    app = app_with(make_receiver(), [], drain_timeout=0.3)
    body, headers = signed("campaign.sent", id="evt_drain")
    began = time.monotonic()
    with TestClient(app) as client:
        assert client.post(PATH, content=body, headers=headers).status_code == 200
        assert started.wait(5)
    assert time.monotonic() - began < 5  # the drain timed out; it did not wait 30 s
    assert finished == []
    interrupted = store.get("evt_drain")
    assert interrupted is not None
    assert interrupted.status == Status.FAILED
    assert "shutdown" in (interrupted.last_error or "")

    slow["on"] = False
    with TestClient(app):  # the next start (same app, new loop)
        assert wait_for(lambda: status_of(store, "evt_drain") == Status.DONE)
    assert sorted(finished) == ["evt_drain", "quick:evt_drain"]  # each ran once


def test_a_quick_event_finishes_within_the_drain(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    @router.on("campaign.completed")
    async def handle(event: Event) -> None:
        await asyncio.sleep(0.2)

    app = app_with(make_receiver(), [], drain_timeout=5)
    body, headers = signed("campaign.completed", id="evt_drained")
    with TestClient(app) as client:
        assert client.post(PATH, content=body, headers=headers).status_code == 200
    assert status_of(store, "evt_drained") == Status.DONE


def test_without_lifespan_the_runner_attaches_on_the_first_request(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    ran: list[str] = []

    @router.on("email.bounced")
    async def on_loop(event: Event) -> None:
        ran.append("async")

    @router.on("email.bounced")
    def in_thread(event: Event) -> None:
        ran.append("sync")

    app = app_with(make_receiver(), [])
    body, headers = signed("email.bounced", id="evt_lazy")

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)  # sends no lifespan events
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            reply = await client.post(PATH, content=body, headers=headers)
            assert reply.status_code == 200
        for _ in range(500):
            if status_of(store, "evt_lazy") == Status.DONE:
                return
            await asyncio.sleep(0.01)

    asyncio.run(go())
    assert status_of(store, "evt_lazy") == Status.DONE
    assert sorted(ran) == ["async", "sync"]


def test_webhook_route_with_receiver_lifespan(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    ran: list[str] = []

    @router.on("client.created")
    async def handle(event: Event) -> None:
        ran.append(event.id)

    receiver = make_receiver()
    now = datetime.now(timezone.utc)
    store.record(
        "evt_waiting", "client.created", now, sample_body("client.created", id="evt_waiting")
    )
    app = Starlette(routes=[webhook_route(PATH, receiver)], lifespan=receiver_lifespan(receiver))
    body, headers = signed("client.created", id="evt_route")
    with TestClient(app) as client:
        assert wait_for(lambda: "evt_waiting" in ran)  # recovered at startup
        assert client.post(PATH, content=body, headers=headers).status_code == 200
        wrong = client.get(PATH)
        assert wrong.status_code == 405
        assert wrong.headers["allow"] == "POST"
        assert client.post(PATH, content=b"{}", headers={}).status_code == 401
        assert wait_for(lambda: "evt_route" in ran)
    assert app.url_path_for("iverton_webhooks") == PATH
    assert sorted(ran) == ["evt_route", "evt_waiting"]


def test_thread_runner_receiver_works_and_is_closed_at_shutdown(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    ran: list[str] = []

    @router.on("deal.created")
    def handle(event: Event) -> None:
        ran.append(threading.current_thread().name)

    receiver = make_receiver(runner="thread")
    body, headers = signed("deal.created", id="evt_threads")
    with TestClient(app_with(receiver, [])) as client:
        assert client.post(PATH, content=body, headers=headers).status_code == 200
        assert wait_for(lambda: status_of(store, "evt_threads") == Status.DONE)
        runner = receiver.runner
        assert isinstance(runner, ThreadRunner)
        loop_thread = runner._thread
        assert loop_thread is not None
        assert loop_thread.is_alive()
    assert ran[0].startswith("iverton")
    assert not loop_thread.is_alive()  # closed at shutdown
