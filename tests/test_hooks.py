"""Lifecycle hooks (issue 14, item 1): every hook fires once at its moment with the
right notice; a subscriber that raises is logged and changes neither the reply nor
what happens to the event. And the disablement warning (item 4)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from iverton_webhooks import MemoryStore, Receiver, Router, Status
from iverton_webhooks._answers import LocalAnswerLog, StoreAnswerLog
from iverton_webhooks._errors import ConfigurationError
from iverton_webhooks._worker import Result, RetryPolicy
from iverton_webhooks.hooks import Hook, Hooks, Notice
from iverton_webhooks.samples import sample_body, sample_event
from tests.conftest import SECRET, signed_headers


class Collect:
    """A subscriber to every hook that keeps what it was told."""

    def __init__(self, hooks: Hooks) -> None:
        self.notices: list[Notice] = []
        hooks.add(self.notices.append)

    def kinds(self) -> list[str]:
        return [n.hook.value for n in self.notices]

    def take(self) -> list[Notice]:
        taken, self.notices[:] = list(self.notices), []
        return taken


class DownStore(MemoryStore):
    def record(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("store is down")


def make(router: Router | None = None, **kwargs: Any) -> Receiver:
    kwargs.setdefault("store", MemoryStore())
    kwargs.setdefault("runner", "inline")
    return Receiver(SECRET, router=router or Router(), **kwargs)


def post(receiver: Receiver, body: bytes, headers: dict[str, str] | None = None) -> int:
    return receiver.receive("POST", body, headers or signed_headers(body)).status


def failing_router() -> Router:
    router = Router()

    def books(event: Any) -> None:
        raise RuntimeError("ledger offline")

    router.add(books, "deal.won", name="books")
    router.add(lambda event: None, "deal.won", name="crm")
    return router


def test_receive_side_hooks_fire_once_with_the_answer() -> None:
    receiver = make(failing_router())
    seen = Collect(receiver.hooks)
    body = sample_body("deal.lost", id="evt_h1")

    post(receiver, body)
    # deal.lost has no handler: received, then unhandled after inline processing.
    assert [(n.hook, n.event_id, n.event_type, n.status_code) for n in seen.take()] == [
        (Hook.UNHANDLED, "evt_h1", "deal.lost", None),
        (Hook.RECEIVED, "evt_h1", "deal.lost", 200),
    ]
    post(receiver, body)
    assert [(n.hook, n.event_id, n.status_code) for n in seen.take()] == [
        (Hook.DUPLICATE, "evt_h1", 200)
    ]
    post(receiver, body, {"X-Iverton-Signature": "sha256=" + "0" * 64})
    assert [(n.hook, n.event_id, n.status_code) for n in seen.take()] == [(Hook.REFUSED, None, 401)]
    post(receiver, b'{"id": "evt_bad", "type": "deal.won", "data": 3}')
    [quarantined] = seen.take()
    assert (quarantined.hook, quarantined.event_id, quarantined.status_code) == (
        Hook.QUARANTINED,
        "evt_bad",
        200,
    )
    assert quarantined.error


def test_expired_and_store_down_hooks() -> None:
    receiver = make(max_age=timedelta(days=2))
    seen = Collect(receiver.hooks)
    old = json.dumps(sample_event("deal.won", id="evt_old", created_at="2020-01-01T00:00:00Z"))
    post(receiver, old.encode())
    assert [(n.hook, n.event_id, n.status_code) for n in seen.take()] == [
        (Hook.EXPIRED, "evt_old", 200)
    ]
    down = make(store=DownStore())
    seen = Collect(down.hooks)
    assert post(down, sample_body("deal.won", id="evt_down")) == 503
    assert [(n.hook, n.event_id, n.status_code) for n in seen.take()] == [
        (Hook.STORE_DOWN, "evt_down", 503)
    ]


def test_processing_hooks_handler_failed_then_dead_and_done() -> None:
    receiver = make(failing_router(), retry=RetryPolicy(max_attempts=2, base_delay=0, jitter=0))
    seen = Collect(receiver.hooks)
    post(receiver, sample_body("deal.won", id="evt_f"))
    assert [(n.hook, n.handler) for n in seen.take()] == [
        (Hook.HANDLER_FAILED, "books"),
        (Hook.RECEIVED, None),
    ]
    assert receiver.process("evt_f") is Result.DEAD
    failed, dead = seen.take()
    assert (failed.hook, failed.handler, failed.event_id) == (Hook.HANDLER_FAILED, "books", "evt_f")
    assert failed.error is not None
    assert "RuntimeError: ledger offline" in failed.error
    assert (dead.hook, dead.event_id, dead.event_type) == (Hook.DEAD, "evt_f", "deal.won")
    assert dead.error is not None
    assert dead.error.startswith("books: RuntimeError")

    ok = make(Router(), store=receiver.store)
    ok.router.on("deal.won")(lambda event: None)
    seen = Collect(ok.hooks)
    post(ok, sample_body("deal.won", id="evt_ok"))
    assert [(n.hook, n.event_id) for n in seen.take()] == [
        (Hook.DONE, "evt_ok"),
        (Hook.RECEIVED, "evt_ok"),
    ]


def test_quarantined_at_processing_fires_the_hook() -> None:
    receiver = make()
    seen = Collect(receiver.hooks)
    receiver.store.record("evt_q", "deal.won", datetime.now(timezone.utc), b"not an event")
    assert receiver.process("evt_q") is Result.QUARANTINED
    [notice] = seen.take()
    assert (notice.hook, notice.event_id, notice.endpoint) == (Hook.QUARANTINED, "evt_q", "default")


def test_a_raising_subscriber_changes_no_reply_and_no_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(notice: Notice) -> None:
        raise ValueError(f"subscriber bug at {notice.hook.value}")

    hooks = Hooks()
    hooks.add(explode)  # every hook
    calm = make(failing_router())
    loud = make(failing_router(), hooks=hooks)
    assert loud.hooks is hooks
    assert loud.processor.hooks is hooks
    bodies = [
        sample_body("deal.won", id="evt_r1"),
        sample_body("deal.won", id="evt_r1"),
        sample_body("deal.lost", id="evt_r2"),
        b"{not json",
    ]
    with caplog.at_level(logging.ERROR, "iverton_webhooks"):
        for body in bodies:
            assert loud.receive("POST", body, signed_headers(body)) == calm.receive(
                "POST", body, signed_headers(body)
            )
        forged = {"X-Iverton-Signature": "sha256=" + "1" * 64}
        assert loud.receive("POST", bodies[0], forged) == calm.receive("POST", bodies[0], forged)
    assert {e.id: e.status for e in loud.store.list(limit=10)} == {
        e.id: e.status for e in calm.store.list(limit=10)
    }
    assert loud.store.get("evt_r1").status is Status.FAILED  # type: ignore[union-attr]
    raised = [r for r in caplog.records if "subscriber" in r.getMessage()]
    assert {r.getMessage().split()[1] for r in raised} >= {
        "received",
        "duplicate",
        "unhandled",
        "handler_failed",
        "quarantined",
        "refused",
    }


def test_on_decorator_add_remove_and_names() -> None:
    hooks = Hooks()
    got: list[str] = []

    @hooks.on("dead", Hook.DONE)
    def note(notice: Notice) -> None:
        got.append(notice.hook.value)

    hooks.emit(Notice(Hook.DEAD, "x"))
    hooks.emit(Notice(Hook.RECEIVED, "x"))
    hooks.emit(Notice(Hook.DONE, "x"))
    hooks.remove(note)
    hooks.emit(Notice(Hook.DONE, "x"))
    assert got == ["dead", "done"]
    assert not hooks
    with pytest.raises(ValueError, match="no_such_hook"):
        hooks.add(note, "no_such_hook")


# The disablement warning -----------------------------------------------------------------


def test_warning_at_the_third_consecutive_401_naming_rotation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = make()
    risk: list[Notice] = []
    receiver.hooks.add(risk.append, Hook.ENDPOINT_AT_RISK)
    body = sample_body("deal.won", id="evt_rot")
    rotated = signed_headers(body, "whsec_the_new_secret_nobody_told_us")
    with caplog.at_level(logging.ERROR, "iverton_webhooks"):
        for _ in range(2):
            assert receiver.receive("POST", body, rotated).status == 401
        assert risk == []
        assert not [r for r in caplog.records if "in a row" in r.getMessage()]
        assert receiver.receive("POST", body, rotated).status == 401
    [notice] = risk
    assert notice.status_code == 401
    assert notice.endpoint == "default"
    assert notice.detail is not None
    assert "did the secret rotate? configure secrets=[new, old]" in notice.detail
    [line] = [r for r in caplog.records if "in a row" in r.getMessage()]
    assert line.levelno == logging.ERROR
    assert "3 non-2xx responses in a row" in line.getMessage()
    assert "secrets=[new, old]" in line.getMessage()
    # A fourth does not repeat the warning: once per streak.
    receiver.receive("POST", body, rotated)
    assert len(risk) == 1


def test_any_2xx_resets_the_count() -> None:
    receiver = make()
    risk: list[Notice] = []
    receiver.hooks.add(risk.append, Hook.ENDPOINT_AT_RISK)
    body = sample_body("deal.won", id="evt_reset")
    forged = {"X-Iverton-Signature": "sha256=" + "2" * 64}
    for _ in range(2):
        receiver.receive("POST", body, forged)
    assert post(receiver, body) == 200
    for _ in range(2):
        receiver.receive("POST", body, forged)
    assert post(receiver, body) == 200  # a duplicate is a 2xx too
    for _ in range(2):
        receiver.receive("POST", body, forged)
    assert risk == []
    receiver.receive("POST", body, forged)
    assert len(risk) == 1


def test_store_down_streak_names_the_store_and_405_does_not_count() -> None:
    receiver = make(store=DownStore())
    risk: list[Notice] = []
    receiver.hooks.add(risk.append, Hook.ENDPOINT_AT_RISK)
    body = sample_body("deal.won", id="evt_503")
    for _ in range(5):
        assert receiver.receive("GET", b"", {}).status == 405
    post(receiver, body)
    post(receiver, body)
    assert risk == []
    post(receiver, body)
    [notice] = risk
    assert notice.status_code == 503
    assert notice.detail is not None
    assert "store is down" in notice.detail


def test_missing_signature_streak_names_a_different_cause() -> None:
    receiver = make()
    risk: list[Notice] = []
    receiver.hooks.add(risk.append, Hook.ENDPOINT_AT_RISK)
    for _ in range(3):
        receiver.receive("POST", b"{}", {})
    [notice] = risk
    assert notice.detail is not None
    assert "rotate" not in notice.detail


def test_the_answer_log_is_shared_between_receivers() -> None:
    # What the store-backed log will do across processes: two receivers (two "processes")
    # of one endpoint count into one log, so the third 401 overall warns.
    shared = LocalAnswerLog()
    first, second = make(answer_log=shared), make(answer_log=shared)
    risk: list[Notice] = []
    first.hooks.add(risk.append, Hook.ENDPOINT_AT_RISK)
    second.hooks.add(risk.append, Hook.ENDPOINT_AT_RISK)
    forged = {"X-Iverton-Signature": "sha256=" + "3" * 64}
    first.receive("POST", b"{}", forged)
    second.receive("POST", b"{}", forged)
    assert risk == []
    first.receive("POST", b"{}", forged)
    assert len(risk) == 1


def test_a_broken_answer_log_does_not_change_the_reply() -> None:
    class Broken:
        def __init__(self) -> None:
            self.quiet: dict[str, float] = {}

        def note(self, endpoint: str, ok: bool, kind: str) -> int:
            raise ConnectionError("down")

    receiver = make(answer_log=Broken())
    assert post(receiver, sample_body("deal.won", id="evt_bl")) == 200


# The receiver skips the answer log and the hooks while neither has anything to do
# (most acks), and not a moment longer: a failure must still reach the log.


class CountedLog(LocalAnswerLog):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bool] = []

    def note(self, endpoint: str, ok: bool, kind: str) -> int:
        self.calls.append(ok)
        return super().note(endpoint, ok, kind)


def accept(receiver: Receiver, n: int, tag: str) -> None:
    for i in range(n):
        assert post(receiver, sample_body("deal.won", id=f"evt_{tag}_{i}")) == 200


def test_a_quiet_2xx_skips_the_answer_log_until_a_failure() -> None:
    log = CountedLog()
    receiver = make(answer_log=log)
    accept(receiver, 20, "quiet")
    assert log.calls == [True]  # the first 2xx; after it there is nothing to clear
    receiver.receive("POST", b"{}", {"X-Iverton-Signature": "sha256=" + "4" * 64})
    accept(receiver, 5, "after")
    assert log.calls == [True, False, True]  # the 2xx after the failure clears it


def test_the_store_log_clears_the_shared_count_once_per_interval() -> None:
    receiver = make()
    clears: list[str] = []
    clear = receiver.store.clear_failures

    def counted(endpoint: str) -> None:
        clears.append(endpoint)
        clear(endpoint)

    receiver.store.clear_failures = counted  # type: ignore[method-assign]
    accept(receiver, 30, "clears")
    assert clears == ["default"]
    receiver.receive("POST", b"{}", {})  # a failure: the next 2xx clears at once
    accept(receiver, 3, "again")
    assert clears == ["default", "default"]


@pytest.mark.parametrize("in_store", [False, True], ids=["local", "store"])
def test_a_success_between_failures_of_two_receivers_breaks_the_streak(in_store: bool) -> None:
    # One log shared in one process (across processes a success may reach the count up
    # to a second late: StoreAnswerLog's docstring).
    store = MemoryStore()
    log = StoreAnswerLog(store) if in_store else LocalAnswerLog()
    first, second = make(store=store, answer_log=log), make(store=store, answer_log=log)
    risk: list[Notice] = []
    first.hooks.add(risk.append, Hook.ENDPOINT_AT_RISK)
    accept(second, 3, "warm")  # quiet from here on
    forged = {"X-Iverton-Signature": "sha256=" + "5" * 64}
    first.receive("POST", b"{}", forged)
    first.receive("POST", b"{}", forged)
    accept(second, 1, "between")
    first.receive("POST", b"{}", forged)
    assert risk == []


def test_a_subscriber_added_after_quiet_acks_hears_the_next_one() -> None:
    receiver = make()
    accept(receiver, 3, "before")
    heard: list[Notice] = []
    receiver.hooks.add(heard.append, Hook.RECEIVED)
    accept(receiver, 2, "heard")
    assert [n.event_id for n in heard] == ["evt_heard_0", "evt_heard_1"]
    receiver.hooks.remove(heard.append)
    accept(receiver, 2, "gone")
    assert len(heard) == 2


def test_hooks_that_decide_in_wants_are_asked_on_every_ack() -> None:
    told: list[Notice] = []

    class Decides(Hooks):  # as Django's signal hooks do: receivers come and go
        def wants(self, hook: Hook) -> bool:
            return hook is Hook.RECEIVED

        def emit(self, notice: Notice) -> None:
            told.append(notice)

    receiver = make(hooks=Decides())
    accept(receiver, 3, "decides")
    assert [n.hook for n in told] == [Hook.RECEIVED] * 3


def test_an_answer_log_without_quiet_is_refused_at_start() -> None:
    class Old:
        def note(self, endpoint: str, ok: bool, kind: str) -> int:
            return 0

    with pytest.raises(ConfigurationError, match="quiet dict"):
        make(answer_log=Old())


class FlakyStore(MemoryStore):
    """A store that can go down and come back, as a restarted database does."""

    down = False

    def record(self, *args: Any, **kwargs: Any) -> bool:
        if self.down:
            raise ConnectionError("store is down")
        return super().record(*args, **kwargs)


@pytest.mark.parametrize("local", [False, True], ids=["store-log", "local-log"])
def test_a_2xx_after_quiet_acks_and_503s_starts_the_count_again(local: bool) -> None:
    store = FlakyStore()
    receiver = make(store=store, answer_log=LocalAnswerLog() if local else None)
    risk: list[Notice] = []
    receiver.hooks.add(risk.append, Hook.ENDPOINT_AT_RISK)
    accept(receiver, 3, "quiet")  # the log is quiet from here on
    store.down = True
    assert post(receiver, sample_body("deal.won", id="evt_503_a")) == 503
    assert post(receiver, sample_body("deal.won", id="evt_503_b")) == 503
    store.down = False
    accept(receiver, 1, "back")  # must reach the log although it was quiet a moment ago
    store.down = True
    assert post(receiver, sample_body("deal.won", id="evt_503_c")) == 503
    assert post(receiver, sample_body("deal.won", id="evt_503_d")) == 503
    assert risk == []  # two in a row, not four
    assert post(receiver, sample_body("deal.won", id="evt_503_e")) == 503
    assert len(risk) == 1
