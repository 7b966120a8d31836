"""The event envelope, the event type names and the resource models.

Type names, families and models come from the catalogue (`iverton_webhooks._catalogue`).

Only the envelope (``id``, ``type``, ``created_at``, ``data.id``) is guaranteed by the
sender, so every resource model requires ``id`` alone and keeps unknown fields.

>>> from iverton_webhooks.samples import sample_body
>>> event = parse_event(sample_body("deal.won", id="evt_1"))
>>> event.id, event.family, type(event.data).__name__
('evt_1', 'deal', 'Deal')
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Generic

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError
from typing_extensions import TypedDict, TypeVar

from ._catalogue import CATALOGUE, Campaign, Client, Contact, Deal, Email, Resource
from ._errors import InvalidPayload
from ._text import printable
from .inbox.base import DEFAULT_ENDPOINT

__all__ = [
    "EVENT_TYPES",
    "FAMILIES",
    "Campaign",
    "Client",
    "Contact",
    "Deal",
    "Email",
    "Envelope",
    "Event",
    "Resource",
    "describe_validation_error",
    "event_model",
    "parse_envelope",
    "parse_event",
    "resource_id_of",
    "salvage_id_and_type",
]

EVENT_TYPES: tuple[str, ...] = CATALOGUE.types
"""Every event type name the sender documents, family by family."""
FAMILIES: tuple[str, ...] = CATALOGUE.names
"""The family names (the part of a type before the dot)."""

# One day inside what datetime can hold at either end: a store, an admin page or a log
# that shows the time in any zone (offsets are under a day) can still build it, and an
# epoch-float round trip cannot round past the end.
_EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc)
_LATEST = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=timezone.utc)


def _parsers_utc() -> object:
    """The zone pydantic-core gives a time it parses with a "Z" (one shared object): a
    time in it needs no offset asked for."""

    class Probe(BaseModel):
        at: datetime

    zone = Probe.model_validate_json('{"at":"2000-01-01T00:00:00Z"}').at.tzinfo
    if zone is None or zone.utcoffset(None) != timedelta(0):
        return timezone.utc  # not the parser we know: every time takes the general path
    return zone


_PARSERS_UTC = _parsers_utc()


def _utc_instant(value: datetime) -> datetime:
    # The contract promises UTC; a sender that drops the offset still means UTC,
    # and refusing it would get the endpoint disabled for a formatting detail.
    if value.tzinfo is not _PARSERS_UTC:  # a "Z" time (nearly all) has nothing to move
        offset = value.utcoffset()
        if offset is None:
            value = value.replace(tzinfo=timezone.utc)
        elif offset:
            try:
                value = value.astimezone(timezone.utc)
            except OverflowError:
                # A ValueError, so pydantic reports it like any other bad field (an
                # OverflowError would escape validation and crash the request).
                raise ValueError("is out of range once converted to UTC") from None
    # Only the first and last years can be within a day of either end.
    if value.year in (1, 9999) and not _EARLIEST <= value <= _LATEST:
        raise ValueError("is out of range once converted to UTC")
    return value


def _to_utc(value: datetime) -> datetime:
    value = _utc_instant(value)
    return value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, Field(strict=True), AfterValidator(_to_utc)]
"""An ISO-8601 timestamp, converted to UTC (naive values are taken as UTC). Valid from
0001-01-02T00:00:00Z to 9999-12-30T23:59:59.999999Z once in UTC: a day inside what
``datetime`` holds at either end, so any time zone can still show it."""

# The envelope's copy is the same instant, checked the same way, but a "Z" time keeps
# the parser's own UTC tzinfo: the receiver only turns it into an epoch number.
_UtcInstant = Annotated[datetime, Field(strict=True), AfterValidator(_utc_instant)]


DataT = TypeVar("DataT", bound=Resource, default=Resource)


_MAX_KEY = 255
_KNOWN_TYPES = frozenset(EVENT_TYPES)  # a set lookup: every ack asks


def _no_nul(value: str) -> str:
    # Used as a database key: PostgreSQL refuses NUL in text, which would turn a
    # signed event into a 503 on every retry instead of a quarantine.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# 255: the narrowest key column of any store (Django's CharField, MySQL index limits).
_ID = Annotated[str, Field(min_length=1, max_length=_MAX_KEY), AfterValidator(_no_nul)]


class _TypeNamed:
    """What an event's ``type`` says, for the event and its envelope alike."""

    type: str

    @property
    def family(self) -> str:
        """The part of ``type`` before the dot: ``"deal"`` for ``"deal.won"``."""
        return self.type.partition(".")[0]

    @property
    def is_known_type(self) -> bool:
        """False for a type this version of the library has not heard of."""
        return self.type in _KNOWN_TYPES


