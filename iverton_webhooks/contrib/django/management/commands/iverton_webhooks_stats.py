"""Webhook events in each status, with thresholds for a cron job or a probe."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from iverton_webhooks import _operations as ops

from ._base import add_endpoint_argument, run_operation


class Command(BaseCommand):
    help = "Webhook events in each status; exit 1 past a --max-* threshold."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_endpoint_argument(parser)
        parser.add_argument("--json", action="store_true", help="one JSON object")
        for flag, dest, kind, help_text in ops.THRESHOLD_FLAGS:
            parser.add_argument(flag, dest=dest, type=kind, default=None, help=help_text)

    def handle(self, *args: Any, **options: Any) -> None:
        limits = {dest: options[dest] for _, dest, _, _ in ops.THRESHOLD_FLAGS}
        run_operation(
            self,
            options["endpoint"],
            lambda processor, out: ops.stats(
                processor, out, as_json=options["json"], limits=ops.thresholds(**limits)
            ),
        )
