"""``iverton-webhooks demo``: a real receiver on 127.0.0.1, every sample posted over HTTP."""

from __future__ import annotations

import http.client
import json
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ._operations import event_line
from ._receiver import Receiver
from ._router import Router
from .events import EVENT_TYPES, Event
from .inbox.sqlite import SQLiteStore
from .runners import ThreadRunner
from .samples import sample_body
from .testing import deliver
from .wsgi import WebhookApp

SECRET = "whsec_demo_4f9c2a7e61d04b"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle(self) -> None:
        super().handle()
        # The app answers an oversized body 413 without reading it. Closing a socket
        # with unread data resets the connection, and the client, still sending, would
        # see a broken pipe instead of the 413: discard what is left first (bounded),
        # as production servers do.
        self.connection.settimeout(0.5)
        try:
            for _ in range(64):
                if not self.rfile.read1(64 * 1024):
                    break
        except OSError:
            pass


@dataclass
class _Case:
    label: str
    method: str
    body: bytes
    headers: dict[str, str]
    expected_status: int
    event_id: str | None = None
    status: int = 0
    answer: str = ""
    millis: float = 0.0


def _signed(
    label: str, body: bytes, event_id: str | None, expected: int = 200, secret: str = SECRET
) -> _Case:
    return _Case(label, "POST", body, deliver(body, secret).headers, expected, event_id)


def _demo_router(ran: dict[str, list[str]], lock: threading.Lock) -> Router:
    router = Router()

    def note(event: Event, name: str) -> None:
        with lock:
            ran[event.id].append(name)

    @router.on("*")
    def audit_log(event: Event) -> None:
        note(event, "audit_log")

    @router.on("contact.*")
    def sync_contact(event: Event) -> None:
        note(event, "sync_contact")

    @router.on("deal.won")
    def celebrate(event: Event) -> None:
        note(event, "celebrate")

    @router.on("email.bounced", "email.complained")
    async def suppress(event: Event) -> None:
        note(event, "suppress (async)")

    return router


def _cases() -> list[_Case]:
    cases = []
    for event_type in EVENT_TYPES:
        event_id = f"evt_demo_{event_type.replace('.', '_')}"
        cases.append(_signed(event_type, sample_body(event_type, id=event_id), event_id))
    first = cases[0]
    cases.append(_signed("duplicate of contact.created", first.body, None))
    forged = sample_body("deal.won", id="evt_demo_forged")
    cases.append(_signed("forged signature", forged, None, 401, "whsec_not_the_secret"))
    cases.append(_signed("oversized body (1 MiB + 1)", b"x" * (1024 * 1024 + 1), None, 413))
    # Signed but unreadable: kept aside as quarantined with a 200, so the sender never
    # counts it as a failed delivery (see the README's status table).
    cases.append(_signed("malformed body (not JSON)", b"{'id': 1,", None, 200))
    cases.append(_Case("GET instead of POST", "GET", b"", {}, 405))
    return cases


def run_demo() -> int:
    ran: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="iverton-demo-") as tmp:
        store = SQLiteStore(Path(tmp) / "webhooks.sqlite3")
        runner = ThreadRunner(workers=2)
        receiver = Receiver(SECRET, router=_demo_router(ran, lock), store=store, runner=runner)
        server = make_server(
            "127.0.0.1", 0, WebhookApp(receiver), server_class=_Server, handler_class=_QuietHandler
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        print(f"receiver listening on http://127.0.0.1:{port}/ (inbox: {store.path})\n")
        try:
            cases = _cases()
            for case in cases:
                _post(port, case)
            runner.join(timeout=10)
            ok = _report(cases, ran, lock)
            _show_inbox(store)
        finally:
            server.shutdown()
            server.server_close()
            receiver.close()
    print("\nall outcomes as expected" if ok else "\nSOME OUTCOMES WERE WRONG")
    return 0 if ok else 1


def _post(port: int, case: _Case) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    started = time.perf_counter()
    try:
        connection.request(case.method, "/", body=case.body or None, headers=case.headers)
        response = connection.getresponse()
        case.answer = json.loads(response.read()).get("status") or ""
        case.status = response.status
    except (OSError, http.client.HTTPException, ValueError) as exc:
        case.answer = f"error: {exc}"
    finally:
        case.millis = (time.perf_counter() - started) * 1000
        connection.close()


def _report(cases: list[_Case], ran: dict[str, list[str]], lock: threading.Lock) -> bool:
    print(f"{'request':32} {'HTTP':>4} {'ms':>6}  {'ok':3} handlers that ran")
    print("-" * 100)
    all_ok = True
    with lock:
        snapshot = {event_id: list(names) for event_id, names in ran.items()}
    for case in cases:
        handlers = snapshot.get(case.event_id, []) if case.event_id else []
        ok = case.status == case.expected_status and (case.event_id is None or bool(handlers))
        all_ok &= ok
        shown = ", ".join(handlers) if case.event_id else f"({case.answer or 'refused'})"
        verdict = "yes" if ok else "NO"
        print(f"{case.label:32} {case.status:>4} {case.millis:6.1f}  {verdict:3} {shown}")
    # The duplicate must not have run anything a second time.
    first = cases[0].event_id or ""
    if len(snapshot.get(first, [])) != 2:
        print(f"duplicate was dispatched again: {snapshot.get(first)}")
        all_ok = False
    return all_ok


def _show_inbox(store: SQLiteStore) -> None:
    events = store.list(limit=100)
    counts = Counter(event.status.value for event in events)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"\ninbox: {len(events)} events stored ({summary})")
    for event in events[:5]:
        print(f"  {event_line(event)}")
    if len(events) > 5:
        print(f"  ... and {len(events) - 5} more")
