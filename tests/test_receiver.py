from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import types
from datetime import datetime
from typing import Any

import pytest

from iverton_webhooks import (
    ConfigurationError,
    Event,
    InlineRunner,
    MemoryStore,
    Receiver,
    Router,
    Status,
    ThreadRunner,
    sign,
)
from iverton_webhooks.samples import sample_body, sample_event
from tests.conftest import SECRET, signed_headers


class NullRunner(InlineRunner):
    """Records what it was handed and processes nothing."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, event_id: str) -> None:
        self.submitted.append(event_id)


def make(router: Router | None = None, **kwargs: object) -> Receiver:
    kwargs.setdefault("store", MemoryStore())
    kwargs.setdefault("runner", "inline")
    return Receiver(SECRET, router=router or Router(), **kwargs)  # type: ignore[arg-type]


def post(receiver: Receiver, body: bytes, secret: str = SECRET) -> tuple[int, dict[str, str]]:
    reply = receiver.receive("POST", body, signed_headers(body, secret))
    return reply.status, json.loads(reply.body)


def test_accepted_then_duplicate_and_handlers_run_once() -> None:
    router, seen = Router(), []
    router.on("deal.won")(lambda event: seen.append(event.id))
    receiver = make(router)
    body = sample_body("deal.won", id="evt_dup")
    assert post(receiver, body) == (200, {"status": "accepted"})
    for _ in range(3):
        assert post(receiver, body) == (200, {"status": "duplicate"})
    assert seen == ["evt_dup"]
    stored = receiver.store.get("evt_dup")
    assert stored is not None
    assert stored.deliveries == 4
    assert stored.status is Status.DONE


def test_duplicate_with_different_bytes_but_same_id_is_still_a_duplicate() -> None:
    receiver = make()
    first = sample_body("deal.won", id="evt_same")
    retry = json.dumps(json.loads(first), indent=2).encode()
    assert post(receiver, first)[1]["status"] == "accepted"
    assert post(receiver, retry)[1]["status"] == "duplicate"


def test_unknown_type_is_recorded_acknowledged_and_reaches_catch_all() -> None:
    router, seen = Router(), []
    router.on("*")(lambda event: seen.append(event.type))
    receiver = make(router)
    body = json.dumps(sample_event("deal.won") | {"type": "invoice.paid"}).encode()
    status, answer = post(receiver, body)
    assert (status, answer["status"]) == (200, "accepted")
    assert "unknown" in answer["note"]
    assert seen == ["invoice.paid"]


def test_reply_headers_are_json() -> None:
    body = sample_body("deal.won")
    reply = make().receive("POST", body, signed_headers(body))
    assert ("Content-Type", "application/json") in reply.headers


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
def test_wrong_method_is_405_with_allow(method: str) -> None:
    body = sample_body("deal.won")
    reply = make().receive(method, body, signed_headers(body))
    assert reply.status == 405
    assert ("Allow", "POST") in reply.headers


def test_lowercase_post_is_accepted() -> None:
    body = sample_body("deal.won")
    assert make().receive("post", body, signed_headers(body)).status == 200


def test_size_cap_just_under_and_just_over() -> None:
    receiver = make(max_body_bytes=2048)
    payload = sample_event("deal.won", id="evt_big")
    base = json.dumps(payload | {"pad": ""}, separators=(",", ":")).encode()
    fitting = json.dumps(payload | {"pad": "x" * (2048 - len(base))}, separators=(",", ":"))
    assert len(fitting.encode()) == 2048
    assert post(receiver, fitting.encode())[0] == 200
    over = fitting.replace('"pad":"', '"pad":"x', 1).replace('"id":"evt_big"', '"id":"evt_bi2"')
    assert len(over.encode()) == 2049
    assert post(receiver, over.encode()) == (413, {"error": "body too large"})
    assert receiver.store.get("evt_bi2") is None


def test_every_signature_failure_gets_one_identical_401_body() -> None:
    receiver = make()
    body = sample_body("deal.won")
    replies = {
        receiver.receive("POST", body, {}).body,
        receiver.receive("POST", body, {"X-Iverton-Signature": ""}).body,
        receiver.receive("POST", body, {"X-Iverton-Signature": "sha256=abc"}).body,
        receiver.receive("POST", body, signed_headers(body, "whsec_wrong")).body,
        receiver.receive("POST", body + b" ", signed_headers(body)).body,
        receiver.receive("POST", body[:-1], signed_headers(body)).body,
    }
    assert replies == {b'{"error":"invalid signature"}'}
    assert receiver.store.count() == 0


def test_signature_is_checked_before_parsing_so_garbage_is_401_not_400() -> None:
    assert post(make(), b"\xff\xfe not json", "whsec_wrong")[0] == 401


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00not utf-8",
        b"{",
        b"[1,2,3]",
        json.dumps(sample_event("deal.won", id="")).encode(),
        json.dumps(sample_event("deal.won", created_at="not a date")).encode(),
        b'{"id":"e","type":"deal.won","created_at":"2024-01-15T10:30:00Z","data":{"id":"d","x":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}",
    ],
    ids=["non-utf8", "truncated", "array", "empty-id", "bad-created_at", "deep-nesting"],
)
def test_signed_but_malformed_is_quarantined_never_refused(body: bytes) -> None:
    # Five refusals and the sender disables the endpoint: a signed body is always kept.
    receiver = make()
    status, answer = post(receiver, body)
    assert (status, answer) == (200, {"status": "quarantined"})
    (kept,) = receiver.store.list()
    assert kept.status is Status.QUARANTINED
    assert kept.body == body
    assert kept.last_error
    # A retried copy is a duplicate, whether it was keyed by its id or by its hash.
    assert post(receiver, body) == (200, {"status": "duplicate"})
    assert receiver.store.count() == 1
    assert receiver.recover() == {}  # quarantined is never dispatched


def test_a_quarantined_body_is_keyed_by_its_id_when_one_can_be_read() -> None:
    receiver = make()
    body = json.dumps(sample_event("deal.won", id="evt_bad_date", created_at="nope")).encode()
    assert post(receiver, body)[1] == {"status": "quarantined"}
    assert receiver.store.get("evt_bad_date") is not None
    unreadable = b"\xff\xfe"
    post(receiver, unreadable)
    assert receiver.store.get("sha256:" + hashlib.sha256(unreadable).hexdigest()) is not None


@pytest.mark.parametrize("created_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_created_at_no_store_can_hold_is_quarantined_at_the_door(created_at: str) -> None:
    receiver = make()
    body = json.dumps(sample_event("deal.won", id="evt_edge", created_at=created_at)).encode()
    assert post(receiver, body) == (200, {"status": "quarantined"})
    assert receiver.store.get("evt_edge").status is Status.QUARANTINED  # type: ignore[union-attr]
    assert [e.id for e in receiver.store.list()] == ["evt_edge"]


def test_a_str_body_is_a_programming_error_not_a_401() -> None:
    body = sample_body("deal.won")
    with pytest.raises(TypeError, match="bytes"):
        make().receive("POST", body.decode(), signed_headers(body))  # type: ignore[arg-type]


def test_secrets_given_as_one_string_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"secrets=\["):
        Receiver(secrets="whsec_abc", store="memory://")  # type: ignore[arg-type]


def test_header_lookup_is_case_insensitive() -> None:
    receiver = make()
    for spelling in ("X-Iverton-Signature", "x-iverton-signature", "X-IVERTON-SIGNATURE"):
        body = sample_body("deal.won")
        assert receiver.receive("POST", body, {spelling: sign(body, SECRET)}).status == 200


def test_rotation_accepts_every_configured_secret() -> None:
    receiver = Receiver(secrets=["whsec_new", "whsec_old"], store="memory://", runner="inline")
    assert post(receiver, sample_body("deal.won"), "whsec_old")[0] == 200
    assert post(receiver, sample_body("deal.won"), "whsec_new")[0] == 200
    assert post(receiver, sample_body("deal.won"), SECRET)[0] == 401


def test_missing_secret_is_a_configuration_error_that_says_what_to_do() -> None:
    with pytest.raises(ConfigurationError, match="secret="):
        Receiver(store="memory://")


class BrokenStore(MemoryStore):
    def record(self, *args: Any, **kwargs: Any) -> bool:
        raise OSError("disk full")


def test_store_failure_is_503_and_nothing_dispatched() -> None:
    router, seen = Router(), []
    router.on("*")(lambda event: seen.append(event.id))
    runner = NullRunner()
    receiver = make(router, store=BrokenStore(), runner=runner)
    status, answer = post(receiver, sample_body("deal.won"))
    assert status == 503
    assert "retry" in answer["error"]
    assert seen == []
    assert runner.submitted == []


def test_handler_failure_never_reaches_the_reply_and_others_still_run() -> None:
    router, seen = Router(), []

    @router.on("deal.won")
    def broken(event: Event) -> None:
        raise RuntimeError("handler bug")

    @router.on("deal.won")
    def fine(event: Event) -> None:
        seen.append(event.id)

    receiver = make(router)
    status, _ = post(receiver, sample_body("deal.won", id="evt_h"))
    assert status == 200
    assert seen == ["evt_h"]
    stored = receiver.store.get("evt_h")
    assert stored is not None
    assert stored.status is Status.FAILED
    assert "handler bug" in (stored.last_error or "")
    assert stored.outcomes[f"{fine.__module__}.{fine.__qualname__}"].ok


def test_async_handlers_are_awaited() -> None:
    router, seen = Router(), []

    @router.on("email.bounced")
    async def suppress(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(event.id)

    post(make(router), sample_body("email.bounced", id="evt_async"))
    assert seen == ["evt_async"]


def test_thread_runner_replies_before_handlers_run() -> None:
    router, release, seen = Router(), threading.Event(), []

    @router.on("deal.won")
    def slow(event: Event) -> None:
        release.wait(5)
        seen.append(event.id)

    runner = ThreadRunner(workers=1, poll_interval=60)
    receiver = make(router, runner=runner)
    started = time.perf_counter()
    assert post(receiver, sample_body("deal.won", id="evt_t"))[0] == 200
    assert time.perf_counter() - started < 1.0
    assert seen == []
    release.set()
    assert runner.join(5)
    assert seen == ["evt_t"]
    receiver.close()


def test_full_worker_queue_never_delays_the_reply_and_the_event_stays_pending() -> None:
    router, release, seen = Router(), threading.Event(), []
    router.on("*")(lambda event: (release.wait(5), seen.append(event.id)))
    runner = ThreadRunner(workers=1, queue_size=1, poll_interval=60)
    receiver = make(router, runner=runner)
    ids = [f"evt_q{n}" for n in range(5)]
    started = time.perf_counter()
    for event_id in ids:
        assert post(receiver, sample_body("deal.won", id=event_id))[0] == 200
    assert time.perf_counter() - started < 1.0
    release.set()
    assert runner.join(5)
    leftover = [i for i in ids if receiver.store.get(i).status is Status.PENDING]  # type: ignore[union-attr]
    assert leftover  # overflowed ids were not lost, only left for recovery
    receiver.recover()
    assert sorted(seen) == ids
    receiver.close()


def test_max_age_answers_expired_and_must_sit_between_retry_span_and_retention() -> None:
    from datetime import timedelta

    receiver = make(max_age=timedelta(days=2))
    old = json.dumps(sample_event("deal.won", created_at="2020-01-01T00:00:00Z")).encode()
    assert post(receiver, old) == (200, {"status": "expired"})
    assert receiver.store.count() == 0
    assert post(receiver, sample_body("deal.won"))[0] == 200
    with pytest.raises(ConfigurationError, match="retry span"):
        make(max_age=timedelta(hours=1))
    with pytest.raises(ConfigurationError, match="retention"):
        make(max_age=timedelta(days=8))
    with pytest.raises(ConfigurationError, match="retry span"):
        make(retention=timedelta(hours=24))


def test_a_future_dated_event_cannot_be_replayed_once_its_row_is_pruned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import timedelta, timezone

    from iverton_webhooks import _receiver as receiver_module

    max_age, retention = timedelta(days=2), timedelta(days=7)
    store, router, seen = MemoryStore(), Router(), []
    router.on("deal.won")(lambda event: seen.append(event.id))
    receiver = make(router, store=store, max_age=max_age, retention=retention)

    def dated(event_id: str, ahead: timedelta) -> bytes:
        when = (datetime.now(timezone.utc) + ahead).strftime("%Y-%m-%dT%H:%M:%SZ")
        return json.dumps(sample_event("deal.won", id=event_id, created_at=when)).encode()

    # Year 2999: never too old, so once pruned its replay would be accepted and run again.
    assert post(receiver, dated("evt_2999", timedelta(days=365 * 900))) == (
        200,
        {"status": "expired"},
    )
    # Just beyond retention - max_age ahead: the same; just within it: accepted.
    assert post(receiver, dated("evt_ahead", retention - max_age + timedelta(hours=1)))[1] == {
        "status": "expired"
    }
    within = dated("evt_soon", retention - max_age - timedelta(hours=1))
    assert post(receiver, within) == (200, {"status": "accepted"})
    assert store.get("evt_2999") is None
    assert store.get("evt_ahead") is None
    assert seen == ["evt_soon"]
    # Once the retention has passed its row is pruned; a replay then is older than max_age.
    later = time.time() + retention.total_seconds() + 60
    assert store.prune(later - retention.total_seconds()) == 1
    then = types.SimpleNamespace(**{**vars(time), "time": lambda: later})
    monkeypatch.setattr(receiver_module, "time", then)
    assert post(receiver, within) == (200, {"status": "expired"})
    assert seen == ["evt_soon"]


def test_unknown_runner_and_store_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="runner"):
        Receiver(SECRET, store="memory://", runner="celery-ish")
    with pytest.raises(ConfigurationError, match="scheme"):
        Receiver(SECRET, store="mongodb://x", runner="inline")


def test_a_runner_class_is_instantiated() -> None:
    receiver = Receiver(SECRET, store="memory://", runner=ThreadRunner)  # type: ignore[arg-type]
    assert isinstance(receiver.runner, ThreadRunner)
    receiver.close()


def test_thread_runner_never_queues_an_id_twice() -> None:
    router, release = Router(), threading.Event()
    router.on("*")(lambda event: release.wait(5))
    runner = ThreadRunner(workers=1, poll_interval=60)
    receiver = make(router, runner=runner)
    claims: list[str] = []
    claim = receiver.store.claim

    def counted(event_id: str, *args: Any, **kwargs: Any) -> Any:
        claims.append(event_id)
        return claim(event_id, *args, **kwargs)

    receiver.store.claim = counted  # type: ignore[method-assign]
    for n in range(3):
        post(receiver, sample_body("deal.won", id=f"evt_once_{n}"))
    time.sleep(0.1)  # the worker holds evt_once_0; 1 and 2 wait their turn
    for event_id in ("evt_once_0", "evt_once_1", "evt_once_2"):
        runner.submit(event_id)  # what a poll or a replay would do
    release.set()
    assert runner.join(5)
    # Each id was taken up once: a copy queued beside it would have tried its claim again.
    assert sorted(claims) == ["evt_once_0", "evt_once_1", "evt_once_2"]
    receiver.close()


def test_log_lines_escape_control_characters_in_signed_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A signed id or type with CR LF would forge a second server log line; ESC sequences
    # would reach the terminal of whoever tails the log.
    receiver = make(runner="inline")
    hostile = "evt_x\r\n2026-01-01 INFO forged\x1b]52;c;aGk=\x07"
    body = json.dumps(sample_event("deal.won", id=hostile)).encode()
    unknown = json.dumps(sample_event("deal.won", id="evt_y", type="x.y\r\nforged")).encode()
    with caplog.at_level(logging.DEBUG, "iverton_webhooks"):
        post(receiver, body)
        post(receiver, body)
        post(receiver, unknown)
        post(receiver, b'{"id": "evt_z\\r\\nforged", "broken": ')
    messages = [record.getMessage() for record in caplog.records]
    assert any("evt_x\\r\\n" in message for message in messages)
    for message in messages:
        assert not set(message) & {"\r", "\n", "\x1b", "\x07"}, message


def test_starting_with_no_handler_registered_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "iverton_webhooks"):
        empty = make(Router())
        empty.start()
        empty.start()
        router = Router()
        router.on("deal.won")(lambda event: None)
        make(router).start()
    said = [r.getMessage() for r in caplog.records if "no handler registered" in r.getMessage()]
    assert len(said) == 1
    assert "@on(" in said[0]
