"""An in-process store: for tests and demos. Nothing survives the process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from .base import Claim, HandlerOutcome, Status, StoredEvent, to_datetime

_CLAIMABLE = (Status.PENDING, Status.FAILED, Status.PROCESSING)
_FINISHED = (Status.DONE, Status.DEAD)


@dataclass(slots=True)
class _Row:
    """Mutable, cheap to create; callers only ever see frozen :class:`StoredEvent` copies."""

    id: str
    type: str
    created_at: datetime
    received_at: float
    body: bytes
    due_at: float | None
    status: Status = Status.PENDING
    attempts: int = 0
    deliveries: int = 1
    next_attempt_at: float | None = None
    lease_until: float | None = None
    lease_token: str | None = None
    processed_at: float | None = None
    last_error: str | None = None
    outcomes: dict[str, HandlerOutcome] = field(default_factory=dict)

    def snapshot(self) -> StoredEvent:
        return StoredEvent(
            id=self.id,
            type=self.type,
            created_at=self.created_at,
            received_at=to_datetime(self.received_at),  # type: ignore[arg-type]
            body=self.body,
            status=self.status,
            attempts=self.attempts,
            deliveries=self.deliveries,
            next_attempt_at=to_datetime(self.next_attempt_at),
            lease_until=to_datetime(self.lease_until),
            processed_at=to_datetime(self.processed_at),
            last_error=self.last_error,
            outcomes=dict(self.outcomes),
        )


class MemoryStore:
    """A dict behind a lock, with the same semantics as the durable stores."""

    blocking = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._rows)} events>"

    def record(self, event_id: str, event_type: str, created_at: datetime, body: bytes) -> bool:
        with self._lock:
            row = self._rows.get(event_id)
            if row is not None:
                row.deliveries += 1
                return False
            now = self.clock()
            self._rows[event_id] = _Row(event_id, event_type, created_at, now, bytes(body), now)
            return True

    def claim(self, event_id: str, lease_seconds: float) -> Claim | None:
        with self._lock:
            row = self._rows.get(event_id)
            now = self.clock()
            if (
                row is None
                or row.status not in _CLAIMABLE
                or row.due_at is None
                or row.due_at > now
            ):
                return None
            row.status = Status.PROCESSING
            row.attempts += 1
            row.lease_until = row.due_at = now + lease_seconds
            row.lease_token = uuid.uuid4().hex
            return Claim(event=row.snapshot(), token=row.lease_token)

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        with self._lock:
            row = self._claimed(claim)
            if row is None:
                return False
            row.outcomes.update(outcomes)
            return True

    def complete(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._finish(claim, outcomes, Status.DONE, None, None)

    def fail(
        self,
        claim: Claim,
        outcomes: Mapping[str, HandlerOutcome],
        error: str,
        retry_at: float | None,
    ) -> bool:
        status = Status.DEAD if retry_at is None else Status.FAILED
        return self._finish(claim, outcomes, status, error, retry_at)

    def _claimed(self, claim: Claim) -> _Row | None:
        row = self._rows.get(claim.event.id)
        return row if row is not None and row.lease_token == claim.token else None

    def _finish(
        self,
        claim: Claim,
        outcomes: Mapping[str, HandlerOutcome],
        status: Status,
        error: str | None,
        retry_at: float | None,
    ) -> bool:
        with self._lock:
            row = self._claimed(claim)
            if row is None:
                return False
            row.outcomes.update(outcomes)
            row.status, row.last_error = status, error
            row.lease_token = row.lease_until = None
            row.next_attempt_at = row.due_at = retry_at
            if status is Status.DONE:
                row.processed_at = self.clock()
            return True

    def due(self, limit: int = 100) -> list[str]:
        now = self.clock()
        with self._lock:
            ready = sorted(
                (row.due_at, row.id)
                for row in self._rows.values()
                if row.status in _CLAIMABLE and row.due_at is not None and row.due_at <= now
            )
        return [event_id for _, event_id in ready[:limit]]

    def get(self, event_id: str) -> StoredEvent | None:
        with self._lock:
            row = self._rows.get(event_id)
            return None if row is None else row.snapshot()

    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        wanted = None if status is None else Status(status)
        found: list[StoredEvent] = []
        with self._lock:
            for row in reversed(self._rows.values()):
                if len(found) >= limit:
                    break
                if (wanted is None or row.status is wanted) and event_type in (None, row.type):
                    found.append(row.snapshot())
        return found

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        with self._lock:
            row = self._rows.get(event_id)
            if row is None or row.status not in (*_FINISHED, Status.FAILED):
                return False
            row.status, row.attempts, row.next_attempt_at = Status.PENDING, 0, None
            row.due_at = self.clock()
            if rerun_all:
                row.outcomes = {}
            return True

    def resolve(self, event_id: str) -> bool:
        with self._lock:
            row = self._rows.get(event_id)
            if row is None or row.status not in (Status.FAILED, Status.DEAD):
                return False
            row.status, row.due_at, row.processed_at = Status.DONE, None, self.clock()
            return True

    def prune(self, received_before: float) -> int:
        with self._lock:
            old = [
                row.id
                for row in self._rows.values()
                if row.status in _FINISHED and row.received_at < received_before
            ]
            for event_id in old:
                del self._rows[event_id]
            return len(old)

    def count(self) -> int:
        return len(self._rows)

    def close(self) -> None:
        pass
