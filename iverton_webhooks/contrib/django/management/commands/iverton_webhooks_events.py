"""List stored webhook events, newest first."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from iverton_webhooks import operations as ops
from iverton_webhooks.inbox.base import Status

from ._base import add_endpoint_argument, run_operation


class Command(BaseCommand):
    help = "List stored webhook events, newest first (--json: one JSON object per line)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_endpoint_argument(parser)
        parser.add_argument(
            "--status", choices=[s.value for s in Status], help="only events in this status"
        )
        parser.add_argument("--type", dest="event_type", help="only events of this type")
        parser.add_argument(
            "--limit",
            type=int,
            default=ops.DEFAULT_LIMIT,
            help=f"at most this many, newest first (default: {ops.DEFAULT_LIMIT})",
        )
        parser.add_argument("--json", action="store_true", help="one JSON object per line")

    def handle(self, *args: Any, **options: Any) -> None:
        run_operation(
            self,
            options["endpoint"],
            lambda processor, out: ops.list_events(
                processor,
                out,
                status=options["status"],
                event_type=options["event_type"],
                limit=options["limit"],
                as_json=options["json"],
            ),
        )
