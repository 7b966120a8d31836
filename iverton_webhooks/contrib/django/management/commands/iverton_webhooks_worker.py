"""``manage.py iverton_webhooks_worker``: ``worker`` of `iverton_webhooks._operations`."""

from ._base import OperationCommand


class Command(OperationCommand):
    operation = "worker"
