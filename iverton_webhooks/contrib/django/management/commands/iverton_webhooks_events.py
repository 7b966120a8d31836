"""List stored webhook events, newest first."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from iverton_webhooks import _operations as ops

from ._base import add_endpoint_argument, run_operation


class Command(BaseCommand):
    help = "List stored webhook events, newest first (--json: one JSON object per line)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_endpoint_argument(parser)
        ops.add_events_arguments(parser)

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
