"""The inbox table: one row per received event, in the project's own database."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from django.db import models

from ...inbox.base import Status

#: Statuses a worker may claim; the ``due_at`` index covers only these rows.
CLAIMABLE = (Status.PENDING.value, Status.FAILED.value, Status.PROCESSING.value)
FINISHED = (Status.DONE.value, Status.DEAD.value)


class WebhookEvent(models.Model):
    """A received Iverton event and where it stands. Written only through ``DjangoStore``."""

    # An integer key gives the arrival order for listing (the SQLite store uses its rowid).
    id: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    event_id: models.CharField[str, str] = models.CharField("event id", max_length=255, unique=True)
    type: models.CharField[str, str] = models.CharField(max_length=100)
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
        indexes = (
            # What workers look for: unfinished events whose time has come. Partial, so it
            # stays small however long the history (ignored where unsupported).
            models.Index(
                fields=["due_at"],
                name="iverton_webhooks_due",
                condition=models.Q(status__in=CLAIMABLE),
            ),
        )

    def __str__(self) -> str:
        return f"{self.event_id} ({self.type})"
