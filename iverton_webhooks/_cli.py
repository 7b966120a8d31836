"""The ``iverton-webhooks`` command: demo, sign, send-test, and the inbox operations
(events, stats, replay, worker, prune, endpoints) shared with ``flask iverton`` and the
Django management commands (see `iverton_webhooks._operations`).

``--app MODULE`` (or ``MODULE:NAME``, or ``MODULE:FACTORY()``) imports your code, from the
current directory as ``flask`` and ``celery`` do, and finds its receivers: a
``Receiver`` or ``Processor``, a Flask app (extension or blueprint; or its
``create_app()``), a Starlette/FastAPI app with the middleware, a route or the dependency,
or a Django project (``--app mysite.settings`` or ``mysite.wsgi``). The command runs with
that receiver's store, router, retry policy, lease and handler timeout. A module that only
registers handlers with ``@on(...)`` is run with the default router over ``--store`` (or
``$IVERTON_WEBHOOK_STORE``); without either, the command refuses rather than create an
inbox the app does not use. Nothing in the app starts processing by itself here: the
worker processes in the foreground, the other commands claim nothing.

Exit codes: 0 done (or nothing to do), 1 some of it not done (or stats past a
threshold, or send-test refused), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.metadata
import logging
import os
import re
import sys
from collections.abc import Sequence
from contextlib import nullcontext

from . import _operations as ops
from ._errors import WebhookError
from ._finders import LOOKED_FOR, processors_of
from ._operations import OperationError
from ._placement import our_command
from ._processor import Processor
from ._router import default_router
from ._signature import sign
from ._text import printable
from .inbox import missing_inbox, open_store
from .inbox.base import DEFAULT_ENDPOINT

STORE_ENV = "IVERTON_WEBHOOK_STORE"
DEFAULT_STORE = "sqlite:///webhooks.sqlite3"
NO_HANDLERS_HINT = "pass --app MODULE"
_out = functools.partial(print, flush=True)


class PrintableFormatter(logging.Formatter):
    """Log lines with control characters escaped (a signed id holding ``\\r\\n`` must not
    forge a second line, nor an escape sequence reach the terminal)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter("%(message)s"))
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, handlers=[handler], force=True
    )
    # While one of the inbox commands runs, the app it loads starts nothing by itself.
    inbox = getattr(args, "inbox", None)
    try:
        with our_command(f"iverton-webhooks {inbox}") if inbox else nullcontext():
            return int(args.command(args))
    except WebhookError as error:
        print(f"error: {printable(error)}", file=sys.stderr)
        return ops.exit_code(error)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iverton-webhooks",
        # The docstring as a terminal shows it: code spans without their backticks.
        description=re.sub(r"``?([^`]+)``?", r"\1", __doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {importlib.metadata.version('iverton-webhooks')}",
        help="show the installed version and exit",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="post every sample event to a local receiver")
    demo.add_argument("-v", "--verbose", action="store_true", help="show the library's log")
    demo.set_defaults(command=_demo)

    sign_cmd = commands.add_parser("sign", help="print the X-Iverton-Signature for a body")
    sign_cmd.add_argument("file", nargs="?", help="body file (default: stdin)")
    _secret_option(sign_cmd)
    sign_cmd.set_defaults(command=_sign)

    for name, spec in ops.COMMANDS.items():
        command = commands.add_parser(name, help=spec.help)
        command.set_defaults(command=_operate, inbox=name)
        _store_options(command)
        command.add_argument(
            "--endpoint",
            default=None,
            help=f"default: {DEFAULT_ENDPOINT!r} (or the --app receiver's own; or an endpoint "
            "registered in its store)",
        )
        spec.add_arguments(command)

    registry = commands.add_parser("endpoints", help=ops.ENDPOINTS.help)
    registry.set_defaults(command=_endpoints, inbox="endpoints")
    ops.add_endpoints_arguments(registry, _store_options)

    send = commands.add_parser("send-test", help=ops.SEND_TEST.help)
    ops.SEND_TEST.add_arguments(send)
    send.add_argument("--url", required=True, help="the webhook URL, as the sender is given it")
    _secret_option(send)
    send.set_defaults(command=_send_test)
    return parser


def _secret_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--secret",
        default=os.environ.get("IVERTON_WEBHOOK_SECRET"),
        help="the signing secret (default: env IVERTON_WEBHOOK_SECRET)",
    )


def _store_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--store",
        default=None,
        help=f"store URL (default: env {STORE_ENV}, else {DEFAULT_STORE}; "
        "not with an --app that builds a Receiver)",
    )
    command.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="MODULE[:NAME]",
        help="your app or module: its receivers (a Receiver, a Flask, Starlette or FastAPI "
        "app, a Django settings module), or handlers registered with @on (repeatable)",
    )


