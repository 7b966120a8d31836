"""How many webhook events are in each status."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from iverton_webhooks import operations as ops

from ._base import add_endpoint_argument, run_operation


class Command(BaseCommand):
    help = "How many webhook events are in each status."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_endpoint_argument(parser)
        parser.add_argument("--json", action="store_true", help="one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        run_operation(
            self,
            options["endpoint"],
            lambda processor, out: ops.stats(processor, out, as_json=options["json"]),
        )
