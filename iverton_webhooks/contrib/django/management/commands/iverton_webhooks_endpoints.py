"""The endpoints registered in the project's database: add, list, rotate, disable,
enable, remove. Secrets are read from standard input, never from an option."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from iverton_webhooks import _operations as ops
from iverton_webhooks.contrib.django import conf
from iverton_webhooks.contrib.django.models import WebhookEndpoint
from iverton_webhooks.contrib.django.store import DjangoStore

from ._base import command_errors, require_table


class Command(BaseCommand):
    help = ops.ENDPOINTS.sentence

    def add_arguments(self, parser: ArgumentParser) -> None:
        ops.add_endpoints_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        # No secret is needed in the settings: endpoints may carry them all.
        with command_errors():
            settings = conf.options()
            serving = conf.read(settings).endpoint_registry
            using = conf.database(settings)
            require_table(using, WebhookEndpoint)
            ops.endpoints(
                DjangoStore(using), self.stdout.write, options["action"], options, serving=serving
            )
