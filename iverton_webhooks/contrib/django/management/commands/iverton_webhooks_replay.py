"""Queue finished, failed or dead events again, and process them now."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ._base import command_receiver


class Command(BaseCommand):
    help = "Replay webhook events by id, or every event with --status dead|failed."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
        parser.add_argument("--status", choices=("dead", "failed"), help="replay all of these")
        parser.add_argument(
            "--rerun-all", action="store_true", help="also re-run handlers that succeeded"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[str] = list(options["event_ids"])
        if bool(ids) == bool(options["status"]):
            raise CommandError("give event ids or --status, not both or neither")
        receiver = command_receiver()
        try:
            if options["status"]:
                ids = [e.id for e in receiver.store.list(status=options["status"], limit=10**9)]
            missing = []
            for event_id in ids:
                if receiver.replay(event_id, rerun_all=options["rerun_all"]):
                    event = receiver.store.get(event_id)
                    status = event.status.value if event else "gone"
                    self.stdout.write(f"{event_id}: replayed, now {status}")
                else:
                    missing.append(event_id)
            if missing:
                raise CommandError(
                    "not replayable (unknown, pending or processing): " + ", ".join(missing)
                )
            self.stdout.write(f"replayed {len(ids)} events")
        finally:
            receiver.close()
