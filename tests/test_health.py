"""Health (issue 14, item 3): Processor.health() counts and the age of the oldest due
event; ``stats`` thresholds with exit codes 0 healthy, 1 unhealthy, 2 usage error."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from iverton_webhooks import MemoryStore, Router, SQLiteStore, Status
from iverton_webhooks._cli import main
from iverton_webhooks._health import Health, Thresholds
from iverton_webhooks._processor import Processor
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox.base import Verdict
from iverton_webhooks.samples import sample_body


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def record(store: object, event_id: str, status: Status = Status.PENDING) -> None:
    body = sample_body("deal.won", id=event_id)
    created = parse_envelope(body).created_at
    store.record(event_id, "deal.won", created, body, status=status)  # type: ignore[attr-defined]


def test_health_counts_and_oldest_due_age_follow_the_store() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    processor = Processor(store, Router())
    assert processor.health() == Health("default", {}, None)
    record(store, "evt_a")
    clock.now += 30
    record(store, "evt_b")
    clock.now += 15
    health = processor.health()
    assert health.counts == {Status.PENDING: 2}
    assert health.oldest_due_age == pytest.approx(45)
    # A failed event is due at its retry time, not its arrival.
    claim = store.claim("evt_a", 60)
    assert claim is not None
    store.finish(claim, {}, Verdict(Status.FAILED, "boom", clock.now + 100))
    assert processor.health().oldest_due_age == pytest.approx(15)  # evt_b, due 15 s ago
    clock.now += 200
    assert processor.health().oldest_due_age == pytest.approx(215)  # evt_b still oldest
    assert processor.stats() == {Status.PENDING: 1, Status.FAILED: 1}  # stats() unchanged
    # Nothing due once both are done.
    for event_id in ("evt_a", "evt_b"):
        claim = store.claim(event_id, 60)
        assert claim is not None
        store.finish(claim, {}, Verdict(Status.DONE))
    assert processor.health().oldest_due_age is None


def test_a_replayed_event_is_due_from_its_replay_not_its_first_arrival() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)
    processor = Processor(store, Router())
    record(store, "evt_old")
    claim = store.claim("evt_old", 60)
    assert claim is not None
    store.finish(claim, {}, Verdict(Status.DEAD, "boom"))
    clock.now += 3600
    assert processor.replay("evt_old")
    clock.now += 10
    assert processor.health().oldest_due_age == pytest.approx(10)


def test_thresholds_name_each_limit_exceeded() -> None:
    health = Health("default", {Status.DEAD: 2, Status.QUARANTINED: 1, Status.UNHANDLED: 4}, 600.0)
    assert Thresholds().problems(health) == []
    assert not Thresholds().any
    assert Thresholds(max_dead=2, max_quarantined=1, max_due_age=600).problems(health) == []
    assert Thresholds(max_dead=1, max_quarantined=0, max_unhandled=3, max_due_age=60).problems(
        health
    ) == [
        "2 dead (max 1)",
        "1 quarantined (max 0)",
        "4 unhandled (max 3)",
        "oldest due event waiting 600 s (max 60 s): is a worker running?",
    ]
    with pytest.raises(ValueError, match="--max-dead must not be negative"):
        Thresholds(max_dead=-1)


def seeded(tmp_path: Path) -> str:
    path = tmp_path / "inbox.sqlite3"
    store = SQLiteStore(path, clock=lambda: time.time() - 3600)
    record(store, "evt_old")  # pending, due an hour ago: no worker ran
    for event_id in ("evt_d1", "evt_d2"):
        record(store, event_id)
        claim = store.claim(event_id, 60)
        assert claim is not None
        store.finish(claim, {}, Verdict(Status.DEAD, "boom"))
    store.close()
    return f"sqlite:///{path}"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-q", "stats", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_stats_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = seeded(tmp_path)
    code, out, err = cli(capsys, "--store", url)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "endpoint default: 3 event(s)"
    assert lines[-1].split()[0] == "oldest-due"
    assert 3590 <= int(lines[-1].split()[1].rstrip("s")) <= 3700

    code, out, err = cli(capsys, "--store", url, "--max-dead", "2", "--max-due-age", "7200")
    assert (code, out.splitlines()[-1], err) == (0, "healthy", "")

    code, out, err = cli(capsys, "--store", url, "--max-dead", "0", "--max-due-age", "300")
    assert code == 1
    assert err.startswith("error: unhealthy: 2 dead (max 0); oldest due event waiting 36")
    assert err.rstrip().endswith("(max 300 s): is a worker running?")

    code, out, err = cli(capsys, "--store", url, "--json", "--max-quarantined", "0")
    document = json.loads(out)
    assert (code, document["dead"], document["problems"]) == (0, 2, [])
    assert document["oldest_due_age"] > 3500

    code, out, err = cli(capsys, "--store", url, "--max-dead", "-1")
    assert (code, out) == (2, "")
    assert err == "error: --max-dead must not be negative, not -1\n"


def test_store_warnings_are_in_health_without_making_it_unhealthy() -> None:
    from iverton_webhooks._health import store_warnings

    assert store_warnings(MemoryStore()) == ()  # a store that says nothing

    class Warns(MemoryStore):
        def warnings(self) -> list[str]:
            return ["run Redis with appendonly yes"]

    warned = Health("default", {}, None, warnings=store_warnings(Warns()))
    assert warned.to_json()["warnings"] == ["run Redis with appendonly yes"]
    assert Thresholds(max_dead=0, max_due_age=1).problems(warned) == []
    assert "warnings" not in Health("default", {}, None).to_json()


def test_stats_prints_what_the_store_cannot_keep() -> None:
    from iverton_webhooks import MemoryStore
    from iverton_webhooks import _operations as ops
    from iverton_webhooks._processor import Processor

    class Forgetful(MemoryStore):
        def warnings(self) -> list[str]:
            return ["the server keeps nothing on disk: set appendonly yes"]

    lines: list[str] = []
    assert ops.stats(Processor(Forgetful()), lines.append) == ops.OK
    assert "  warning: the server keeps nothing on disk: set appendonly yes" in lines
