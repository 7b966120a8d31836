"""Per request, in-process: our adapters against the bare framework, for Django, Flask and
Starlette. No socket: the WSGI/ASGI app is called directly.

    python -m benchmarks.apps                      # all frameworks, timings + instructions
    python -m benchmarks.apps --framework flask --no-ir
    python -m benchmarks.apps --quick              # smoke run

Apps compared for each framework, all with the same middleware and settings:

- ``floor``: answers 200 without reading the body (the framework's own cost);
- ``bare``: reads the raw body, checks the HMAC, ``json.loads`` it, answers JSON: what a
  careful user writes by hand (no storage, no dedupe: it promises less);
- ``peer``: the careful user's durable view (``benchmarks.peer``): verify, then one
  autocommitted ``INSERT ... ON CONFLICT DO NOTHING`` of (id, type, body) through one
  connection per thread (SQLite with our store's pragmas; Django: its own connection).
  The target: ours within 1.3x of its instructions per request. Under Starlette the
  peer makes its blocking write in Starlette's thread pool (``run_in_threadpool``), as
  ours does; ``peer, inline`` writes on the event loop, blocking it, for reference;
- ``ours``: our adapter with the default store (SQLite: Django's own database for
  Django) and the default runner. Each timed batch ends when the runner has processed
  every event of the batch, so processing is included, not pushed into the next round;
- ``ours, ack only``: the same adapter and store with a runner that defers processing,
  which is what the sender waits for;
- ``ours, memory store, ack only`` (Flask, Starlette; Django's store is its database):
  our adapter minus the durable write: what the adapter and the core's request path
  cost on top of the framework.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

from iverton_webhooks import MemoryStore, Receiver, Router, SQLiteStore
from iverton_webhooks.inbox.base import Store
from iverton_webhooks.runners import AsyncioRunner

from .common import (
    SECRET,
    Case,
    Delivery,
    Pool,
    alternate,
    common_args,
    ir_per_op,
    machine,
    run_ir_case,
    table,
)
from .core import NullRunner
from .peer import CREATE, INSERT_FORMAT, SQLitePeer, verified

PATH = "/webhooks/iverton/"
FRAMEWORKS = ("django", "flask", "starlette")
_KEY = SECRET.encode()


def checked_payload(body: bytes, signature: str | None) -> Any:
    """The bare apps' verification: HMAC of the raw bytes, constant-time, then JSON."""
    expected = "sha256=" + hmac.digest(_KEY, body, "sha256").hex()
    if signature is None or not hmac.compare_digest(expected, signature):
        return None
    return json.loads(body)


# Driving apps in-process ----------------------------------------------------------


