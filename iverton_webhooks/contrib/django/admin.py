"""Read-only admin for the inbox, with "replay" and "mark resolved" actions."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from .endpoint import get_receiver
from .models import WebhookEvent


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "event_id",
        "type",
        "status",
        "created_at",
        "received_at",
        "attempts",
        "deliveries",
    )
    list_filter = ("status", "type")
    search_fields = ("=event_id", "=resource_id")
    date_hierarchy = "received_at"
    actions = ("replay", "mark_resolved")
    fields = (
        "event_id",
        "type",
        "resource_id",
        "status",
        "created_at",
        "received_at",
        "processed_at",
        "attempts",
        "deliveries",
        "last_error",
        "handler_outcomes",
        "pretty_body",
    )
    readonly_fields = fields

    # Events are written by the receiver only; people look, replay and resolve.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_replay_permission(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return bool(user.has_perm("iverton_webhooks.change_webhookevent"))

    @admin.display(description="body")
    def pretty_body(self, obj: WebhookEvent) -> SafeString:
        raw = bytes(obj.body)
        try:
            text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=True)
        except ValueError:
            text = raw.decode("utf-8", "replace")
        return format_html("<pre>{}</pre>", text)

    @admin.display(description="handler outcomes")
    def handler_outcomes(self, obj: WebhookEvent) -> SafeString:
        outcomes: dict[str, dict[str, Any]] = obj.outcomes or {}
        if not outcomes:
            return format_html("<p>{}</p>", "no handler has run yet")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (name, "ok" if o.get("ok") else "failed", o.get("error") or "")
                for name, o in sorted(outcomes.items())
            ),
        )
        return format_html(
            "<table><thead><tr><th>handler</th><th>result</th><th>error</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.action(description="Replay selected events", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        receiver = get_receiver()
        ids = list(queryset.values_list("event_id", flat=True))
        replayed = sum(receiver.replay(event_id) for event_id in ids)
        self.message_user(request, f"Replayed {replayed} of {len(ids)} events.", messages.SUCCESS)
        if replayed < len(ids):
            self.message_user(
                request, "Pending and processing events cannot be replayed.", messages.WARNING
            )

    @admin.action(description="Mark selected events resolved", permissions=["replay"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        store = get_receiver().store
        ids = list(queryset.values_list("event_id", flat=True))
        resolved = sum(store.resolve(event_id) for event_id in ids)
        self.message_user(request, f"Resolved {resolved} of {len(ids)} events.", messages.SUCCESS)
        if resolved < len(ids):
            self.message_user(
                request, "Only failed and dead events can be resolved.", messages.WARNING
            )
