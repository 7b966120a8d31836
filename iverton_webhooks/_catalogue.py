"""The event catalogue: every family the sender documents, in one place.

Type names, families, the typed models, the sample payloads and the Django signals are
all derived from `CATALOGUE`. Adding a family is a change to this file only: a
model class and one `Family` entry (its actions and a sample resource).

>>> CATALOGUE.model_for("deal.won").__name__
'Deal'
>>> CATALOGUE.types[:2]
('contact.created', 'contact.updated')
>>> len(CATALOGUE.types) == sum(len(family.actions) for family in CATALOGUE.families)
True
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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


@dataclass(frozen=True)
class Family:
    """One resource family: ``name.action`` for each action is an event type.

    ``sample`` is a realistic resource for the sample payloads; ``action_samples`` adds
    the fields a given action's payload carries on top of it.
    """

    name: str
    model: type[Resource]
    actions: tuple[str, ...]
    sample: Mapping[str, Any]
    action_samples: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def types(self) -> tuple[str, ...]:
        """The event type names of this family, in catalogue order."""
        return tuple(f"{self.name}.{action}" for action in self.actions)


class Catalogue:
    """A set of families and what derives from them (types, models, samples).

    Built once at import for the sender's documented families; a test can build
    one with an extra family and check that everything follows from it.
    """

    def __init__(self, families: tuple[Family, ...]) -> None:
        names = [family.name for family in families]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate family names in {names}")
        for family in families:
            # A typo in an action's sample extras would silently give it no extras.
            unknown = set(family.action_samples) - set(family.actions)
            if unknown or not family.actions or "id" not in family.sample:
                raise ValueError(f"family {family.name!r}: bad actions or sample")
        self.families = families
        self.names: tuple[str, ...] = tuple(names)
        self.types: tuple[str, ...] = tuple(t for family in families for t in family.types)
        self._family_of = {t: family for family in families for t in family.types}

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._family_of

    def __len__(self) -> int:
        """The number of event types."""
        return len(self.types)

    def family_of(self, event_type: str) -> Family | None:
        """The family of a known event type; None for a type not in the catalogue."""
        return self._family_of.get(event_type)

    def model_for(self, event_type: str) -> type[Resource]:
        """The resource model for ``data``: the family's model, `Resource` if unknown."""
        family = self.family_of(event_type)
        return family.model if family else Resource

    def sample_data(self, event_type: str) -> dict[str, Any]:
        """A fresh copy of the sample ``data`` for a known type; ValueError otherwise."""
        family = self.family_of(event_type)
        if family is None:
            raise ValueError(f"no sample for {event_type!r}; known types: {', '.join(self.types)}")
        action = event_type.partition(".")[2]
        # Deep copies: a caller editing a sample's nested list must not edit the catalogue.
        return copy.deepcopy({**family.sample, **family.action_samples.get(action, {})})


CATALOGUE = Catalogue(
    (
        Family(
            "contact",
            Contact,
            ("created", "updated", "deleted", "subscribed", "unsubscribed"),
            sample={
                "id": "con_456def",
                "email": "john@example.com",
                "first_name": "John",
                "last_name": "Doe",
                "phone": "+44 20 7946 0958",
                "company": "Acme Ltd",
                "tags": ["newsletter", "trial"],
                "lists": ["lst_01h2x"],
                "created_at": "2024-01-15T10:29:58Z",
            },
            action_samples={
                "updated": {"changed": ["phone"]},
                "deleted": {"deleted": True},
                "subscribed": {"list_id": "lst_01h2x", "source": "signup_form"},
                "unsubscribed": {"list_id": "lst_01h2x", "reason": "too_frequent"},
            },
        ),
        Family(
            "campaign",
            Campaign,
            ("created", "scheduled", "sent", "completed"),
            sample={
                "id": "cmp_789ghi",
                "name": "January product update",
                "subject": "What's new in January",
                "from_email": "news@example.com",
                "list_ids": ["lst_01h2x"],
                "status": "draft",
                "recipients": 1250,
            },
            action_samples={
                "scheduled": {"status": "scheduled", "scheduled_at": "2024-01-16T09:00:00Z"},
                "sent": {"status": "sending", "sent_at": "2024-01-16T09:00:02Z"},
                "completed": {"status": "sent", "delivered": 1231, "bounced": 19},
            },
        ),
        Family(
            "email",
            Email,
            ("delivered", "opened", "clicked", "bounced", "complained"),
            sample={
                "id": "eml_321jkl",
                "campaign_id": "cmp_789ghi",
                "contact_id": "con_456def",
                "to": "john@example.com",
                "subject": "What's new in January",
                "sent_at": "2024-01-15T10:00:00Z",
            },
            action_samples={
                "delivered": {"delivered_at": "2024-01-16T09:00:05Z"},
                "opened": {"opened_at": "2024-01-16T09:12:44Z", "user_agent": "Mozilla/5.0"},
                "clicked": {
                    "url": "https://example.com/pricing",
                    "clicked_at": "2024-01-16T09:13:02Z",
                },
                "bounced": {"bounce_type": "hard", "reason": "550 5.1.1 mailbox does not exist"},
                "complained": {"feedback_type": "abuse", "reported_at": "2024-01-16T11:40:00Z"},
            },
        ),
        Family(
            "deal",
            Deal,
            ("created", "updated", "stage_changed", "won", "lost"),
            sample={
                "id": "deal_654mno",
                "name": "Acme Ltd annual plan",
                "value": 12000,
                "currency": "GBP",
                "stage": "proposal",
                "pipeline": "sales",
                "contact_id": "con_456def",
                "client_id": "cli_987pqr",
                "owner": "usr_12",
            },
            action_samples={
                "updated": {"changed": ["value"], "value": 14000},
                "stage_changed": {"previous_stage": "qualified", "stage": "proposal"},
                "won": {"stage": "won", "closed_at": "2024-01-20T16:05:00Z"},
                "lost": {
                    "stage": "lost",
                    "lost_reason": "budget",
                    "closed_at": "2024-01-20T16:05:00Z",
                },
            },
        ),
        Family(
            "client",
            Client,
            ("created", "updated", "deleted"),
            sample={
                "id": "cli_987pqr",
                "name": "Acme Ltd",
                "domain": "acme.example",
                "industry": "Manufacturing",
                "owner": "usr_12",
            },
            action_samples={"updated": {"changed": ["industry"]}, "deleted": {"deleted": True}},
        ),
    )
)
"""The families the sender documents (SENDER-CONTRACT.md), in its order."""
