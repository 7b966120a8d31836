"""Post a signed sample event to an endpoint, like the dashboard's "Send Test" button."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.urls import NoReverseMatch, reverse

from iverton_webhooks import _operations as ops
from iverton_webhooks._operations import OperationError
from iverton_webhooks.contrib.django import conf

from ._base import command_errors


class Command(BaseCommand):
    help = ops.SEND_TEST.sentence

    def add_arguments(self, parser: ArgumentParser) -> None:
        ops.SEND_TEST.add_arguments(parser)
        parser.add_argument("--url", help="default: http://127.0.0.1:8000 + this app's URL")

    def handle(self, *args: Any, **options: Any) -> None:
        with command_errors():
            secrets = conf.read(conf.options()).secrets
            if not secrets:
                raise OperationError(f"settings.{conf.SETTING} has no SECRET to sign with")
            url = options["url"] or _default_url()
            ops.send_test(
                self.stdout.write,
                url,
                options["event_type"],
                secrets[0],
                timeout=options["timeout"],
            )


def _default_url() -> str:
    try:
        return "http://127.0.0.1:8000" + reverse("iverton_webhooks:receive")
    except NoReverseMatch:
        raise OperationError(
            "iverton_webhooks.contrib.django.urls is not in your URLconf: pass --url"
        ) from None
