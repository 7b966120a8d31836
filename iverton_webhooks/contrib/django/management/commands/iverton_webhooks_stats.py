"""``manage.py iverton_webhooks_stats``: ``stats`` of `iverton_webhooks._operations`."""

from ._base import OperationCommand


class Command(OperationCommand):
    operation = "stats"
