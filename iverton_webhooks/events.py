"""The event envelope, the 22 event type names and the resource models.

Only the envelope (``id``, ``type``, ``created_at``, ``data.id``) is guaranteed by the
sender, so every resource model requires ``id`` alone and keeps unknown fields.

>>> from iverton_webhooks.samples import sample_body
>>> event = parse_event(sample_body("deal.won", id="evt_1"))
>>> event.id, event.family, type(event.data).__name__
('evt_1', 'deal', 'Deal')
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Generic

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypeVar

from .errors import InvalidPayload

EVENT_TYPES: tuple[str, ...] = (
    "contact.created",
    "contact.updated",
    "contact.deleted",
    "contact.subscribed",
    "contact.unsubscribed",
    "campaign.created",
    "campaign.scheduled",
    "campaign.sent",
    "campaign.completed",
    "email.delivered",
    "email.opened",
    "email.clicked",
    "email.bounced",
    "email.complained",
    "deal.created",
    "deal.updated",
    "deal.stage_changed",
    "deal.won",
    "deal.lost",
    "client.created",
    "client.updated",
    "client.deleted",
)
FAMILIES: tuple[str, ...] = ("contact", "campaign", "email", "deal", "client")
_KNOWN_TYPES = frozenset(EVENT_TYPES)


def _assume_utc(value: datetime) -> datetime:
    # The contract promises UTC; a sender that drops the offset still means UTC,
    # and refusing it would get the endpoint disabled for a formatting detail.
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


UtcDatetime = Annotated[datetime, Field(strict=True), AfterValidator(_assume_utc)]
"""A timestamp given as an ISO-8601 string; naive values are taken as UTC."""


class Resource(BaseModel):
    """The object an event is about. Fields the sender adds later are kept as extras."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)


class Contact(Resource):
    """A contact (the one resource whose fields the sender documents)."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class Campaign(Resource):
    """An email campaign."""


class Email(Resource):
    """One email sent to one contact (delivery, open, click, bounce, complaint)."""


class Deal(Resource):
    """A deal in the CRM pipeline."""


class Client(Resource):
    """A client company."""


DataT = TypeVar("DataT", bound=Resource, default=Resource)


def _no_nul(value: str) -> str:
    # Used as a database key: PostgreSQL refuses NUL in text, which would turn a
    # client's bad input into a 503 on every retry instead of a 400.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


_ID = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_no_nul)]


class Event(BaseModel, Generic[DataT]):
    """One webhook event. ``Event[Deal]`` types ``data`` as a :class:`Deal`."""

    model_config = ConfigDict(frozen=True)

    id: _ID
    type: _ID
    created_at: UtcDatetime
    data: DataT

    @property
    def family(self) -> str:
        """The part of ``type`` before the dot: ``"deal"`` for ``"deal.won"``."""
        return self.type.partition(".")[0]

    @property
    def is_known_type(self) -> bool:
        """False for a type this version of the library has not heard of."""
        return self.type in _KNOWN_TYPES


class _DataRef(Resource):
    model_config = ConfigDict(extra="ignore")


class Envelope(Event[_DataRef]):
    """The fields the receiver needs to dedupe and store; ``data`` beyond its id is skipped."""


_validate_envelope = Envelope.__pydantic_validator__.validate_json

_FAMILY_MODELS: dict[str, type[Event[Any]]] = {
    "contact": Event[Contact],
    "campaign": Event[Campaign],
    "email": Event[Email],
    "deal": Event[Deal],
    "client": Event[Client],
}


def event_model(event_type: str) -> type[Event[Any]]:
    """The model for an event type: typed by family when known, generic otherwise."""
    if event_type in _KNOWN_TYPES:
        return _FAMILY_MODELS[event_type.partition(".")[0]]
    return Event[Resource]


def parse_envelope(body: bytes) -> Envelope:
    """Validate the envelope of a raw body; raise :class:`InvalidPayload` if it is malformed."""
    try:
        # The validator itself: skips model_validate_json's wrapper, about a fifth of the
        # cost of this call, which every acknowledged request pays.
        envelope: Envelope = _validate_envelope(body)
        return envelope
    except ValidationError as exc:
        raise InvalidPayload(describe_validation_error(exc)) from None


def parse_event(body: bytes, event_type: str | None = None) -> Event[Any]:
    """Parse a raw body into a typed :class:`Event`; raise :class:`InvalidPayload` if malformed.

    ``event_type`` skips the envelope pass when the type is already known (as it is
    for a stored event).
    """
    if event_type is None:
        event_type = parse_envelope(body).type
    try:
        return event_model(event_type).model_validate_json(body)
    except ValidationError as exc:
        raise InvalidPayload(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """A short account of what is wrong, naming fields but never echoing input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        location = ".".join(str(part) for part in error["loc"]) or "body"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts) or "invalid payload"