def environ_for(d: Delivery, path: str) -> dict[str, Any]:
    """A WSGI environ as gunicorn would build it for the sender's POST."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(d.body)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "Iverton-Webhooks/1.0",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(d.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in d.headers.items():
        if name.lower() != "content-type":
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def scope_for(d: Delivery, path: str) -> dict[str, Any]:
    """An ASGI HTTP scope as uvicorn would build it."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"Iverton-Webhooks/1.0")]
    headers += [(k.lower().encode(), v.encode()) for k, v in d.headers.items()]
    headers.append((b"content-length", str(len(d.body)).encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


class WsgiCase(Case):
    """One WSGI app answering distinct deliveries; ``settle`` (if any) runs inside the
    timed batch, after the requests: it waits for the batch's background processing."""

    def __init__(
        self,
        name: str,
        app: Callable[..., Iterable[bytes]],
        pool: Pool,
        path: str,
        settle: Callable[[], object] | None = None,
    ) -> None:
        self.name, self.app, self.pool, self.path, self.settle = name, app, pool, path, settle
        self.batch: list[dict[str, Any]] = []
        self.statuses: list[str] = []

    def prepare(self, n: int) -> None:
        self.batch = [environ_for(d, self.path) for d in self.pool.take(self.name, n)]

    def run(self, n: int) -> None:
        app, statuses = self.app, self.statuses

        def start_response(status: str, headers: object, exc_info: object = None) -> None:
            statuses.append(status)

        for environ in self.batch:
            chunks = app(environ, start_response)
            b"".join(chunks)
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if self.settle is not None:
            self.settle()

    def check(self) -> None:
        self.prepare(2)
        self.run(2)
        if not all(s.startswith("200") for s in self.statuses):
            raise AssertionError(f"{self.name}: answered {self.statuses}")
        self.statuses.clear()


class AsgiCase(Case):
    """One ASGI app answering distinct deliveries on a private event loop."""

    def __init__(
        self,
        name: str,
        app: Callable[..., Any],
        pool: Pool,
        path: str,
        loop: asyncio.AbstractEventLoop,
        settle: Callable[[], Any] | None = None,
    ) -> None:
        self.name, self.app, self.pool, self.path, self.loop = name, app, pool, path, loop
        self.settle = settle
        self.batch: list[tuple[dict[str, Any], bytes]] = []
        self.statuses: list[int] = []

    def prepare(self, n: int) -> None:
        self.batch = [(scope_for(d, self.path), d.body) for d in self.pool.take(self.name, n)]

    async def _run_batch(self) -> None:
        app, statuses = self.app, self.statuses
        for scope, body in self.batch:
            sent = False

            async def receive(body: bytes = body) -> dict[str, Any]:
                nonlocal sent
                if sent:
                    await asyncio.sleep(3600)  # never: the apps stop reading after the body
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app(scope, receive, send)
        if self.settle is not None:
            await self.settle()

    def run(self, n: int) -> None:
        self.loop.run_until_complete(self._run_batch())

    def check(self) -> None:
        self.prepare(2)
        self.run(2)
        if self.statuses != [200, 200]:
            raise AssertionError(f"{self.name}: answered {self.statuses}")
        self.statuses.clear()


def join_threads(receiver: Receiver) -> Callable[[], object]:
    """Waits until a thread runner (or a wrapper with ``join``) has processed everything
    handed to it."""
    join = getattr(receiver.runner, "join", None)
    return (lambda: join(60)) if callable(join) else (lambda: None)


def drain_tasks(runner: AsyncioRunner) -> Callable[[], Any]:
    """Waits until an asyncio runner's processing tasks (of this batch) are finished."""

    async def settle() -> None:
        tasks = set(runner._tasks)  # only way to await the batch's work without stopping it
        if tasks:
            await asyncio.wait(tasks)

    return settle


# The frameworks -------------------------------------------------------------------


def flask_cases(pool: Pool, workdir: str) -> dict[str, Callable[[], Case]]:
    import flask

    def floor_app() -> Case:
        app = flask.Flask("floor")

        @app.post(PATH)
        def floor() -> tuple[str, int]:
            return "", 200

        return WsgiCase("flask floor", app, pool, PATH)

    def bare_app() -> Case:
        app = flask.Flask("bare")

        @app.post(PATH)
        def bare() -> tuple[Any, int]:
            request = flask.request
            payload = checked_payload(
                request.get_data(), request.headers.get("X-Iverton-Signature")
            )
            if payload is None:
                return {"error": "invalid signature"}, 401
            return {"status": "accepted"}, 200

        return WsgiCase("flask bare", app, pool, PATH)

    def peer_app() -> Case:
        app = flask.Flask("peer")
        peer = SQLitePeer(os.path.join(workdir, "flask-peer.sqlite3"))

        @app.post(PATH)
        def record() -> tuple[str, int]:
            request = flask.request
            status = peer.record(request.get_data(), request.headers.get("X-Iverton-Signature"))
            return "", status

        return WsgiCase("flask peer", app, pool, PATH)

    factories = {"flask floor": floor_app, "flask bare": bare_app, "flask peer": peer_app}
    try:
        ours = importlib.import_module("iverton_webhooks.contrib.flask")
    except ImportError as exc:
        print(f"  flask: adapter not available ({exc})", file=sys.stderr)
        return factories

    def ours_app(name: str, blueprint: Any, receiver: Receiver | None) -> Case:
        app = flask.Flask("ours", instance_path=workdir)
        app.register_blueprint(blueprint, url_prefix=PATH)
        if receiver is not None:  # ack only: nothing to wait for
            return WsgiCase(name, app, pool, PATH)
        built = ours.state_of(app).endpoint().receiver
        return WsgiCase(name, app, pool, PATH, join_threads(built))

    def ack_only(name: str, store: Store) -> Case:
        receiver = Receiver(SECRET, router=_noop(), store=store, runner=NullRunner())
        return ours_app(name, ours.webhooks_blueprint(receiver=receiver), receiver)

    # The blueprint's defaults: a SQLite file in the instance folder, the thread runner,
    # handlers inside the app context.
    factories["flask ours"] = lambda: ours_app(
        "flask ours", ours.webhooks_blueprint(secret=SECRET, router=_noop()), None
    )
    factories["flask ours, ack only"] = lambda: ack_only(
        "flask ours, ack only", SQLiteStore(os.path.join(workdir, "flask-ack.sqlite3"))
    )
    factories["flask ours, memory, ack only"] = lambda: ack_only(
        "flask ours, memory, ack only", MemoryStore()
    )
    return factories


def starlette_cases(
    pool: Pool, workdir: str, loop: asyncio.AbstractEventLoop
) -> dict[str, Callable[[], Case]]:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def floor(request: Request) -> Response:
        return Response(b"", 200)

    async def bare(request: Request) -> Response:
        payload = checked_payload(await request.body(), request.headers.get("x-iverton-signature"))
        if payload is None:
            return JSONResponse({"error": "invalid signature"}, 401)
        return JSONResponse({"status": "accepted"})

    peer_store: list[SQLitePeer] = []

    def peer_view(inline: bool) -> Callable[[Request], Awaitable[Response]]:
        async def peer(request: Request) -> Response:
            if not peer_store:
                peer_store.append(SQLitePeer(os.path.join(workdir, "starlette-peer.sqlite3")))
            body = await request.body()
            signature = request.headers.get("x-iverton-signature")
            if inline:  # blocks the event loop for the write: not what a careful user does
                return Response(b"", peer_store[0].record(body, signature))
            # A blocking call from an async view goes to Starlette's thread pool, as its
            # docs say and as ours does with the store's write.
            status = await run_in_threadpool(peer_store[0].record, body, signature)
            return Response(b"", status)

        return peer

    def plain(name: str, endpoint: Callable[..., Any]) -> Case:
        app = Starlette(routes=[Route(PATH, endpoint, methods=["POST"])])
        return AsgiCase(name, app, pool, PATH, loop)

    factories: dict[str, Callable[[], Case]] = {
        "starlette floor": lambda: plain("starlette floor", floor),
        "starlette bare": lambda: plain("starlette bare", bare),
        "starlette peer": lambda: plain("starlette peer", peer_view(inline=False)),
        "starlette peer, inline": lambda: plain("starlette peer, inline", peer_view(inline=True)),
    }
    try:
        from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware
    except ImportError as exc:
        print(f"  starlette: adapter not available ({exc})", file=sys.stderr)
        return factories

    def ours_app(name: str, receiver: Receiver, settle: bool) -> Case:
        app = Starlette(routes=[Route("/other", floor)])
        app.add_middleware(cast(Any, IvertonWebhookMiddleware), path=PATH, receiver=receiver)
        runner = receiver.runner
        drain = drain_tasks(runner) if settle and isinstance(runner, AsyncioRunner) else None
        return AsgiCase(name, app, pool, PATH, loop, drain)

    db = os.path.join(workdir, "starlette.sqlite3")
    # The middleware's own default: runner="asyncio" with the default (SQLite) store.
    factories["starlette ours"] = lambda: ours_app(
        "starlette ours",
        Receiver(SECRET, router=_noop(), store=f"sqlite:///{db}", runner="asyncio"),
        True,
    )
    factories["starlette ours, ack only"] = lambda: ours_app(
        "starlette ours, ack only",
        Receiver(SECRET, router=_noop(), store=SQLiteStore(db + "2"), runner=NullRunner()),
        False,
    )
    factories["starlette ours, memory, ack only"] = lambda: ours_app(
        "starlette ours, memory, ack only",
        Receiver(SECRET, router=_noop(), store=MemoryStore(), runner=NullRunner()),
        False,
    )
    return factories


def django_cases(pool: Pool, workdir: str) -> dict[str, Callable[[], Case]]:
    import django
    from django.conf import settings

    # The adapter needs configured settings to import, so only its presence is known here.
    ours_ok = importlib.util.find_spec("iverton_webhooks.contrib.django.apps") is not None
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="benchmark-only-not-secret",
            ALLOWED_HOSTS=["*"],
            ROOT_URLCONF="benchmarks_django_urls",
            # The middleware `django-admin startproject` writes: what a real project runs.
            MIDDLEWARE=[
                "django.middleware.security.SecurityMiddleware",
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
                "django.middleware.clickjacking.XFrameOptionsMiddleware",
            ],
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
                "django.contrib.messages",
                *(["iverton_webhooks.contrib.django"] if ours_ok else []),
            ],
            # SQLite as startproject writes it, plus what a production project sets:
            # persistent connections (CONN_MAX_AGE), WAL and IMMEDIATE transactions for
            # concurrent writers, and our SQLiteStore's durability (synchronous=NORMAL).
            # With Django's bare defaults (a new connection per request, rollback
            # journal) an ack measured 3-9 ms here, mostly opening and closing the
            # database, and worker threads hit "database is locked": a project setting,
            # not the library's cost.
            DATABASES={
                "default": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": os.path.join(workdir, "django.sqlite3"),
                    "CONN_MAX_AGE": 600,
                    "OPTIONS": {
                        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
                        "transaction_mode": "IMMEDIATE",
                        "timeout": 5,
                    },
                }
            },
            IVERTON_WEBHOOKS={"SECRET": SECRET, "ROUTER": _noop()},
            USE_TZ=True,
            LOGGING_CONFIG=None,
        )
        django.setup()
    from django.http import HttpRequest, HttpResponse, JsonResponse
    from django.urls import include, path
    from django.views.decorators.csrf import csrf_exempt

    @csrf_exempt
    def floor(request: HttpRequest) -> HttpResponse:
        return HttpResponse(b"", status=200)

    @csrf_exempt
    def bare(request: HttpRequest) -> HttpResponse:
        payload = checked_payload(request.body, request.headers.get("X-Iverton-Signature"))
        if payload is None:
            return JsonResponse({"error": "invalid signature"}, status=401)
        return JsonResponse({"status": "accepted"})

    from django.db import connection

    @csrf_exempt
    def peer(request: HttpRequest) -> HttpResponse:
        payload = verified(request.body, request.headers.get("X-Iverton-Signature"))
        if payload is None:
            return HttpResponse(b"", status=401)
        with connection.cursor() as cursor:  # autocommit: Django's default outside atomic()
            cursor.execute(INSERT_FORMAT, (payload["id"], payload["type"], request.body))
        return HttpResponse(b"", status=200)

    with connection.cursor() as cursor:
        cursor.execute(CREATE)

    # One project, several URLs: every app shares the same middleware and settings.
    patterns: list[Any] = [path("floor/", floor), path("bare/", bare), path("peer/", peer)]
    if ours_ok:
        try:
            views = importlib.import_module("iverton_webhooks.contrib.django.views")
            patterns += [
                path(PATH.lstrip("/"), include("iverton_webhooks.contrib.django.urls")),
                # Its own endpoint: the default endpoint's thread runner (started with Django)
                # must not process these events inside the measured requests.
                path(
                    "ours-ack-only/",
                    views.webhook_view(endpoint="ack-only", runner=NullRunner()),
                ),
            ]
            from django.core.management import call_command

            call_command("migrate", verbosity=0, interactive=False)
        except Exception as exc:  # an adapter half-written on disk may fail in any way
            ours_ok = False
            print(f"  django: adapter not available ({exc})", file=sys.stderr)
    else:
        print("  django: adapter not available", file=sys.stderr)
    urls = types.ModuleType("benchmarks_django_urls")
    urls.__dict__["urlpatterns"] = patterns
    sys.modules[urls.__name__] = urls
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()
    factories: dict[str, Callable[[], Case]] = {
        name: (lambda name=name: WsgiCase(name, handler, pool, path_for(name)))  # type: ignore[misc]
        for name in ("django floor", "django bare", "django peer")
    }
    if ours_ok:
        # The project's own database as the store, the thread runner: the defaults.
        endpoint = importlib.import_module("iverton_webhooks.contrib.django.endpoint")
        factories["django ours"] = lambda: WsgiCase(
            "django ours", handler, pool, PATH, join_threads(endpoint.get_receiver())
        )
        factories["django ours, ack only"] = lambda: WsgiCase(
            "django ours, ack only", handler, pool, path_for("django ours, ack only")
        )
    return factories


