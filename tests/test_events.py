from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from iverton_webhooks import (
    EVENT_TYPES,
    Campaign,
    Client,
    Contact,
    Deal,
    Email,
    Event,
    InvalidPayload,
    Resource,
    parse_event,
)
from iverton_webhooks.samples import sample_body, sample_event

FAMILY_MODELS = {
    "contact": Contact,
    "campaign": Campaign,
    "email": Email,
    "deal": Deal,
    "client": Client,
}


def body_of(payload: object) -> bytes:
    return json.dumps(payload).encode()


def test_twenty_two_types_in_five_families() -> None:
    assert len(EVENT_TYPES) == 22 == len(set(EVENT_TYPES))
    assert {t.partition(".")[0] for t in EVENT_TYPES} == set(FAMILY_MODELS)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_sample_parses_into_its_family_model(event_type: str) -> None:
    event = parse_event(sample_body(event_type, id="evt_x"))
    assert event.id == "evt_x"
    assert event.type == event_type
    assert type(event.data) is FAMILY_MODELS[event.family]
    assert event.created_at.tzinfo is not None
    assert event.is_known_type


def test_documented_contact_example() -> None:
    body = (
        b'{"id":"evt_123abc","type":"contact.created","created_at":"2024-01-15T10:30:00Z",'
        b'"data":{"id":"con_456def","email":"john@example.com","first_name":"John",'
        b'"last_name":"Doe"}}'
    )
    event = parse_event(body)
    assert isinstance(event.data, Contact)
    assert event.data.email == "john@example.com"
    assert event.created_at == datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


def test_unknown_fields_are_kept_and_unknown_types_parse_generically() -> None:
    payload = sample_event("deal.won", data={"probability": 0.9})
    assert parse_event(body_of(payload)).data.model_extra == {
        **{k: v for k, v in payload["data"].items() if k != "id"}
    }
    future = {**payload, "type": "invoice.paid", "data": {"id": "inv_1", "total": 5}}
    event = parse_event(body_of(future))
    assert type(event.data) is Resource
    assert not event.is_known_type
    assert event.data.model_extra == {"total": 5}


def test_generic_typing_and_frozen_event() -> None:
    event: Event[Deal] = parse_event(sample_body("deal.won"))
    with pytest.raises(Exception, match="frozen"):
        event.id = "other"  # type: ignore[misc]


def test_naive_timestamp_is_taken_as_utc_and_offsets_are_kept() -> None:
    naive = parse_event(body_of(sample_event("deal.won", created_at="2024-01-15T10:30:00")))
    assert naive.created_at == datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
    offset = parse_event(body_of(sample_event("deal.won", created_at="2024-01-15T12:30:00+02:00")))
    assert offset.created_at == datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


def _deep(depth: int) -> bytes:
    return b'{"id":"evt_1","type":"deal.won","created_at":"2024-01-15T10:30:00Z","data":{"id":"d",'
    b'"x":' + b"[" * depth + b"]" * depth + b"}}"


BAD_BODIES = {
    "empty": b"",
    "not json": b"hello",
    "truncated": sample_body("deal.won")[:-3],
    "list": b"[]",
    "string": b'"evt_1"',
    "number": b"42",
    "null": b"null",
    "non-utf8": b'{"id":"evt_\xff","type":"deal.won"}',
    "missing id": body_of({k: v for k, v in sample_event("deal.won").items() if k != "id"}),
    "empty id": body_of(sample_event("deal.won", id="")),
    "numeric id": body_of(sample_event("deal.won", id=123)),
    "id too long": body_of(sample_event("deal.won", id="e" * 256)),
    "missing type": body_of({k: v for k, v in sample_event("deal.won").items() if k != "type"}),
    "empty type": body_of(sample_event("deal.won", type="")),
    "NUL in id": body_of(sample_event("deal.won", id="evt_\x00x")),
    "NUL in type": body_of(sample_event("deal.won", type="deal.\x00won")),
    "garbage created_at": body_of(sample_event("deal.won", created_at="yesterday-ish")),
    "numeric created_at": body_of(sample_event("deal.won", created_at=1705314600)),
    "missing created_at": body_of(
        {k: v for k, v in sample_event("deal.won").items() if k != "created_at"}
    ),
    "data without id": body_of(sample_event("deal.won") | {"data": {"name": "x"}}),
    "data with empty id": body_of(sample_event("deal.won") | {"data": {"id": ""}}),
    "data not an object": body_of(sample_event("deal.won") | {"data": [1, 2]}),
    "nested 100,000 deep": _deep(100_000),
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_malformed_payloads_raise_invalid_payload(name: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_event(BAD_BODIES[name])
    assert str(caught.value)


def test_error_detail_does_not_echo_input_values() -> None:
    body = body_of(sample_event("deal.won", created_at="SECRET-LOOKING-VALUE"))
    with pytest.raises(InvalidPayload) as caught:
        parse_event(body)
    assert "created_at" in str(caught.value)
    assert "SECRET-LOOKING-VALUE" not in str(caught.value)


def test_sample_overrides_merge_data_and_reject_unknown_types() -> None:
    event = sample_event("contact.created", id="evt_9", data={"email": "a@b.c"})
    assert event["id"] == "evt_9"
    assert event["data"]["email"] == "a@b.c"
    assert event["data"]["id"] == "con_456def"
    assert sample_event("deal.won")["id"] != sample_event("deal.won")["id"]
    with pytest.raises(ValueError, match="no sample"):
        sample_event("deal.wonn")
