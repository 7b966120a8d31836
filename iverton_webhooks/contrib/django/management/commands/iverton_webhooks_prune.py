"""``manage.py iverton_webhooks_prune``: ``prune`` of `iverton_webhooks._operations`."""

from ._base import OperationCommand


class Command(OperationCommand):
    operation = "prune"
