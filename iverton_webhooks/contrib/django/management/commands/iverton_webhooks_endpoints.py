"""The endpoints registered in the project's database: add, list, rotate, disable,
enable, remove. Secrets are read from standard input, never from an option."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from iverton_webhooks import _operations as ops

from ._base import run_registry_operation


class Command(BaseCommand):
    help = (
        "The webhook endpoints registered in the database: add, list, rotate, disable, "
        "enable, remove. add and rotate read the secret from standard input."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        ops.add_endpoints_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        run_registry_operation(
            self,
            lambda store, out, serving: ops.endpoints(
                store,
                out,
                options["action"],
                options.get("name"),
                grace=options.get("grace"),
                as_json=options.get("json", False),
                force=options.get("force", False),
                serving=serving,
            ),
        )
