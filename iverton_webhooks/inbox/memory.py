"""An in-process store: for tests and demos. Nothing survives the process."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from .base import Claim, HandlerOutcome, Status, StoredEvent, to_datetime

_ACTIVE = (Status.PENDING, Status.FAILED, Status.PROCESSING)


class MemoryStore:
    """A dict behind a lock, with the same semantics as the durable stores."""

    blocking = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._events: dict[str, StoredEvent] = {}
        self._due_at: dict[str, float] = {}
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._events)} events>"

    def record(self, event_id: str, event_type: str, created_at: datetime, body: bytes) -> bool:
        with self._lock:
            existing = self._events.get(event_id)
            if existing is not None:
                self._events[event_id] = replace(existing, deliveries=existing.deliveries + 1)
                return False
            now = self.clock()
            self._events[event_id] = StoredEvent(
                id=event_id,
                type=event_type,
                created_at=created_at,
                received_at=to_datetime(now),  # type: ignore[arg-type]
                body=bytes(body),
                status=Status.PENDING,
            )
            self._due_at[event_id] = now
            return True

    def claim(self, event_id: str, lease_seconds: float) -> Claim | None:
        with self._lock:
            event = self._events.get(event_id)
            now = self.clock()
            if event is None or event.status not in _ACTIVE or self._due_at[event_id] > now:
                return None
            token = uuid.uuid4().hex
            event = replace(
                event,
                status=Status.PROCESSING,
                attempts=event.attempts + 1,
                lease_until=to_datetime(now + lease_seconds),
            )
            self._events[event_id] = event
            self._due_at[event_id] = now + lease_seconds
            self._tokens[event_id] = token
            return Claim(event=event, token=token)

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._finish(claim, outcomes, Status.PROCESSING, None, None)

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

    def _finish(
        self,
        claim: Claim,
        outcomes: Mapping[str, HandlerOutcome],
        status: Status,
        error: str | None,
        retry_at: float | None,
    ) -> bool:
        with self._lock:
            event = self._events.get(claim.event.id)
            if event is None or self._tokens.get(event.id) != claim.token:
                return False
            merged = {**event.outcomes, **outcomes}
            if status is Status.PROCESSING:
                self._events[event.id] = replace(event, outcomes=merged)
                return True
            del self._tokens[event.id]
            now = self.clock()
            self._events[event.id] = replace(
                event,
                status=status,
                outcomes=merged,
                lease_until=None,
                last_error=error,
                next_attempt_at=to_datetime(retry_at),
                processed_at=to_datetime(now) if status is Status.DONE else event.processed_at,
            )
            if status is Status.FAILED and retry_at is not None:
                self._due_at[event.id] = retry_at
            else:
                self._due_at.pop(event.id, None)
            return True

    def due(self, limit: int = 100) -> list[str]:
        now = self.clock()
        with self._lock:
            ready = sorted((at, event_id) for event_id, at in self._due_at.items() if at <= now)
        return [event_id for _, event_id in ready[:limit]]

    def get(self, event_id: str) -> StoredEvent | None:
        return self._events.get(event_id)

    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        with self._lock:
            events = list(self._events.values())
        wanted = None if status is None else Status(status)
        matching = [
            e
            for e in reversed(events)
            if (wanted is None or e.status is wanted)
            and (event_type is None or e.type == event_type)
        ]
        return matching[:limit]

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        with self._lock:
            event = self._events.get(event_id)
            if event is None or event.status in (Status.PENDING, Status.PROCESSING):
                return False
            self._events[event_id] = replace(
                event,
                status=Status.PENDING,
                attempts=0,
                next_attempt_at=None,
                outcomes={} if rerun_all else event.outcomes,
            )
            self._due_at[event_id] = self.clock()
            return True

    def resolve(self, event_id: str) -> bool:
        with self._lock:
            event = self._events.get(event_id)
            if event is None or event.status not in (Status.FAILED, Status.DEAD):
                return False
            self._events[event_id] = replace(
                event, status=Status.DONE, processed_at=to_datetime(self.clock())
            )
            self._due_at.pop(event_id, None)
            return True

    def prune(self, received_before: float) -> int:
        with self._lock:
            old = [
                e.id
                for e in self._events.values()
                if e.status in (Status.DONE, Status.DEAD)
                and e.received_at.timestamp() < received_before
            ]
            for event_id in old:
                del self._events[event_id]
            return len(old)

    def count(self) -> int:
        return len(self._events)

    def close(self) -> None:
        pass
