"""``manage.py iverton_webhooks_events``: ``events`` of `iverton_webhooks._operations`."""

from ._base import OperationCommand


class Command(OperationCommand):
    operation = "events"
