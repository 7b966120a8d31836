"""Endpoints kept in a store: the rotation rule, which secrets are valid when, the
stored form of secrets, and reprs that never show a secret whole."""

from __future__ import annotations

import pytest

from iverton_webhooks.inbox import EndpointRecord, EndpointSecret, MemoryStore, rotated
from iverton_webhooks.inbox.base import dump_secrets, load_secrets, masked_secret

SECRET = "whsec_9f8a7b6c5d4e3f2a1b0c"


def record(*secrets: EndpointSecret) -> EndpointRecord:
    return EndpointRecord("shop_1", secrets, True, 1.0, 2.0)


def test_valid_secrets_are_the_current_one_then_those_not_yet_expired() -> None:
    endpoint = record(
        EndpointSecret("whsec_new"), EndpointSecret("whsec_old", 100.0), EndpointSecret("x", 50.0)
    )
    assert endpoint.valid_secrets(49.0) == ("whsec_new", "whsec_old", "x")
    assert endpoint.valid_secrets(50.0) == ("whsec_new", "whsec_old")
    assert endpoint.valid_secrets(100.0) == ("whsec_new",)


def test_rotation_keeps_the_previous_secret_for_the_grace_period_only() -> None:
    first = (EndpointSecret("whsec_a"),)
    second = rotated(first, "whsec_b", now=10.0, grace_seconds=60)
    assert second == (EndpointSecret("whsec_b"), EndpointSecret("whsec_a", 70.0))
    third = rotated(second, "whsec_c", now=20.0, grace_seconds=60)
    # The one that was current gets the grace; an earlier one keeps its own end.
    assert third == (
        EndpointSecret("whsec_c"),
        EndpointSecret("whsec_b", 80.0),
        EndpointSecret("whsec_a", 70.0),
    )
    assert rotated(third, "whsec_d", now=75.0, grace_seconds=60) == (
        EndpointSecret("whsec_d"),
        EndpointSecret("whsec_c", 135.0),
        EndpointSecret("whsec_b", 80.0),
    )


def test_rotation_without_grace_and_to_a_secret_already_held() -> None:
    secrets = (EndpointSecret("whsec_b"), EndpointSecret("whsec_a", 70.0))
    assert rotated(secrets, "whsec_c", now=10.0, grace_seconds=0) == (
        EndpointSecret("whsec_c"),
        EndpointSecret("whsec_a", 70.0),
    )
    # Back to an older secret: it becomes current, held once.
    assert rotated(secrets, "whsec_a", now=10.0, grace_seconds=60) == (
        EndpointSecret("whsec_a"),
        EndpointSecret("whsec_b", 70.0),
    )


@pytest.mark.parametrize("secret", ["a\x00b", "\ud83d", 'json:"x"', SECRET])
def test_secrets_round_trip_through_their_stored_form(secret: str) -> None:
    secrets = (EndpointSecret(secret), EndpointSecret(secret + "2", 1_700_000_000.123456))
    text = dump_secrets(secrets)
    assert "\x00" not in text
    text.encode("utf-8")  # no lone surrogate
    assert load_secrets(text) == secrets


def test_no_repr_shows_a_secret_whole() -> None:
    endpoint = record(EndpointSecret(SECRET), EndpointSecret(SECRET[::-1], 5.0))
    for shown in (repr(endpoint), str(endpoint), repr(endpoint.secrets), str(endpoint.secrets[0])):
        assert SECRET not in shown
        assert SECRET[::-1] not in shown
        assert SECRET[:7] not in shown
    assert "'whsec_…'" in repr(endpoint)
    assert masked_secret("abc") == "a…"
    assert masked_secret("ab") == "…"


@pytest.mark.parametrize("stored", ["not json", "{}", '[{"secret": 1}]', "[1]", "null"])
def test_secrets_a_store_cannot_read_are_none_until_a_rotation(stored: str) -> None:
    store = MemoryStore()
    assert store.add_endpoint("shop_1", SECRET)
    assert store.add_endpoint("shop_2", SECRET)
    store._registry["shop_1"]["secrets"] = stored  # as another writer might leave it
    found = store.get_endpoint("shop_1")
    assert found is not None
    assert found.valid_secrets(store.clock()) == ()
    assert [e.name for e in store.list_endpoints()] == ["shop_1", "shop_2"]
    assert store.rotate_endpoint("shop_1", "whsec_new", 60)
    rotated_now = store.get_endpoint("shop_1")
    assert rotated_now is not None
    assert rotated_now.secrets == (EndpointSecret("whsec_new"),)
