"""OpenTelemetry (issue 14, item 2), with the SDK's in-memory exporters: the exact spans
and metric points for accepted, duplicate, forged, quarantined and failing events."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from iverton_webhooks import BaseRunner, MemoryStore, Receiver, Router, ThreadRunner
from iverton_webhooks.samples import sample_body
from iverton_webhooks.telemetry import Telemetry, observe_inbox
from tests.conftest import SECRET, signed_headers


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = Telemetry(self.tracer_provider, self.meter_provider)

    def take(self) -> list[ReadableSpan]:
        found = list(self.spans.get_finished_spans())
        self.spans.clear()
        return found

    def points(self) -> dict[str, dict[tuple[tuple[str, Any], ...], Any]]:
        """Metric name -> {sorted attributes: value (sum, gauge value, or histogram count)}."""
        data = self.reader.get_metrics_data()
        found: dict[str, dict[tuple[tuple[str, Any], ...], Any]] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = tuple(sorted(point.attributes.items()))
                        value = getattr(point, "value", None)
                        found.setdefault(metric.name, {})[key] = (
                            point.count if value is None else value
                        )
        return found


@pytest.fixture
def otel() -> Iterator[Otel]:
    found = Otel()
    yield found
    found.tracer_provider.shutdown()
    found.meter_provider.shutdown()


def router() -> Router:
    found = Router()

    def books(event: Any) -> None:
        raise RuntimeError("ledger offline")

    found.add(lambda event: None, "deal.won", "deal.lost", name="crm")
    found.add(books, "deal.lost", name="books")
    return found


def tree(spans: list[ReadableSpan]) -> list[tuple[str, str | None]]:
    """(name, parent's name) for each span, in the order they ended."""
    by_id = {span.context.span_id: span.name for span in spans}
    return [(span.name, by_id.get(span.parent.span_id) if span.parent else None) for span in spans]


def named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [found] = [span for span in spans if span.name == name]
    return found


def test_exact_spans_and_metric_points(otel: Otel) -> None:
    receiver = Receiver(
        SECRET, router=router(), store=MemoryStore(), runner="inline", telemetry=otel.telemetry
    )
    assert observe_inbox(receiver.processor, otel.meter_provider)

    def post(body: bytes, headers: dict[str, str] | None = None) -> int:
        return receiver.receive("POST", body, headers or signed_headers(body)).status

    # Accepted: receive (verify, parse, record), then the inline processing under it.
    assert post(sample_body("deal.won", id="evt_ok")) == 200
    spans = otel.take()
    assert tree(spans) == [
        ("iverton.verify", "iverton.receive"),
        ("iverton.parse", "iverton.receive"),
        ("iverton.record", "iverton.receive"),
        ("iverton.handler", "iverton.process"),
        ("iverton.process", "iverton.receive"),
        ("iverton.receive", None),
    ]
    assert len({span.context.trace_id for span in spans}) == 1
    assert dict(named(spans, "iverton.receive").attributes or {}) == {
        "iverton.endpoint": "default",
        "iverton.answer": "accepted",
        "http.response.status_code": 200,
        "iverton.event.id": "evt_ok",
        "iverton.event.type": "deal.won",
    }
    assert dict(named(spans, "iverton.process").attributes or {}) == {
        "iverton.endpoint": "default",
        "iverton.event.id": "evt_ok",
        "iverton.event.type": "deal.won",
        "iverton.attempt": 1,
        "iverton.result": "done",
    }
    assert dict(named(spans, "iverton.handler").attributes or {}) == {
        "iverton.handler": "crm",
        "iverton.handler.outcome": "ok",
    }

    # Duplicate: receive with its three steps, no processing.
    assert post(sample_body("deal.won", id="evt_ok")) == 200
    spans = otel.take()
    assert [name for name, _ in tree(spans)] == [
        "iverton.verify",
        "iverton.parse",
        "iverton.record",
        "iverton.receive",
    ]
    assert named(spans, "iverton.receive").attributes["iverton.answer"] == "duplicate"  # type: ignore[index]

    # Forged: stops at verify; no event id on the span.
    assert post(b"{}", {"X-Iverton-Signature": "sha256=" + "0" * 64}) == 401
    spans = otel.take()
    assert tree(spans) == [("iverton.verify", "iverton.receive"), ("iverton.receive", None)]
    assert dict(named(spans, "iverton.receive").attributes or {}) == {
        "iverton.endpoint": "default",
        "iverton.answer": "refused",
        "http.response.status_code": 401,
    }

    # Quarantined: signed but unreadable, recorded aside, never processed.
    assert post(b'{"id": "evt_q", "type": "deal.won", "data": 1}') == 200
    spans = otel.take()
    assert [name for name, _ in tree(spans)] == [
        "iverton.verify",
        "iverton.parse",
        "iverton.record",
        "iverton.receive",
    ]
    receive = named(spans, "iverton.receive").attributes or {}
    assert (receive["iverton.answer"], receive["iverton.event.id"]) == ("quarantined", "evt_q")

    # A failing handler: one handler span per handler, the failure marked as an error.
    assert post(sample_body("deal.lost", id="evt_fail")) == 200
    spans = otel.take()
    handlers = [
        (dict(span.attributes or {}), span.status.status_code)
        for span in spans
        if span.name == "iverton.handler"
    ]
    assert handlers == [
        ({"iverton.handler": "crm", "iverton.handler.outcome": "ok"}, StatusCode.UNSET),
        ({"iverton.handler": "books", "iverton.handler.outcome": "failed"}, StatusCode.ERROR),
    ]
    assert named(spans, "iverton.process").attributes["iverton.result"] == "retry"  # type: ignore[index]

    points = otel.points()
    assert points["iverton.requests"] == {
        (("iverton.answer", "accepted"), ("iverton.endpoint", "default")): 2,
        (("iverton.answer", "duplicate"), ("iverton.endpoint", "default")): 1,
        (("iverton.answer", "refused"), ("iverton.endpoint", "default")): 1,
        (("iverton.answer", "quarantined"), ("iverton.endpoint", "default")): 1,
    }
    assert points["iverton.ack.duration"] == points["iverton.requests"]  # one sample each
    endpoint = ("iverton.endpoint", "default")
    assert points["iverton.handler.runs"] == {
        (endpoint, ("iverton.handler", "crm"), ("iverton.handler.outcome", "ok")): 2,
        (endpoint, ("iverton.handler", "books"), ("iverton.handler.outcome", "failed")): 1,
    }
    assert points["iverton.inbox.events"] == {
        (endpoint, ("status", status)): n
        for status, n in {
            "pending": 0,
            "processing": 0,
            "done": 1,
            "unhandled": 0,
            "failed": 1,
            "dead": 0,
            "quarantined": 1,
        }.items()
    }
    assert points["iverton.inbox.oldest_due_age"] == {(endpoint,): 0.0}  # the retry is not due
    receiver.close()


def test_a_superseded_handler_run_is_its_own_outcome(otel: Otel) -> None:
    found = Router()
    found.add(lambda event: None, "deal.updated", name="sync", newest_only=True)
    receiver = Receiver(
        SECRET, router=found, store=MemoryStore(), runner="inline", telemetry=otel.telemetry
    )
    for event_id, created in (
        ("evt_new", "2026-12-01T10:00:00Z"),
        ("evt_old", "2026-12-01T09:00:00Z"),
    ):
        body = sample_body("deal.updated", id=event_id, created_at=created, data={"id": "d_1"})
        assert receiver.receive("POST", body, signed_headers(body)).status == 200
    outcomes = [
        span.attributes["iverton.handler.outcome"]  # type: ignore[index]
        for span in otel.take()
        if span.name == "iverton.handler"
    ]
    assert outcomes == ["ok", "superseded"]
    endpoint, handler = ("iverton.endpoint", "default"), ("iverton.handler", "sync")
    assert otel.points()["iverton.handler.runs"] == {
        (endpoint, handler, ("iverton.handler.outcome", "ok")): 1,
        (endpoint, handler, ("iverton.handler.outcome", "superseded")): 1,
    }


def test_processing_in_a_worker_thread_joins_the_request_trace(otel: Otel) -> None:
    runner = ThreadRunner(workers=1, poll_interval=60)
    receiver = Receiver(
        SECRET, router=router(), store=MemoryStore(), runner=runner, telemetry=otel.telemetry
    )
    body = sample_body("deal.won", id="evt_thread")
    try:
        assert receiver.receive("POST", body, signed_headers(body)).status == 200
        assert runner.join(10)
    finally:
        receiver.close()
    spans = otel.take()
    receive, process = named(spans, "iverton.receive"), named(spans, "iverton.process")
    assert process.parent is not None
    assert process.parent.span_id == receive.context.span_id
    assert process.context.trace_id == receive.context.trace_id
    assert threading.current_thread().name == "MainThread"


def test_without_opentelemetry_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n == "opentelemetry" or n.startswith("opentelemetry.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import fails
    telemetry = Telemetry()
    assert not telemetry.enabled
    receiver = Receiver(
        SECRET, router=router(), store=MemoryStore(), runner="inline", telemetry=telemetry
    )
    body = sample_body("deal.lost", id="evt_plain")
    assert receiver.receive("POST", body, signed_headers(body)).status == 200
    assert observe_inbox(receiver.processor) is False
    receiver.close()


def test_no_spans_are_made_until_an_sdk_is_set_up(otel: Otel) -> None:
    # The API's global provider is a stand-in until the app installs the SDK: every
    # span would be dropped, so none is made.
    from opentelemetry import trace

    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not Telemetry().tracing
    assert otel.telemetry.tracing


def test_async_processing_spans(otel: Otel) -> None:
    import asyncio

    receiver = Receiver(
        SECRET, router=router(), store=MemoryStore(), runner=NullRunner(), telemetry=otel.telemetry
    )
    body = sample_body("deal.lost", id="evt_async")
    assert receiver.receive("POST", body, signed_headers(body)).status == 200
    otel.take()
    assert asyncio.run(receiver.process_async("evt_async")).value == "retry"
    assert tree(otel.take()) == [
        ("iverton.handler", "iverton.process"),
        ("iverton.handler", "iverton.process"),
        ("iverton.process", None),
    ]
    receiver.close()


class NullRunner(BaseRunner):
    def submit(self, event_id: str) -> None:
        pass


def _run(script: str) -> str:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


_FOUND_WHEN_SET = """
import time
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from iverton_webhooks.telemetry import Telemetry

telemetry = Telemetry()
assert telemetry.switches() == (False, False), telemetry.switches()
reader = InMemoryMetricReader()
trace.set_tracer_provider(TracerProvider())
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
deadline = time.monotonic() + 10
while telemetry.switches() != (True, True) and time.monotonic() < deadline:
    time.sleep(0.05)
print(telemetry.switches())
telemetry.answered("default", "accepted", 0.002)
data = reader.get_metrics_data()
print(sorted(m.name for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics))
"""


def test_global_sdk_providers_set_up_after_the_receiver_are_found() -> None:
    # The app may install the SDK after building its receiver (Django settings first).
    lines = _run(_FOUND_WHEN_SET).splitlines()
    assert lines[0] == "(True, True)"
    assert lines[1] == "['iverton.ack.duration', 'iverton.requests']"


_STAND_INS = """
import time
from opentelemetry import metrics, trace
from iverton_webhooks.telemetry import Telemetry

trace.set_tracer_provider(trace.NoOpTracerProvider())
metrics.set_meter_provider(metrics.NoOpMeterProvider())
telemetry = Telemetry()
time.sleep(1.1)
print(telemetry.switches())
"""


def test_the_apis_no_op_providers_make_no_spans_nor_points() -> None:
    assert _run(_STAND_INS).strip() == "(False, False)"