# The inbox operations: find the user's processor, hand over -------------------------


def _operate(args: argparse.Namespace) -> int:
    worker = args.inbox == "worker"
    if worker and not args.app and not default_router.has_handlers():
        # Refused before any inbox is opened (opening one creates it).
        raise OperationError(f"no handlers: {NO_HANDLERS_HINT}")
    found = _app_processors(args)
    if found:
        processor = _pick(found, args.endpoint)
    else:
        # A worker may start before the web app has created the inbox: open it even if new.
        store = open_store(_store_url(args, read=not worker))
        processor = Processor(store, default_router, endpoint=args.endpoint or DEFAULT_ENDPOINT)
    try:
        return ops.run(args.inbox, processor, _out, vars(args), no_handlers_hint=NO_HANDLERS_HINT)
    finally:
        processor.close()
        processor.store.close()


def _store_url(args: argparse.Namespace, *, read: bool) -> str:
    """The store URL when --app found no receiver: --store, else the environment's,
    else the default; ``read``: refuse an inbox that does not exist."""
    given = args.store or os.environ.get(STORE_ENV)
    if args.app and not given:
        raise OperationError(
            f"--app {', '.join(args.app)}: found no webhook receiver; looked for "
            f"{'; '.join(LOOKED_FOR)}. To run its @on(...) handlers over an inbox of your "
            f"choosing, pass --store URL (or set {STORE_ENV})"
        )
    url = given or DEFAULT_STORE
    if read and (reason := missing_inbox(url)):
        raise OperationError(reason)
    return url


def _app_processors(args: argparse.Namespace) -> list[Processor]:
    """The processors of the receivers the --app modules hold (the current directory
    first on the path): each ``MODULE``, ``MODULE:NAME`` or ``MODULE:FACTORY()``."""
    if not args.app:
        return []
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    found: dict[int, Processor] = {}
    for spec in args.app:
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise OperationError(f"--app {spec}: cannot import {module_name}: {error}") from None
        target: object = module
        if attribute:
            name = attribute.removesuffix("()")
            try:
                target = getattr(module, name)
            except AttributeError:
                raise OperationError(f"--app {spec}: {module_name} has no {name}") from None
            if attribute.endswith("()"):
                if not callable(target):
                    raise OperationError(f"--app {spec}: {name} is not callable")
                target = target()
        processors = processors_of(target)
        if attribute and not processors:
            raise OperationError(
                f"--app {spec}: found no webhook receiver; looked for {'; '.join(LOOKED_FOR)}"
            )
        for processor in processors:
            found.setdefault(id(processor), processor)
    if found and args.store is not None:
        raise OperationError(
            f"--app {', '.join(args.app)} builds a receiver with its own store: drop --store"
        )
    return list(found.values())


def _pick(found: list[Processor], endpoint: str | None) -> Processor:
    if endpoint is None and len(found) == 1:
        return found[0]
    wanted = endpoint or DEFAULT_ENDPOINT
    matching = [p for p in found if p.endpoint == wanted]
    if len(matching) == 1:
        return matching[0]
    if endpoint is not None and not matching:
        registered = ops.registered_processor(found, endpoint)
        if registered is not None:
            return registered
    names = ", ".join(sorted(repr(p.endpoint) for p in found))
    raise OperationError(f"--app has receivers for endpoints {names}: pass --endpoint NAME")


def _endpoints(args: argparse.Namespace) -> int:
    found = _app_processors(args)
    serving: bool | None = None
    if found:
        store, serving = ops.registry_of(found)
    else:
        # An endpoint may be added before the web app has first opened the inbox.
        store = open_store(_store_url(args, read=args.action != "add"))
    try:
        return ops.endpoints(store, _out, args.action, vars(args), serving=serving)
    finally:
        store.close()


# The other commands --------------------------------------------------------------------


def _need_secret(secret: str | None) -> str:
    if not secret:
        raise OperationError("give --secret or set IVERTON_WEBHOOK_SECRET")
    return secret


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    # The table is the point; the per-event log lines would bury it.
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    return run_demo()


def _sign(args: argparse.Namespace) -> int:
    secret = _need_secret(args.secret)
    if args.file:
        try:
            with open(args.file, "rb") as handle:
                body = handle.read()
        except OSError as error:
            raise OperationError(f"cannot read {args.file}: {error.strerror or error}") from None
    else:
        body = sys.stdin.buffer.read()
    print(sign(body, secret))
    return ops.OK


def _send_test(args: argparse.Namespace) -> int:
    secret = _need_secret(args.secret)
    return ops.send_test(_out, args.url, args.event_type, secret, timeout=args.timeout)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
