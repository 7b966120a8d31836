"""The inbox table: one row per received event, in the project's own database."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.db import models

from ..._text import printable
from ...inbox.base import DEFAULT_ENDPOINT, Status, load_text

#: Longest endpoint name: endpoints are names a developer picks, not sender input.
ENDPOINT_MAX_LENGTH = 100
#: Longest id and type the envelope accepts (``events._ID``); a longer one never gets here.
KEY_MAX_LENGTH = 255


class WebhookEvent(models.Model):
    """A received Iverton event and where it stands. Written only through ``DjangoStore``."""

    # An integer key gives the arrival order for listing (the SQLite store uses its rowid).
    id: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    endpoint: models.CharField[str, str] = models.CharField(
        max_length=ENDPOINT_MAX_LENGTH, default=DEFAULT_ENDPOINT
    )
    # Unique per endpoint (see Meta.constraints), not across the table.
    event_id: models.CharField[str, str] = models.CharField("event id", max_length=KEY_MAX_LENGTH)
    type: models.CharField[str, str] = models.CharField(max_length=KEY_MAX_LENGTH)
    resource_id: models.CharField[str, str] = models.CharField(
        "resource id", max_length=255, blank=True, default=""
    )
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField("created")
    received_at: models.DateTimeField[datetime, datetime] = models.DateTimeField("received")
    body: models.BinaryField[bytes, bytes | memoryview] = models.BinaryField()
    status: models.CharField[str, str] = models.CharField(
        max_length=16,
        choices=[(s.value, s.value) for s in Status],
        default=Status.PENDING.value,
    )
    attempts: models.PositiveIntegerField[int, int] = models.PositiveIntegerField(default=0)
    deliveries: models.PositiveIntegerField[int, int] = models.PositiveIntegerField(default=1)
    # Epoch seconds: worker bookkeeping compared against the store's clock, never shown raw.
    due_at: models.FloatField[float | None, float | None] = models.FloatField(null=True, blank=True)
    next_attempt_at: models.FloatField[float | None, float | None] = models.FloatField(
        null=True, blank=True
    )
    lease_until: models.FloatField[float | None, float | None] = models.FloatField(
        null=True, blank=True
    )
    lease_token: models.CharField[str | None, str | None] = models.CharField(
        max_length=32, null=True, blank=True
    )
    processed_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        "processed", null=True, blank=True
    )
    last_error: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    outcomes: models.JSONField[dict[str, Any], dict[str, Any]] = models.JSONField(
        default=dict, blank=True
    )

    objects: ClassVar[models.Manager[WebhookEvent]] = models.Manager()

    class Meta:
        app_label = "iverton_webhooks"
        verbose_name = "webhook event"
        ordering = ("-id",)
        constraints = (
            # What makes record() an atomic insert-if-absent, per endpoint. The id leads,
            # so the admin's search by id alone (every endpoint) uses this index too.
            models.UniqueConstraint(
                fields=["event_id", "endpoint"], name="iverton_webhooks_endpoint_event"
            ),
        )
        indexes = (
            # What workers look for: an endpoint's unfinished events whose time has come.
            # Partial, so it stays small however long the history (ignored where
            # unsupported). due_at is NULL exactly when an event is finished (the core's
            # transitions write it so), and "due_at <= now" implies NOT NULL, so the due
            # queries use it. A status list here made SQLite build a scratch table on
            # every insert to test the row against it.
            models.Index(
                fields=["endpoint", "due_at"],
                name="iverton_webhooks_due_v3",
                condition=models.Q(due_at__isnull=False),
            ),
        )

    def __str__(self) -> str:
        # Shown by the admin in titles, breadcrumbs and messages: control characters escaped.
        return f"{printable(load_text(self.event_id))} ({printable(load_text(self.type))})"


class FailedAnswers(models.Model):
    """Non-2xx answers in a row per endpoint, shared by every process serving it: the
    disablement warning fires at the third (the sender gives up at the fifth)."""

    endpoint: models.CharField[str, str] = models.CharField(
        max_length=ENDPOINT_MAX_LENGTH, primary_key=True
    )
    failures: models.PositiveIntegerField[int, int] = models.PositiveIntegerField(default=0)
    kind: models.CharField[str, str] = models.CharField(max_length=32, blank=True, default="")

    objects: ClassVar[models.Manager[FailedAnswers]] = models.Manager()

    class Meta:
        app_label = "iverton_webhooks"
        verbose_name = "failed answers in a row"
        verbose_name_plural = "failed answers in a row"


class ResourceMark(models.Model):
    """A newest-only handler's mark on one resource of one endpoint: the newest event it
    applied and who holds the mark now. Written only through ``DjangoStore``."""

    endpoint: models.CharField[str, str] = models.CharField(max_length=ENDPOINT_MAX_LENGTH)
    resource: models.CharField[str, str] = models.CharField(max_length=KEY_MAX_LENGTH)
    handler: models.CharField[str, str] = models.CharField(max_length=KEY_MAX_LENGTH)
    # Epoch seconds, compared exactly: the event's created_at and the store's clock.
    applied_at: models.FloatField[float | None, float | None] = models.FloatField(
        "applied event created", null=True, blank=True
    )
    applied_id: models.CharField[str | None, str | None] = models.CharField(
        "applied event id", max_length=KEY_MAX_LENGTH, null=True, blank=True
    )
    holder: models.CharField[str | None, str | None] = models.CharField(
        max_length=KEY_MAX_LENGTH, null=True, blank=True
    )
    hold_until: models.FloatField[float | None, float | None] = models.FloatField(
        null=True, blank=True
    )

    objects: ClassVar[models.Manager[ResourceMark]] = models.Manager()

    class Meta:
        app_label = "iverton_webhooks"
        verbose_name = "resource mark"
        constraints = (
            models.UniqueConstraint(
                fields=["endpoint", "resource", "handler"], name="iverton_webhooks_mark_key"
            ),
        )

    def __str__(self) -> str:
        return f"{printable(load_text(self.resource))} ({printable(load_text(self.handler))})"


class WebhookEndpoint(models.Model):
    """An endpoint kept in the database (the ``EndpointRegistry`` part of the store): its
    signing secrets, current first, and whether it takes requests. Written only through
    ``DjangoStore``; no page shows a secret whole."""

    name: models.CharField[str, str] = models.CharField(max_length=ENDPOINT_MAX_LENGTH, unique=True)
    # JSON text as the core's base.dump_secrets writes it (every secret through the text
    # codec): each secret, and until when an earlier one is still accepted (epoch seconds).
    secrets: models.TextField[str, str] = models.TextField()
    enabled: models.BooleanField[bool, bool] = models.BooleanField(default=True)
    created_at: models.DateTimeField[datetime, datetime] = models.DateTimeField("created")
    updated_at: models.DateTimeField[datetime, datetime] = models.DateTimeField("updated")

    objects: ClassVar[models.Manager[WebhookEndpoint]] = models.Manager()

    class Meta:
        app_label = "iverton_webhooks"
        verbose_name = "webhook endpoint"
        ordering = ("name",)

    def __str__(self) -> str:
        return printable(load_text(self.name))
