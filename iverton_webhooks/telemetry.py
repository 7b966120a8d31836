"""OpenTelemetry traces and metrics, when ``opentelemetry-api`` is installed
(``pip install 'iverton-webhooks[otel]'``); without it every call here does nothing.

The spans, instruments and their attributes are listed in docs/monitoring.md. They go
to the global providers unless a `Telemetry` built with explicit ones is passed to
``Receiver(telemetry=...)`` / ``Processor(telemetry=...)``.
"""

from __future__ import annotations

import math
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from . import __version__
from ._health import Health


class Observed(Protocol):
    """What `observe_inbox` reads: a `Processor`."""

    @property
    def endpoint(self) -> str: ...

    def health(self) -> Health: ...


__all__ = ["Telemetry", "default_telemetry", "observe_inbox"]

NAME = "iverton_webhooks"
#: How many acknowledged events' trace contexts are kept for their processing.
CONTEXTS_KEPT = 10_000

# Attribute names.
ENDPOINT = "iverton.endpoint"
EVENT_ID = "iverton.event.id"
EVENT_TYPE = "iverton.event.type"
ANSWER = "iverton.answer"
RESULT = "iverton.result"
HANDLER = "iverton.handler"
OUTCOME = "iverton.handler.outcome"
ATTEMPT = "iverton.attempt"
HTTP_STATUS = "http.response.status_code"


class _NoSpan:
    """Stands in for a span when OpenTelemetry is absent."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def is_recording(self) -> bool:
        return False


NO_SPAN = _NoSpan()


class Telemetry:
    """The library's tracer and instruments (no-ops without ``opentelemetry-api``).

    ``tracer_provider`` / ``meter_provider``: default the global ones.
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._contexts: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.meter_provider = meter_provider
        # Whether an SDK takes the spans / the metric points. Given providers are taken
        # as real; the global ones are looked up until one appears (OpenTelemetry lets
        # each be set only once, so a True stays True).
        self._tracing = self._metering = False
        self._look_again_at = math.inf  # without the API there is nothing to look for
        try:
            from opentelemetry import metrics, trace
        except ImportError:
            self.enabled = False
            return
        self.enabled = True
        self._trace = trace
        self._metrics = metrics
        self._tracing = tracer_provider is not None
        self._metering = meter_provider is not None
        self._look_again_at = 0.0
        self.tracer = trace.get_tracer(NAME, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(NAME, __version__, meter_provider=meter_provider)
        self.requests = meter.create_counter(
            "iverton.requests", unit="{request}", description="Webhook requests, by answer"
        )
        self.handler_runs = meter.create_counter(
            "iverton.handler.runs", unit="{run}", description="Handler runs, by outcome"
        )
        self.ack_duration = _histogram(meter, "iverton.ack.duration", "From request to answer")

    # Receiving -------------------------------------------------------------------

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """A span that is current inside the block (a stand-in without OpenTelemetry)."""
        if not self.tracing:
            yield NO_SPAN
            return
        with self.tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span

    @property
    def tracing(self) -> bool:
        """False while no tracer provider is set up: spans would be dropped anyway, so
        none are made."""
        return self.switches()[0]

    @property
    def metering(self) -> bool:
        """False while no SDK meter provider is set up: the instruments would drop every
        point anyway."""
        return self.switches()[1]

    def switches(self) -> tuple[bool, bool]:
        """``(tracing, metering)``. Asked on every request, so the global providers are
        looked up at most once a second (each lookup reads the environment), and never
        again once both are found."""
        now = time.monotonic()
        if now < self._look_again_at:
            return self._tracing, self._metering
        self._look_again_at = now + 1.0
        if not self._tracing:
            # The API's stand-ins, public in opentelemetry.trace: a proxy that awaits
            # the real provider, and a provider that makes non-recording spans.
            stand_ins = (self._trace.ProxyTracerProvider, self._trace.NoOpTracerProvider)
            self._tracing = not isinstance(self._trace.get_tracer_provider(), stand_ins)
        if not self._metering:
            # The metrics API exports no class for its stand-in proxy, so this looks for
            # the SDK's provider (another one can be passed explicitly), and only once the
            # SDK is imported: none exists before, and importing it would slow every start.
            sdk = sys.modules.get("opentelemetry.sdk.metrics")
            provider = self._metrics.get_meter_provider()
            self._metering = sdk is not None and isinstance(provider, sdk.MeterProvider)
        if self._tracing and self._metering:
            self._look_again_at = math.inf
        return self._tracing, self._metering

    def answered(self, endpoint: str, answer: str, seconds: float) -> None:
        if self.metering:
            attributes = {ENDPOINT: endpoint, ANSWER: answer}
            self.requests.add(1, attributes)
            self.ack_duration.record(seconds, attributes)

    def remember(self, endpoint: str, event_id: str) -> None:
        """Keep the current trace context for the processing of this event, so its
        ``iverton.process`` span joins the trace of the request that recorded it."""
        if not self.tracing:
            return
        context = self._trace.get_current_span().get_span_context()
        if not context.is_valid:
            return
        with self._lock:
            self._contexts[(endpoint, event_id)] = context
            while len(self._contexts) > CONTEXTS_KEPT:
                self._contexts.popitem(last=False)

    # Processing ------------------------------------------------------------------

    @contextmanager
    def processing(
        self, endpoint: str, event_id: str, event_type: str, attempt: int
    ) -> Iterator[Any]:
        """The ``iverton.process`` span, a child of the acknowledging request's span
        when this process remembered it, else of whatever span is current."""
        if not self.tracing:
            yield NO_SPAN
            return
        with self._lock:
            remembered = self._contexts.pop((endpoint, event_id), None)
        current = self._trace.get_current_span().get_span_context()
        parent = None
        if remembered is not None and not current.is_valid:
            parent = self._trace.set_span_in_context(self._trace.NonRecordingSpan(remembered))
        attributes: dict[str, Any] = {
            ENDPOINT: endpoint,
            EVENT_ID: event_id,
            EVENT_TYPE: event_type,
            ATTEMPT: attempt,
        }
        with self.tracer.start_as_current_span(
            "iverton.process", context=parent, attributes=attributes
        ) as span:
            yield span

    def handler(self, name: str) -> AbstractContextManager[Any]:
        """The ``iverton.handler`` span around one handler run."""
        return self.span("iverton.handler", {HANDLER: name})

    def ran(
        self,
        span: Any,
        endpoint: str,
        handler: str,
        error: BaseException | None,
        *,
        superseded: bool = False,
    ) -> None:
        """Record one handler run: its outcome (``ok``, ``failed``, or ``superseded`` for a
        newest-only handler not given an older event) on ``span`` and in
        ``iverton.handler.runs``."""
        outcome = "superseded" if superseded else "ok" if error is None else "failed"
        if self.metering:
            self.handler_runs.add(1, {ENDPOINT: endpoint, HANDLER: handler, OUTCOME: outcome})
        if span is not None and span.is_recording():
            span.set_attribute(OUTCOME, outcome)
            if error is not None:
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(error)))


