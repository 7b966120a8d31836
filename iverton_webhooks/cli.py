"""The ``iverton-webhooks`` command: demo, sign, worker, events, replay, prune, send-test."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import timedelta

from .errors import WebhookError
from .inbox import open_store
from .inbox.base import Status, Store
from .receiver import DEFAULT_RETENTION, check_retention
from .router import default_router
from .signature import sign
from .worker import RetryPolicy, process


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return int(args.command(args))
    except WebhookError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iverton-webhooks", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="post every sample event to a local receiver")
    demo.add_argument("-v", "--verbose", action="store_true", help="show the library's log")
    demo.set_defaults(command=_demo)

    sign_cmd = commands.add_parser("sign", help="print the X-Iverton-Signature for a body")
    sign_cmd.add_argument("file", nargs="?", help="body file (default: stdin)")
    sign_cmd.add_argument("--secret", default=os.environ.get("IVERTON_WEBHOOK_SECRET"))
    sign_cmd.set_defaults(command=_sign)

    store_help = "store URL, e.g. sqlite:///webhooks.sqlite3 (env IVERTON_WEBHOOK_STORE)"
    default_store = os.environ.get("IVERTON_WEBHOOK_STORE", "sqlite:///webhooks.sqlite3")

    worker = commands.add_parser("worker", help="process due events (pending, retries, crashed)")
    worker.add_argument("--store", default=default_store, help=store_help)
    worker.add_argument("--app", action="append", default=[], help="module that registers handlers")
    worker.add_argument("--once", action="store_true", help="one pass, then exit")
    worker.add_argument("--interval", type=float, default=2.0, help="seconds between passes")
    worker.add_argument("--lease", type=float, default=300.0, help="seconds a worker owns an event")
    worker.set_defaults(command=_worker)

    events = commands.add_parser("events", help="list stored events")
    events.add_argument("--store", default=default_store, help=store_help)
    events.add_argument("--status", choices=[s.value for s in Status])
    events.add_argument("--type", dest="event_type")
    events.add_argument("--limit", type=int, default=50)
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.set_defaults(command=_events)

    replay = commands.add_parser("replay", help="queue events again (processed by the worker)")
    replay.add_argument("ids", nargs="*")
    replay.add_argument("--store", default=default_store, help=store_help)
    replay.add_argument("--dead", action="store_true", help="replay every dead event")
    replay.add_argument(
        "--all-handlers", action="store_true", help="re-run handlers that succeeded"
    )
    replay.set_defaults(command=_replay)

    prune = commands.add_parser("prune", help="delete done and dead events past the retention")
    prune.add_argument("--store", default=default_store, help=store_help)
    prune.add_argument("--older-than-hours", type=float, default=DEFAULT_RETENTION.days * 24)
    prune.set_defaults(command=_prune)

    send = commands.add_parser("send-test", help="POST a signed sample event to a URL")
    send.add_argument("event_type", metavar="TYPE")
    send.add_argument("--url", required=True)
    send.add_argument("--secret", default=os.environ.get("IVERTON_WEBHOOK_SECRET"))
    send.set_defaults(command=_send_test)
    return parser


def _need_secret(secret: str | None) -> str:
    if not secret:
        sys.exit("error: give --secret or set IVERTON_WEBHOOK_SECRET")
    return secret


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    # The table is the point; the per-event log lines would bury it.
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    return run_demo()


def _sign(args: argparse.Namespace) -> int:
    secret = _need_secret(args.secret)
    if args.file:
        with open(args.file, "rb") as handle:
            body = handle.read()
    else:
        body = sys.stdin.buffer.read()
    print(sign(body, secret))
    return 0


def _worker(args: argparse.Namespace) -> int:
    for module in args.app:
        importlib.import_module(module)
    store = open_store(args.store)
    policy = RetryPolicy()
    while True:
        handled = 0
        for event_id in store.due(limit=500):
            result = process(
                store, default_router, event_id, lease_seconds=args.lease, policy=policy
            )
            logging.getLogger("iverton_webhooks").info("event %s: %s", event_id, result.value)
            handled += 1
        if args.once:
            return 0
        if not handled:
            time.sleep(args.interval)


def _events(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    for event in store.list(status=args.status, event_type=args.event_type, limit=args.limit):
        if args.json:
            print(json.dumps(event.to_json()))
        else:
            print(event.summary())
    return 0


def _replay(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    ids = list(args.ids)
    if args.dead:
        ids += [event.id for event in store.list(status=Status.DEAD, limit=1_000_000)]
    if not ids:
        sys.exit("error: name event ids or pass --dead")
    replayed = [i for i in ids if store.replay(i, rerun_all=args.all_handlers)]
    print(f"replayed {len(replayed)} of {len(ids)} event(s); the worker will process them")
    return 0 if len(replayed) == len(ids) else 1


def _prune(args: argparse.Namespace) -> int:
    span = timedelta(hours=args.older_than_hours)
    check_retention(span, None)
    store: Store = open_store(args.store)
    print(f"deleted {store.prune(time.time() - span.total_seconds())} event(s)")
    return 0


def _send_test(args: argparse.Namespace) -> int:
    from .samples import send_sample

    status, body = send_sample(args.url, args.event_type, _need_secret(args.secret))
    print(status, body.decode("utf-8", "replace"))
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
