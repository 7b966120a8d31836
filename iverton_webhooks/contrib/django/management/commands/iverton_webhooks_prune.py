"""Delete finished webhook events older than the retention."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from iverton_webhooks import _operations as ops

from ._base import add_endpoint_argument, run_operation


class Command(BaseCommand):
    help = (
        "Delete finished webhook events past the retention; a span that breaks the "
        "RETENTION/MAX_AGE rule is refused."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_endpoint_argument(parser)
        parser.add_argument(
            "--older-than-hours",
            type=float,
            default=None,
            help="delete finished events received longer ago than this (default: the "
            "RETENTION setting)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run_operation(
            self,
            options["endpoint"],
            lambda processor, out: ops.prune(
                processor, out, older_than_hours=options["older_than_hours"]
            ),
        )
