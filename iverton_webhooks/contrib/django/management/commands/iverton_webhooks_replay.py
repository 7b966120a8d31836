"""Queue events again (by id, every dead or every unhandled one); the worker runs them."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from iverton_webhooks import _operations as ops

from ._base import add_endpoint_argument, run_operation


class Command(BaseCommand):
    help = (
        "Queue webhook events again by id, every dead one with --dead, or every unhandled "
        "one with --unhandled; the app's runner or iverton_webhooks_worker processes them."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_endpoint_argument(parser)
        parser.add_argument("ids", nargs="*", metavar="ID", help="the events to replay")
        parser.add_argument("--dead", action="store_true", help="replay every dead event")
        parser.add_argument(
            "--unhandled",
            action="store_true",
            help="replay every unhandled event (once a handler for it exists)",
        )
        parser.add_argument(
            "--rerun-all", action="store_true", help="also re-run handlers that succeeded"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run_operation(
            self,
            options["endpoint"],
            lambda processor, out: ops.replay(
                processor,
                out,
                options["ids"],
                dead=options["dead"],
                unhandled=options["unhandled"],
                rerun_all=options["rerun_all"],
            ),
        )
