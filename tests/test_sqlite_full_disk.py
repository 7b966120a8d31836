"""SQLite on a volume that fills up: 503 while full, 2xx again once space is freed, and
every acknowledged event processed (none lost). Runs on a real 2 MB tmpfs, so it needs
root (``mount``); it is skipped with the reason otherwise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks import Receiver, Router, SQLiteStore, Status, StoreUnavailable
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, mounted_tmpfs, signed_headers

pytestmark = pytest.mark.slow

# A body near the size senders really post, so a few hundred events fill 2 MB.
PADDING = "x" * 1500


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "volume", "2m") as mount:
        yield mount


def post(receiver: Receiver, event_id: str) -> int:
    body = sample_body("deal.won", id=event_id, data={"note": PADDING})
    return receiver.receive("POST", body, signed_headers(body)).status


def fill(path: Path, limit: int = 4_000_000) -> None:
    """Write zeros to ``path`` until the volume refuses more (or ``limit`` bytes)."""
    written = 0
    with path.open("wb", buffering=0) as ballast:
        while written < limit:
            try:
                written += ballast.write(b"\0" * 16384)
            except OSError:
                return


def test_sqlite_recovers_once_space_is_freed_and_loses_nothing(small_volume: Path) -> None:
    processed: list[str] = []
    router = Router()
    router.on("*")(lambda event: processed.append(event.id))
    store = SQLiteStore(small_volume / "inbox.sqlite3", timeout=0.5)
    receiver = Receiver(SECRET, router=router, store=store, runner="thread")
    acked: list[str] = []
    try:
        # Traffic before the disk fills, then a ballast takes every byte left.
        for n in range(100):
            if post(receiver, f"evt_before_{n}") == 200:
                acked.append(f"evt_before_{n}")
        assert len(acked) == 100
        fill(small_volume / "ballast")
        # Keep the traffic going until the receiver answers 503 (bounded).
        refused = acked_while_full = 0
        for n in range(400):
            event_id = f"evt_full_{n}"
            status = post(receiver, event_id)
            if status == 200:
                acked.append(event_id)
                if refused:
                    acked_while_full += 1
            else:
                assert status == 503
                refused += 1
                if refused >= 20:
                    break
        assert refused >= 20, "the volume never filled up"
        assert acked_while_full == 0
        # The store says what to do about it.
        with pytest.raises(StoreUnavailable, match="disk is full; free space on the volume"):
            store.record("evt_direct", "deal.won", datetime.now(timezone.utc), b"{}")

        (small_volume / "ballast").unlink()
        freed = time.monotonic()
        recovered_after = None
        deadline = freed + 10
        while time.monotonic() < deadline:
            event_id = f"evt_after_{len(acked)}"
            if post(receiver, event_id) == 200:
                acked.append(event_id)
                recovered_after = time.monotonic() - freed
                break
            time.sleep(0.02)
        assert recovered_after is not None, "still 503 ten seconds after space was freed"

        # Steady traffic after recovery stays 2xx: the log does not grow back into the
        # freed space and fill the volume again.
        for n in range(300):
            event_id = f"evt_steady_{n}"
            assert post(receiver, event_id) == 200, f"503 again after {n} more events"
            acked.append(event_id)

        # Every acknowledged event is processed (the worker's own writes recovered too).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and set(acked) - set(processed):
            time.sleep(0.1)
        lost = set(acked) - set(processed)
        print(
            f"\nrecovered in {recovered_after:.3f} s; acked while full {acked_while_full}; "
            f"lost {len(lost)} of {len(acked)}"
        )
        assert not lost
        for event_id in acked[:: max(1, len(acked) // 20)]:
            event = store.get(event_id)
            assert event is not None
            assert event.status is Status.DONE
    finally:
        receiver.close()
        store.close()