#: Seconds: an ack takes milliseconds, and the sender gives up at 5 s.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _histogram(meter: Any, name: str, description: str) -> Any:
    try:
        return meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=ACK_BUCKETS
        )
    except TypeError:  # opentelemetry-api before 1.23: the SDK's default buckets
        return meter.create_histogram(name, unit="s", description=description)


_default: Telemetry | None = None


def default_telemetry() -> Telemetry:
    """The shared instance that reports to the global providers."""
    global _default
    if _default is None:
        _default = Telemetry()
    return _default


_observed: list[tuple[Any, weakref.WeakSet[Observed]]] = []
_observed_lock = threading.Lock()


def observe_inbox(processor: Observed, meter_provider: Any = None) -> bool:
    """Publish the gauges ``iverton.inbox.events`` (by ``status``) and
    ``iverton.inbox.oldest_due_age`` (seconds; 0 when nothing is due) for
    ``processor``'s endpoint, read from its store at each collection. Call once per
    processor, e.g. ``observe_inbox(receiver.processor)``; the processor is held weakly.
    Returns False without OpenTelemetry."""
    try:
        from opentelemetry import metrics
    except ImportError:
        return False
    with _observed_lock:
        for provider, watched in _observed:
            if provider is meter_provider:
                watched.add(processor)
                return True
        watched = weakref.WeakSet([processor])
        _observed.append((meter_provider, watched))
    # One pair of gauges per meter provider, reporting every processor observed with it.
    meter = metrics.get_meter(NAME, __version__, meter_provider=meter_provider)

    def events(_options: Any) -> Iterable[Any]:
        return [
            metrics.Observation(n, {ENDPOINT: health.endpoint, "status": status.value})
            for health in _healths(watched)
            for status, n in health.every_status.items()
        ]

    def oldest(_options: Any) -> Iterable[Any]:
        return [
            metrics.Observation(health.oldest_due_age or 0.0, {ENDPOINT: health.endpoint})
            for health in _healths(watched)
        ]

    meter.create_observable_gauge(
        "iverton.inbox.events", [events], unit="{event}", description="Events by status"
    )
    meter.create_observable_gauge(
        "iverton.inbox.oldest_due_age",
        [oldest],
        unit="s",
        description="How long the oldest due event has waited for a worker",
    )
    return True


def _healths(watched: weakref.WeakSet[Observed]) -> list[Health]:
    found = []
    for processor in list(watched):
        try:
            found.append(processor.health())
        except Exception:  # a store down: no point this time, the next scrape retries
            continue
    return found
