"""Post a signed sample event to an endpoint, like the dashboard's "Send Test" button."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.urls import NoReverseMatch, reverse

from iverton_webhooks import _operations as ops
from iverton_webhooks.contrib.django import conf
from iverton_webhooks.events import EVENT_TYPES


class Command(BaseCommand):
    help = "POST a signed sample event of TYPE to the webhook URL and print the answer."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("type", choices=EVENT_TYPES, metavar="TYPE", help="e.g. deal.won")
        parser.add_argument("--url", help="default: http://127.0.0.1:8000 + this app's URL")
        parser.add_argument(
            "--timeout",
            type=float,
            default=10.0,
            help="seconds to wait for the answer (default: 10)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        secrets = conf.read(conf.options()).secrets
        if not secrets:
            raise CommandError(
                f"settings.{conf.SETTING} has no SECRET to sign with", returncode=ops.USAGE
            )
        url = options["url"] or self._default_url()
        try:
            ops.send_test(
                self.stdout.write, url, options["type"], secrets[0], timeout=options["timeout"]
            )
        except ops.OperationError as exc:
            raise CommandError(str(exc), returncode=exc.code) from None

    def _default_url(self) -> str:
        try:
            return "http://127.0.0.1:8000" + reverse("iverton_webhooks:receive")
        except NoReverseMatch:
            raise CommandError(
                "iverton_webhooks.contrib.django.urls is not in your URLconf: pass --url",
                returncode=ops.USAGE,
            ) from None