class Event(_TypeNamed, BaseModel, Generic[DataT]):
    """One webhook event. ``Event[Deal]`` types ``data`` as a `Deal`."""

    model_config = ConfigDict(frozen=True)

    id: _ID
    type: _ID
    created_at: UtcDatetime
    data: DataT
    # Not a field: where the event arrived is not part of what the sender signed, so no
    # body can set it.
    _endpoint: str = PrivateAttr(default=DEFAULT_ENDPOINT)

    @property
    def endpoint(self) -> str:
        """The endpoint the event was received at (its receiver's ``endpoint``, or the
        registered endpoint's name)."""
        return self._endpoint


class _DataRef(TypedDict):
    """The part of ``data`` the envelope reads: the resource's ``id``."""

    id: Annotated[str, Field(min_length=1)]


class Envelope(_TypeNamed, BaseModel):
    """The fields the receiver needs to dedupe and store, checked as `Event`
    checks them. ``data`` must be an object with an ``id``; the rest of it is skipped
    and ``data`` is a plain dict. ``created_at`` is in UTC (offset zero), its ``tzinfo``
    the parser's own.
    """

    model_config = ConfigDict(frozen=True)

    id: _ID
    type: _ID
    created_at: _UtcInstant
    data: _DataRef

    @property
    def resource_id(self) -> str:
        """``data.id`` as a store keeps it for searching: `resource_id_of` the body,
        without reading the body again."""
        return _searchable(self.data["id"])


_validate_envelope = Envelope.__pydantic_validator__.validate_json

_FAMILY_MODELS: dict[str, type[Event[Any]]] = {
    family.name: Event[family.model]  # type: ignore[name-defined]  # a runtime parameter
    for family in CATALOGUE.families
}


def event_model(event_type: str) -> type[Event[Any]]:
    """The model for an event type: typed by family when known, generic otherwise."""
    family = CATALOGUE.family_of(event_type)
    return _FAMILY_MODELS[family.name] if family else Event[Resource]


# Each type's validator, called directly as the envelope's is (no model_validate_json
# wrapper around it).
_VALIDATE_BY_TYPE: dict[str, Callable[[bytes], Any]] = {
    event_type: event_model(event_type).__pydantic_validator__.validate_json
    for event_type in EVENT_TYPES
}
_validate_unknown = Event[Resource].__pydantic_validator__.validate_json


def parse_envelope(body: bytes) -> Envelope:
    """Validate the envelope of a raw body; raise `InvalidPayload` if it is malformed."""
    try:
        envelope: Envelope = _validate_envelope(body)
        return envelope
    except ValidationError as exc:
        raise InvalidPayload(describe_validation_error(exc)) from None


