"""Process due events: pending, retries whose time has come, and ones whose worker died."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from iverton_webhooks import _operations as ops

from ._base import NO_HANDLERS_HINT, add_endpoint_argument, run_operation


class Command(BaseCommand):
    help = (
        "Process due webhook events with your handlers and signal receivers: until nothing "
        "is due (--once), or every --interval seconds."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_endpoint_argument(parser)
        ops.add_worker_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        run_operation(
            self,
            options["endpoint"],
            lambda processor, out: ops.work(
                processor,
                out,
                once=options["once"],
                interval=options["interval"],
                batch=options["batch"],
                no_handlers_hint=NO_HANDLERS_HINT,
            ),
        )
