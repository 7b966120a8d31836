"""Read-only admin for the inbox, with "replay" and "mark resolved" actions.

Ids, types, errors and bodies are signed but still foreign text: besides Django's HTML
escaping, control characters are shown as escapes (``\\x1b``, ``\\r\\n``) so that an
id cannot hide part of itself, break a line or reach a terminal through a copy-paste.
Text columns hold what the core's codec stored (``load_text`` reads it back); lone
surrogates, which no page can encode, are shown as escapes too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..._text import printable
from ...inbox.base import (
    REPLAYABLE,
    RESOLVABLE,
    Status,
    load_secrets,
    load_text,
    masked_secret,
    values,
)
from .endpoint import get_receiver
from .models import ResourceMark, WebhookEndpoint, WebhookEvent
from .store import DjangoStore

#: How much of a quarantine reason the list shows (the detail page shows all of it).
REASON_CHARS = 80


def _statuses(statuses: frozenset[Status]) -> str:
    names = values(statuses)
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


def shown(value: str | None) -> str:
    """A stored text column as a page shows it: decoded, control characters escaped."""
    return "" if value is None else printable(load_text(value))


def pretty_json(raw: bytes) -> str:
    """A body for a page: indented JSON with sorted keys when it parses without a
    duplicated key, else the body as received with a note why; every control, bidi and
    invisible character, NUL and lone surrogate shown as an escape. Never raises.

    >>> print(pretty_json(b'{"b": "\\u202e", "a": 1}'))
    {
      "a": 1,
      "b": "\\u202e"
    }
    >>> print(pretty_json(b'{"id": "first", "id": "second"}'))
    (a key appears twice: shown as received)
    {"id": "first", "id": "second"}
    """
    duplicated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in items]
        if len(set(keys)) < len(keys):
            duplicated.append("")
        return dict(items)

    note = ""
    try:
        value = json.loads(raw, object_pairs_hook=pairs)
        if not duplicated:
            # json.dumps writes control characters inside strings as \u escapes; the
            # rest (bidi, surrogates, separators) is left to printable, line by line so
            # the indentation stays.
            text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
            return "\n".join(printable(line) for line in text.split("\n"))
        note = "(a key appears twice: shown as received)\n"
    except (ValueError, RecursionError):
        pass  # a quarantined body: shown as text
    lines = raw.decode("utf-8", "replace").split("\n")
    return note + "\n".join(printable(line) for line in lines)


class PrintableValuesFilter(admin.AllValuesFieldListFilter):
    """The stock "all values" filter, its labels decoded and escaped."""

    # Iterator[Any]: the stock filter's item type is a django-stubs name, not Django's.
    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        for choice in super().choices(changelist):
            display = choice["display"]
            choice["display"] = shown(display) if isinstance(display, str) else display
            yield choice


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "shown_id",
        "endpoint",
        "shown_type",
        "shown_status",
        "created_at",
        "received_at",
        "attempts",
        "deliveries",
    )
    list_filter = (
        "status",
        ("endpoint", PrintableValuesFilter),
        ("type", PrintableValuesFilter),
    )
    search_fields = ("=event_id", "=resource_id")
    date_hierarchy = "received_at"
    actions = ("replay", "mark_resolved")
    fields = (
        "shown_id",
        "endpoint",
        "shown_type",
        "shown_resource_id",
        "shown_status",
        "created_at",
        "received_at",
        "processed_at",
        "attempts",
        "deliveries",
        "shown_error",
        "handler_outcomes",
        "pretty_body",
    )
    readonly_fields = fields

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The list, under a line of counts by status (of the endpoint filtered on, else
        of every endpoint): what is pending, failing, dead, quarantined at a glance."""
        context = {"subtitle": self.status_counts(request), **(extra_context or {})}
        return super().changelist_view(request, context)

    def status_counts(self, request: HttpRequest) -> str:
        endpoint = request.GET.get("endpoint__exact") or request.GET.get("endpoint")
        store = DjangoStore(self.get_queryset(request).db)
        try:
            counts = store.stats(endpoint=load_text(endpoint) if endpoint else None)
        except Exception:  # the list itself shows the database error better
            return ""
        where = f"endpoint {shown(endpoint)}" if endpoint else "all endpoints"
        by_status = " · ".join(f"{status.value} {counts.get(status, 0)}" for status in Status)
        return f"{where}: {by_status}"

    # Events are written by the receiver only; people look, replay and resolve.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_replay_permission(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return bool(user.has_perm("iverton_webhooks.change_webhookevent"))

    @admin.display(description="event id", ordering="event_id")
    def shown_id(self, obj: WebhookEvent) -> str:
        return shown(obj.event_id)

    @admin.display(description="type", ordering="type")
    def shown_type(self, obj: WebhookEvent) -> str:
        return shown(obj.type)

    @admin.display(description="resource id")
    def shown_resource_id(self, obj: WebhookEvent) -> str:
        # Stored escaped already (events.resource_id_of): what is shown is what is searched.
        return printable(obj.resource_id)

    @admin.display(description="last error")
    def shown_error(self, obj: WebhookEvent) -> str:
        return shown(obj.last_error)

    @admin.display(description="status", ordering="status")
    def shown_status(self, obj: WebhookEvent) -> str:
        """The status; a quarantined event shows why, an unhandled one what it means."""
        if obj.status == Status.QUARANTINED.value and obj.last_error:
            reason = shown(obj.last_error)
            if len(reason) > REASON_CHARS:
                reason = reason[: REASON_CHARS - 1] + "…"
            return f"quarantined: {reason}"
        if obj.status == Status.UNHANDLED.value:
            return "unhandled: no handler for this type"
        return obj.status

    @admin.display(description="body")
    def pretty_body(self, obj: WebhookEvent) -> SafeString:
        return format_html("<pre>{}</pre>", pretty_json(bytes(obj.body)))

    @admin.display(description="handler outcomes")
    def handler_outcomes(self, obj: WebhookEvent) -> SafeString:
        outcomes: dict[str, dict[str, Any]] = obj.outcomes or {}
        if not outcomes:
            return format_html("<p>{}</p>", "no handler has run yet")
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    shown(name),
                    "superseded" if o.get("superseded") else "ok" if o.get("ok") else "failed",
                    shown(o.get("error") or ""),
                )
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
        keys = list(queryset.values_list("endpoint", "event_id"))
        receiver = get_receiver()
        store = DjangoStore(queryset.db)
        replayed = 0
        for endpoint, event_id in keys:
            if endpoint == receiver.endpoint:
                # Requeued and handed to this process's runner at once.
                replayed += receiver.replay(event_id)
            else:
                # Another endpoint's receiver picks it up when it next looks for due work.
                replayed += store.replay(event_id, endpoint=endpoint)
        self.message_user(request, f"Replayed {replayed} of {len(keys)} events.", messages.SUCCESS)
        if replayed < len(keys):
            self.message_user(
                request,
                f"Only {_statuses(REPLAYABLE)} events can be replayed "
                "(pending and processing ones are already queued).",
                messages.WARNING,
            )

    @admin.action(description="Mark selected events resolved", permissions=["replay"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        keys = list(queryset.values_list("endpoint", "event_id"))
        store = DjangoStore(queryset.db)
        resolved = sum(store.resolve(event_id, endpoint=endpoint) for endpoint, event_id in keys)
        self.message_user(request, f"Resolved {resolved} of {len(keys)} events.", messages.SUCCESS)
        if resolved < len(keys):
            self.message_user(
                request, f"Only {_statuses(RESOLVABLE)} events can be resolved.", messages.WARNING
            )


def _epoch(value: float | None) -> str:
    return "" if value is None else datetime.fromtimestamp(value, timezone.utc).isoformat()


@admin.register(ResourceMark)
class ResourceMarkAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Newest-only marks, to look at only: the store alone writes them."""

    list_display = (
        "shown_endpoint",
        "shown_resource",
        "shown_handler",
        "applied_time",
        "shown_applied_id",
        "shown_holder",
    )
    search_fields = ("=resource",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="endpoint", ordering="endpoint")
    def shown_endpoint(self, obj: ResourceMark) -> str:
        return shown(obj.endpoint)

    @admin.display(description="resource", ordering="resource")
    def shown_resource(self, obj: ResourceMark) -> str:
        return shown(obj.resource)

    @admin.display(description="handler", ordering="handler")
    def shown_handler(self, obj: ResourceMark) -> str:
        return shown(obj.handler)

    @admin.display(description="applied event created (UTC)", ordering="applied_at")
    def applied_time(self, obj: ResourceMark) -> str:
        return _epoch(obj.applied_at)

    @admin.display(description="applied event id")
    def shown_applied_id(self, obj: ResourceMark) -> str:
        return shown(obj.applied_id)

    @admin.display(description="holder")
    def shown_holder(self, obj: ResourceMark) -> str:
        return shown(obj.holder)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Endpoints kept in the database, to look at: secrets are shown masked (their
    first characters only), never whole, on every page."""

    list_display = ("shown_name", "enabled", "shown_secrets", "created_at", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("=name",)
    # Never the secrets column itself: the detail page shows the same masked list.
    fields = list_display
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="name", ordering="name")
    def shown_name(self, obj: WebhookEndpoint) -> str:
        return shown(obj.name)

    @admin.display(description="secrets")
    def shown_secrets(self, obj: WebhookEndpoint) -> str:
        """Each secret masked, the current one first, the others with when they end."""
        shown_each = [
            printable(masked_secret(s.secret))
            + (" current" if s.valid_until is None else f" until {_until(s.valid_until)}")
            for s in load_secrets(obj.secrets)
        ]
        return "; ".join(shown_each) or "none (rotate to set one)"


def _until(epoch: float) -> str:
    # Any grace period may be asked for: a time past what a datetime holds is a number.
    try:
        return _epoch(epoch)
    except (OverflowError, ValueError, OSError):
        return repr(epoch)