def parse_event(
    body: bytes, event_type: str | None = None, *, endpoint: str = DEFAULT_ENDPOINT
) -> Event[Any]:
    """Parse a raw body into a typed `Event`; raise `InvalidPayload` if malformed.

    ``event_type`` skips the envelope pass when the type is already known (as it is
    for a stored event); ``endpoint`` is where it was received (`Event.endpoint`).
    """
    if event_type is None:
        event_type = parse_envelope(body).type
    try:
        event: Event[Any] = _VALIDATE_BY_TYPE.get(event_type, _validate_unknown)(body)
        if endpoint != DEFAULT_ENDPOINT:
            event._endpoint = endpoint
        return event
    except ValidationError as exc:
        raise InvalidPayload(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """A short account of what is wrong, naming fields but never echoing input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        location = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts) or "invalid payload"


# What reading an unvalidated body may raise (ValueError: bad JSON or bad UTF-8).
_UNREADABLE = (ValueError, TypeError, RecursionError, MemoryError)


def _usable_key(value: object) -> str | None:
    # The same rule as the envelope's id and type, plus UTF-8 encodability: json.loads
    # accepts lone surrogates ("\\ud800") that no store can write.
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_KEY or "\x00" in value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


def salvage_id_and_type(body: bytes) -> tuple[str | None, str | None]:
    """The event ``id`` and ``type`` of a body that failed to parse, where they can be read.

    For the quarantine key of a signed but malformed event: each is a string of 1 to
    255 characters without NUL, or None. Never raises.

    >>> salvage_id_and_type(b'{"id": "evt_1", "type": "deal.won", "created_at": "soon"}')
    ('evt_1', 'deal.won')
    >>> salvage_id_and_type(b'{"id": 42, "type": "deal.won"}')
    (None, 'deal.won')
    >>> salvage_id_and_type(b"not json")
    (None, None)

    Integers are read as `Decimal`, which has no digit limit: a 5,000-digit
    integer elsewhere in the body (more digits than ``int()`` takes from text) does not
    hide a readable ``id``.

    >>> digits = b"1" + b"0" * 5000
    >>> salvage_id_and_type(b'{"id": "evt_2", "type": "deal.won", "n": ' + digits + b"}")
    ('evt_2', 'deal.won')
    """
    try:
        payload = json.loads(body, parse_int=Decimal)
    except _UNREADABLE:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    return _usable_key(payload.get("id")), _usable_key(payload.get("type"))


#: Longest resource id a store keeps (Django's ``resource_id`` column).
RESOURCE_ID_CHARS = 255


# Numbers as their text: no digit limit, and 1.50 stays "1.50". One decoder for every
# call (json.loads with these options builds a new one each time).
_NUMBERS_AS_TEXT = json.JSONDecoder(parse_int=str, parse_float=str)


def resource_id_of(body: bytes) -> str:
    r"""The ``data.id`` of a raw body, as a store keeps it for searching; "" if none.

    Read as every reader of the event reads it: a duplicated key counts at its last
    occurrence (as pydantic gives it to handlers and PostgreSQL's jsonb keeps it), numbers
    as written. Control, invisible and bidi characters, NUL and lone surrogates are
    written as the escapes `printable` shows everywhere (``\x00``, ``\ud83d``), so the
    value is storable in every database and is what an admin sees and searches for. Cut
    to `RESOURCE_ID_CHARS`. Never raises.

    >>> resource_id_of(b'{"data": {"id": "first", "id": "second"}}')
    'second'
    >>> resource_id_of(b'{"data": {"id": "\\ud83d"}}'), resource_id_of(b'{"data": {"id": 42}}')
    ('\\ud83d', '42')
    >>> resource_id_of(b'{"data": {"id": "a\\u0000b"}}'), resource_id_of(b"not json")
    ('a\\x00b', '')
    """
    try:
        payload = _NUMBERS_AS_TEXT.decode(body.decode("utf-8"))
    except _UNREADABLE:
        return ""
    data = payload.get("data") if isinstance(payload, dict) else None
    value = data.get("id") if isinstance(data, dict) else None
    return _searchable(value) if isinstance(value, str) else ""


def _searchable(resource_id: str) -> str:
    return printable(resource_id)[:RESOURCE_ID_CHARS]
