"""Process due events: pending, retries whose time has come, and ones whose worker died."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from ._base import command_receiver


class Command(BaseCommand):
    help = "Process due webhook events once (--once) or every --interval seconds."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between passes")
        parser.add_argument("--limit", type=int, default=1000, help="events per pass")

    def handle(self, *args: Any, **options: Any) -> None:
        receiver = command_receiver()
        try:
            while True:
                counts = receiver.recover(limit=options["limit"])
                if counts or options["once"]:
                    summary = ", ".join(f"{r.value}: {n}" for r, n in sorted(counts.items()))
                    self.stdout.write(f"processed {sum(counts.values())} events ({summary})")
                if options["once"]:
                    return
                time.sleep(options["interval"])
        except KeyboardInterrupt:
            self.stdout.write("stopped")
        finally:
            receiver.close()
