"""The Django checks show what an endpoint's store says it cannot keep (a Redis without
persistence), in the same words as ``stats`` and the health view (check W011)."""

from __future__ import annotations

from typing import Any

import pytest

from iverton_webhooks import MemoryStore, Receiver
from iverton_webhooks._health import store_warnings
from iverton_webhooks.contrib.django.checks import check_store_warnings
from iverton_webhooks.contrib.django.endpoint import Endpoint
from tests.conftest import SECRET

LOSES = "Redis at 127.0.0.1:6379/0 keeps nothing on disk: a restart loses every event"


class ForgetfulStore(MemoryStore):
    def warnings(self) -> list[str]:
        return [LOSES]


def test_an_endpoint_whose_store_warns_is_reported_once(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {"SECRET": SECRET, "RUNNER": "inline"}
    store = ForgetfulStore()
    endpoints = [Endpoint(endpoint="a"), Endpoint(endpoint="b")]
    for endpoint in endpoints:  # two endpoints on one store: one warning
        endpoint._receiver = Receiver(SECRET, store=store, runner="inline")
    try:
        found = check_store_warnings()
    finally:
        for endpoint in endpoints:
            endpoint.reset()
    assert [(m.id, m.msg) for m in found] == [("iverton_webhooks.W011", LOSES)]
    assert tuple(m.msg for m in found) == store_warnings(store)  # what stats shows


@pytest.mark.django_db
def test_the_django_store_says_nothing(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {"SECRET": SECRET, "RUNNER": "inline"}
    assert check_store_warnings() == []
