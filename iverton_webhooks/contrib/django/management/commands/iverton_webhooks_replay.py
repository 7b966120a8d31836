"""``manage.py iverton_webhooks_replay``: ``replay`` of `iverton_webhooks._operations`."""

from ._base import OperationCommand


class Command(OperationCommand):
    operation = "replay"
