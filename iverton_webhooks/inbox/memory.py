"""An in-process store: for tests and demos. Nothing survives the process."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from . import base
from .base import (
    DEFAULT_ENDPOINT,
    Claim,
    EndpointRecord,
    EndpointSecret,
    HandlerOutcome,
    MarkAnswer,
    MarkKey,
    Status,
    StoredEvent,
    store_text,
)

_CLAIMABLE = base.values(base.CLAIMABLE)
_FINISHED = base.values(base.FINISHED)
_REPLAYABLE = base.values(base.REPLAYABLE)
_RESOLVABLE = base.values(base.RESOLVABLE)

Row = dict[str, Any]


def _key(endpoint: str, event_id: str) -> tuple[str, str]:
    return store_text(endpoint), store_text(event_id)


def _mark_key(key: MarkKey) -> tuple[str, str, str]:
    return store_text(key.endpoint), store_text(key.resource), store_text(key.handler)


def _is_due(row: Row, now: float) -> bool:
    return row["status"] in _CLAIMABLE and row["due_at"] is not None and row["due_at"] <= now


class MemoryStore(base.RecordsRows, base.ClaimedWrites):
    """Rows as plain dicts (the columns of `new_row` plus ``outcomes``)
    behind one lock, with the same semantics as the durable stores. Text is kept as
    the other stores keep it (``base.store_text``), so it behaves as they do."""

    blocking = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # Insertion order is arrival order: listing walks it backwards.
        self._rows: dict[tuple[str, str], Row] = {}
        self._failures: dict[str, int] = {}
        # A mark: the applied event (``(created_at, stored id)`` or None), the holder (or
        # None) and the end of its hold.
        self._marks: dict[tuple[str, str, str], dict[str, Any]] = {}
        # By name as stored: its secrets (``base.dump_secrets``), ``enabled``,
        # ``created_at`` and ``updated_at``.
        self._registry: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<MemoryStore {len(self._rows)} events>"

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        """``memory://``: a new, empty store."""
        return cls()

    @classmethod
    def missing_inbox(cls, url: str) -> str | None:
        return None  # always there, and always empty

    def insert_row(self, row: dict[str, Any], resource_id: str | None) -> bool:
        key = (row["endpoint"], row["id"])
        with self._lock:
            existing = self._rows.get(key)
            if existing is not None:
                existing["deliveries"] += 1
                return False
            row["outcomes"] = None
            self._rows[key] = row
            return True

    def claim(
        self, event_id: str, lease_seconds: float, *, endpoint: str = DEFAULT_ENDPOINT
    ) -> Claim | None:
        with self._lock:
            row = self._rows.get(_key(endpoint, event_id))
            now = self.clock()
            if row is None or not _is_due(row, now):
                return None
            token = base.new_token()
            row.update(base.claim_fields(now, lease_seconds, token))
            row["attempts"] += 1
            return Claim(base.read_row(row), token)

    def _claimed(
        self, claim: Claim, fields: Mapping[str, Any], outcomes: Mapping[str, HandlerOutcome]
    ) -> bool:
        with self._lock:
            row = self._rows.get(_key(claim.event.endpoint, claim.event.id))
            if row is None or row["lease_token"] != claim.token:
                return False
            row.update(fields)
            # The (frozen) outcomes themselves, which read_row takes as they are; a new
            # dict, so no event handed out shares it.
            row["outcomes"] = {**(row["outcomes"] or {}), **outcomes}
            return True

    def _due(self, endpoint: str) -> list[tuple[float, str]]:
        """``(due_at, stored id)`` of the events due now, soonest first."""
        now = self.clock()
        with self._lock:
            rows = self._select(endpoint)
            return sorted((row["due_at"], row["id"]) for row in rows if _is_due(row, now))

    def due(self, limit: int = 100, *, endpoint: str = DEFAULT_ENDPOINT) -> list[str]:
        return [base.load_text(event_id) for _, event_id in self._due(endpoint)[:limit]]

    def oldest_due(self, *, endpoint: str = DEFAULT_ENDPOINT) -> float | None:
        due = self._due(endpoint)
        return float(due[0][0]) if due else None

    def note_failure(self, endpoint: str, kind: str) -> int:
        with self._lock:
            self._failures[endpoint] = self._failures.get(endpoint, 0) + 1
            return self._failures[endpoint]

    def clear_failures(self, endpoint: str) -> None:
        with self._lock:
            self._failures.pop(endpoint, None)

    def get(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> StoredEvent | None:
        with self._lock:
            row = self._rows.get(_key(endpoint, event_id))
            return None if row is None else base.read_row(row)

    def _select(self, endpoint: str | None) -> list[Row]:
        if endpoint is None:
            return list(self._rows.values())
        where = store_text(endpoint)
        return [row for row in self._rows.values() if row["endpoint"] == where]

    def _transition(
        self, endpoint: str, event_id: str, allowed: tuple[str, ...], fields: Mapping[str, Any]
    ) -> bool:
        with self._lock:
            row = self._rows.get(_key(endpoint, event_id))
            if row is None or row["status"] not in allowed:
                return False
            row.update(fields)
            return True

    def replay(
        self, event_id: str, *, rerun_all: bool = False, endpoint: str = DEFAULT_ENDPOINT
    ) -> bool:
        fields = base.replay_fields(self.clock())
        if rerun_all:
            fields["outcomes"] = None
        return self._transition(endpoint, event_id, _REPLAYABLE, fields)

    def resolve(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> bool:
        fields = base.resolve_fields(self.clock())
        return self._transition(endpoint, event_id, _RESOLVABLE, fields)

    def prune(self, received_before: float, *, endpoint: str | None = None) -> int:
        with self._lock:
            old = [
                (row["endpoint"], row["id"])
                for row in self._select(endpoint)
                if row["status"] in _FINISHED and row["received_at"] < received_before
            ]
            for key in old:
                del self._rows[key]
            return len(old)

    def stats(self, *, endpoint: str | None = DEFAULT_ENDPOINT) -> dict[Status, int]:
        with self._lock:
            return dict(Counter(Status(row["status"]) for row in self._select(endpoint)))

    def count(self, *, endpoint: str | None = None) -> int:
        with self._lock:
            return len(self._select(endpoint))

    # -- ResourceMarks (see base.ResourceMarks for the semantics) ----------------------

    def take_mark(
        self, key: MarkKey, created_at: float, event_id: str, holder: str, hold_seconds: float
    ) -> MarkAnswer:
        with self._lock:
            now = self.clock()
            mark = self._marks.setdefault(
                _mark_key(key), {"applied": None, "holder": None, "hold_until": None}
            )
            applied = mark["applied"]
            if applied is not None and (
                applied[1] == store_text(event_id) or applied[0] > created_at
            ):
                return MarkAnswer.SUPERSEDED
            if mark["holder"] not in (None, holder) and mark["hold_until"] > now:
                return MarkAnswer.BUSY
            mark.update(holder=holder, hold_until=now + hold_seconds)
            return MarkAnswer.RUN

    def renew_mark(self, key: MarkKey, holder: str, hold_seconds: float) -> bool:
        with self._lock:
            mark = self._marks.get(_mark_key(key))
            if mark is None or mark["holder"] != holder:
                return False
            mark["hold_until"] = self.clock() + hold_seconds
            return True

    def release_mark(self, key: MarkKey, holder: str, applied: tuple[float, str] | None) -> None:
        with self._lock:
            mark = self._marks.get(_mark_key(key))
            if mark is None:
                return
            if applied is not None and (
                mark["applied"] is None or applied[0] >= mark["applied"][0]
            ):
                mark["applied"] = (applied[0], store_text(applied[1]))
            if mark["holder"] == holder:
                mark.update(holder=None, hold_until=None)

    # -- EndpointRegistry (see base.EndpointRegistry for the semantics) -----------------

    def add_endpoint(self, name: str, secret: str) -> bool:
        with self._lock:
            key = store_text(name)
            if key in self._registry:
                return False
            now = self.clock()
            self._registry[key] = {
                "secrets": base.dump_secrets((EndpointSecret(secret),)),
                "enabled": True,
                "created_at": now,
                "updated_at": now,
            }
            return True

    def get_endpoint(self, name: str) -> EndpointRecord | None:
        key = store_text(name)
        with self._lock:
            found = self._registry.get(key)
            return None if found is None else base.read_endpoint(key, **found)

    def list_endpoints(self) -> list[EndpointRecord]:
        with self._lock:
            found = [base.read_endpoint(key, **row) for key, row in self._registry.items()]
        return sorted(found, key=lambda endpoint: endpoint.name)

    def rotate_endpoint(self, name: str, secret: str, grace_seconds: float) -> bool:
        with self._lock:
            found = self._registry.get(store_text(name))
            if found is None:
                return False
            now = self.clock()
            secrets = base.rotated(base.load_secrets(found["secrets"]), secret, now, grace_seconds)
            found.update(secrets=base.dump_secrets(secrets), updated_at=now)
            return True

    def set_endpoint_enabled(self, name: str, enabled: bool) -> bool:
        with self._lock:
            found = self._registry.get(store_text(name))
            if found is None:
                return False
            found.update(enabled=bool(enabled), updated_at=self.clock())
            return True

    def remove_endpoint(self, name: str) -> bool:
        with self._lock:
            return self._registry.pop(store_text(name), None) is not None

    # Last in the class: below here, ``list`` names this method, not the builtin.
    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
        *,
        endpoint: str | None = DEFAULT_ENDPOINT,
    ) -> list[StoredEvent]:
        wanted = None if status is None else Status(status).value
        of_type = None if event_type is None else store_text(event_type)
        found: list[StoredEvent] = []
        with self._lock:
            for row in reversed(self._select(endpoint)):
                if len(found) >= limit:
                    break
                if wanted in (None, row["status"]) and of_type in (None, row["type"]):
                    found.append(base.read_row(row))
        return found

    def close(self) -> None:
        pass