def path_for(case: str) -> str:
    """The URL path a case's app answers on (Django serves all three in one project)."""
    if case == "django floor":
        return "/floor/"
    if case == "django bare":
        return "/bare/"
    if case == "django peer":
        return "/peer/"
    if case == "django ours, ack only":
        return "/ours-ack-only/"
    return PATH


def _noop() -> Router:
    router = Router()

    @router.on("*")
    def noop(event: object) -> None:
        return None

    return router


def build_cases(framework: str, workdir: str, only: str | None = None) -> list[Case]:
    pool = Pool()
    if framework == "django":
        factories = django_cases(pool, workdir)
    elif framework == "flask":
        factories = flask_cases(pool, workdir)
    else:
        factories = starlette_cases(pool, workdir, asyncio.new_event_loop())
    if only is not None:
        return [factories[only]()] if only in factories else []
    return [factory() for factory in factories.values()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(__doc__ or "")
    parser.add_argument("--framework", choices=FRAMEWORKS, action="append")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="iverton-apps-")
    try:
        if args.ir_case:
            framework = args.ir_case.split()[0]
            run_ir_case(
                build_cases(framework, workdir, args.ir_case),
                args.ir_case,
                args.ir_ops,
                args.ir_most,
            )
            return 0
        rounds = 3 if args.quick else min(args.rounds, 150)
        print(f"# benchmarks.apps: {machine()}")
        print(f"# in-process, {rounds} alternating rounds per framework\n")
        for framework in args.framework or FRAMEWORKS:
            try:
                cases = build_cases(framework, workdir)
                cases = cases[:3] + [c for c in cases[3:] if args.only in c.name]
            except ImportError as exc:
                print(f"## {framework}: not installed ({exc})\n")
                continue
            names = [c.name for c in cases]
            floor, bare, peer = names[0], names[1], names[2]
            results = alternate(
                cases,
                references=[floor, bare, peer],
                rounds=rounds,
                batch_s=0.001 if args.quick else 0.005,
            )
            if not args.no_ir and not args.quick:
                for name in names:
                    print(f"  counting instructions: {name}", file=sys.stderr)
                    results[name].ir_per_op = ir_per_op("benchmarks.apps", name, (200, 1200))
            peer_ir = results[peer].ir_per_op
            rows = [
                (
                    m.name,
                    m.median_us,
                    m.ratio(floor),
                    m.ratio(bare),
                    m.ratio(peer),
                    None if m.ir_per_op is None else round(m.ir_per_op),
                    None if m.ir_per_op is None or not peer_ir else m.ir_per_op / peer_ir,
                )
                for m in results.values()
            ]
            print(f"## {framework}\n")
            print(
                table(
                    (
                        "app",
                        "median µs/req",
                        "x floor",
                        "x bare",
                        "x peer",
                        "instr/req",
                        "instr x peer",
                    ),
                    rows,
                )
            )
            if len(names) == 3:
                print(f"\n{framework}: our adapter not available, only floor, bare, peer measured")
            print()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
