"""The out-of-order guard under interleavings, shared by the core stores' tests and the
Django ones: deliveries of several resources' events, shuffled, some delivered twice
and some late, recorded and processed by 4 workers at once, each with its own
`Processor` on one store."""

from __future__ import annotations

import json
import queue
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from iverton_webhooks import Router, Status
from iverton_webhooks._processor import Processor
from iverton_webhooks.events import Event, parse_envelope
from iverton_webhooks.inbox.base import Store
from iverton_webhooks.samples import sample_body

WORKERS = 4
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


class SkewedClock:
    """Real time plus an offset the test moves forward, so that an event waiting for a
    busy resource is due again without the test sleeping through the wait."""

    def __init__(self) -> None:
        self.skew = 0.0

    def __call__(self) -> float:
        return time.time() + self.skew


@dataclass
class Delivery:
    event_id: str
    resource: str
    created_at: datetime
    body: bytes


@dataclass
class Applied:
    """What the guarded handler saw: the last state per resource, and any overlap or
    step backwards it caught."""

    state: dict[str, datetime] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, event: Event[Any]) -> None:
        resource = event.data.id
        with self.lock:
            if resource in self.active:
                self.problems.append(f"{resource}: two events at once")
            self.active.add(resource)
            last = self.state.get(resource)
            if last is not None and last > event.created_at:
                self.problems.append(f"{resource}: {event.created_at} after {last}")
        time.sleep(0.002)  # long enough for another worker to try the same resource
        with self.lock:
            self.state[resource] = event.created_at
            self.active.discard(resource)


def delivery(resource: int, step: int) -> Delivery:
    """Event ``step`` of deal ``d_<resource>``, created ``step`` seconds after T0."""
    created = T0 + timedelta(seconds=step)
    event_id = f"evt_{resource}_{step}_{secrets.token_hex(3)}"
    body = sample_body(
        "deal.updated",
        id=event_id,
        created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        data={"id": f"d_{resource}"},
    )
    return Delivery(event_id, f"d_{resource}", created, body)


@st.composite
def deliveries(draw: st.DrawFn) -> list[Delivery]:
    """Each resource's events (distinct created_at), shuffled; some twice, some last."""
    events = [
        delivery(resource, step)
        for resource in range(draw(st.integers(1, 3)))
        for step in range(draw(st.integers(1, 5)))
    ]
    order = draw(st.permutations(events))
    twice = draw(st.lists(st.sampled_from(events), max_size=4))
    late = draw(st.lists(st.sampled_from(events), max_size=2))
    return [*order, *twice, *late]


class Workers:
    """4 workers on one store, each with its own `Processor` (made once: a store may
    hold a connection per thread), and a guarded and an unguarded handler."""

    def __init__(
        self,
        store: Store,
        process_context: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.store = store
        self.process_context = process_context
        self.applied = Applied()
        self.unguarded: list[str] = []
        router = Router()
        router.add(self._apply, "deal.updated", name="sync_deal", newest_only=True)
        router.add(lambda event: self.unguarded.append(event.id), "deal.updated", name="audit")
        self.processors = [
            Processor(store, router, process_context=process_context) for _ in range(WORKERS)
        ]

    def _apply(self, event: Event[Any]) -> None:
        self.applied.apply(event)

    def close(self) -> None:
        for processor in self.processors:
            processor.close()

    def run(self, clock: SkewedClock, plan: list[Delivery]) -> None:
        """Record and process ``plan`` with the 4 workers, then drain what waited; check
        that each resource's last applied state is its newest event, that no resource
        ran twice at once or stepped back, and that every event ended done."""
        self.applied, self.unguarded = Applied(), []
        # Resources no earlier run used: their marks start empty.
        run = secrets.token_hex(4)
        plan = [
            replace(d, resource=f"{d.resource}_{run}", body=_renamed(d.body, run)) for d in plan
        ]
        todo: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        for delivery in plan:
            todo.put(delivery)

        def work(processor: Processor) -> None:
            while True:
                try:
                    delivery = todo.get_nowait()
                except queue.Empty:
                    return
                envelope = parse_envelope(delivery.body)
                with self.process_context():  # the request's part: record the delivery
                    self.store.record(
                        delivery.event_id, envelope.type, envelope.created_at, delivery.body
                    )
                processor.process(delivery.event_id)

        threads = [threading.Thread(target=work, args=(p,)) for p in self.processors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)

        ids = {delivery.event_id for delivery in plan}
        for _ in range(20):  # each round: what waited for a busy resource is due again
            with self.process_context():
                stored = [self.store.get(event_id) for event_id in sorted(ids)]
            if all(event is not None and event.status is Status.DONE for event in stored):
                break
            clock.skew += 2.0
            self.processors[0].recover()
        else:
            raise AssertionError(f"events not done after 20 rounds: {stored}")

        newest: dict[str, datetime] = {}
        for delivery in plan:
            newest[delivery.resource] = max(newest.get(delivery.resource, T0), delivery.created_at)
        assert self.applied.problems == []
        assert self.applied.state == newest
        assert sorted(self.unguarded) == sorted(ids)  # the unguarded handler: each event once
        for event in stored:
            assert event is not None
            assert set(event.outcomes) == {"sync_deal", "audit"}


def _renamed(body: bytes, run: str) -> bytes:
    event = json.loads(body)
    event["data"]["id"] = f"{event['data']['id']}_{run}"
    return json.dumps(event).encode()
