"""Read-only admin for the inbox, with "replay" and "mark resolved" actions; registered
endpoints, added, rotated, enabled, disabled and deleted through the store.

Ids, types, errors and bodies are signed but still foreign text: besides Django's HTML
escaping, control characters are shown as escapes (``\\x1b``, ``\\r\\n``) so that an
id cannot hide part of itself, break a line or reach a terminal through a copy-paste.
Text columns hold what the core's codec stored (``load_text`` reads it back); lone
surrogates, which no page can encode, are shown as escapes too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import router
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.debug import sensitive_post_parameters

from ..._directory import check_endpoint_name
from ..._errors import ConfigurationError
from ..._operations import unfinished_events
from ..._settings import ROTATION_GRACE
from ..._signature import validate_secrets
from ..._text import printable
from ...inbox.base import (
    REPLAYABLE,
    RESOLVABLE,
    Status,
    load_secrets,
    load_text,
    masked_secret,
    store_text,
    values,
)
from . import conf
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


def _text_column(field: str, description: str, *, sortable: bool = True) -> Callable[..., str]:
    """An admin column showing the stored text ``field`` as `shown` does."""

    @admin.display(description=description, ordering=field if sortable else None)
    def column(self: admin.ModelAdmin[Any], obj: Any) -> str:
        return shown(getattr(obj, field))

    return column


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


class _LookOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows the library alone writes: people look, and act through the actions."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PrintableValuesFilter(admin.AllValuesFieldListFilter):
    """The stock "all values" filter, its labels decoded and escaped."""

    # Iterator[Any]: the stock filter's item type is a django-stubs name, not Django's.
    def choices(self, changelist: ChangeList) -> Iterator[Any]:
        for choice in super().choices(changelist):
            display = choice["display"]
            choice["display"] = shown(display) if isinstance(display, str) else display
            yield choice


@admin.register(WebhookEvent)
class WebhookEventAdmin(_LookOnly):
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

    def has_replay_permission(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return bool(user.has_perm("iverton_webhooks.change_webhookevent"))

    shown_id = _text_column("event_id", "event id")
    shown_type = _text_column("type", "type")
    shown_error = _text_column("last_error", "last error", sortable=False)

    @admin.display(description="resource id")
    def shown_resource_id(self, obj: WebhookEvent) -> str:
        # Stored escaped already (events.resource_id_of): what is shown is what is searched.
        return printable(obj.resource_id)

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


@admin.register(ResourceMark)
class ResourceMarkAdmin(_LookOnly):
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
    shown_endpoint = _text_column("endpoint", "endpoint")
    shown_resource = _text_column("resource", "resource")
    shown_handler = _text_column("handler", "handler")
    shown_applied_id = _text_column("applied_id", "applied event id", sortable=False)
    shown_holder = _text_column("holder", "holder", sortable=False)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="applied event created (UTC)", ordering="applied_at")
    def applied_time(self, obj: ResourceMark) -> str:
        return "" if obj.applied_at is None else _utc(obj.applied_at)


def _secret_field(label: str, help_text: str) -> forms.CharField:
    """A signing secret: typed, never shown back, checked by the core."""
    return forms.CharField(
        label=label,
        strip=False,  # the core refuses surrounding whitespace rather than guessing
        widget=forms.PasswordInput(render_value=False),
        help_text=help_text,
        validators=[lambda secret: _valid(validate_secrets, [secret])],
    )


class EndpointAddForm(forms.ModelForm):  # type: ignore[type-arg]
    """A new endpoint: its name and its first secret."""

    secret = _secret_field(
        "signing secret", "The endpoint's signing secret from the Iverton dashboard (whsec_...)."
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("name",)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        _valid(check_endpoint_name, name)
        try:
            own = conf.read(conf.options()).endpoint
        except ConfigurationError:
            own = None  # the system checks report the setting
        if name == own:
            raise ValidationError(
                f"{name!r} is the name of the endpoint in settings.{conf.SETTING}, which "
                "would answer its requests instead: pick another name."
            )
        return str(name)


class EndpointRotateForm(forms.ModelForm):  # type: ignore[type-arg]
    """A rotation: the new secret, and how long the current one is still accepted."""

    new_secret = _secret_field(
        "new signing secret", "The secret the Iverton dashboard now shows for this endpoint."
    )
    grace = forms.DurationField(
        label="grace period",
        initial=ROTATION_GRACE,
        validators=[MinValueValidator(timedelta(0), "The grace period cannot be negative.")],
        help_text=(
            "How long the current secret is still accepted ([days] hh:mm:ss). The default "
            "outlasts the sender's retries of deliveries signed before the rotation; "
            "0 refuses it within seconds, for a secret that has leaked."
        ),
    )

    class Meta:
        model = WebhookEndpoint
        fields = ()


def _valid(check: Callable[[Any], Any], value: Any) -> Any:
    """``check(value)``, its `ConfigurationError` as the form's error (the core's
    messages name a secret by position, never by value)."""
    try:
        return check(value)
    except ConfigurationError as exc:
        raise ValidationError(str(exc)) from None


def _store(obj: WebhookEndpoint | None = None) -> DjangoStore:
    """The registry holding ``obj`` (or where a new endpoint is written)."""
    return DjangoStore(router.db_for_write(WebhookEndpoint, instance=obj))


@admin.register(WebhookEndpoint)
@method_decorator(sensitive_post_parameters("secret", "new_secret"), name="changeform_view")
class WebhookEndpointAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Endpoints kept in the database. Every write goes through the store's registry
    (add, rotate, enable, disable, remove), the one place its rules live; secrets are
    typed into password fields, never rendered back, kept out of Django's error reports
    and shown masked (`masked_secret`) on every page and in no history message."""

    list_display = (
        "shown_name",
        "enabled",
        "shown_secrets",
        "shown_url",
        "created_at",
        "updated_at",
    )
    list_filter = ("enabled",)
    search_fields = ("=name",)
    actions = ("enable", "disable")
    # Never the secrets column itself: the detail page shows the same masked list.
    readonly_fields = list_display

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": ("name", "secret")})]
        if not self.has_change_permission(request, obj):
            return [(None, {"fields": self.readonly_fields})]
        return [
            (None, {"fields": self.readonly_fields}),
            ("Rotate the signing secret", {"fields": ("new_secret", "grace")}),
        ]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = EndpointAddForm if obj is None else EndpointRotateForm
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            store = _store(obj)
            grace = data["grace"].total_seconds()
            if not store.rotate_endpoint(load_text(obj.name), data["new_secret"], grace):
                self.message_user(request, "The endpoint was removed meanwhile.", messages.ERROR)
            return
        store = _store()
        if not store.add_endpoint(data["name"], data["secret"]):
            self.message_user(
                request,
                "An endpoint with this name was added meanwhile: its secret was kept.",
                messages.WARNING,
            )
        # The row the store wrote, so Django's history and redirect point at it.
        written = WebhookEndpoint.objects.using(store.using).get(name=store_text(data["name"]))
        obj.pk = written.pk

    def construct_change_message(
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> Any:
        if add:
            return super().construct_change_message(request, form, formsets, add)
        return (
            "Rotated the signing secret; the previous one is accepted for "
            f"{form.cleaned_data['grace']} more."
        )

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        # An endpoint whose events are not all finished is shown as protected, so the
        # admin refuses to delete it: once removed, no worker would process them.
        deleted, counts, perms, protected = super().get_deleted_objects(objs, request)
        for obj in objs:
            unfinished = unfinished_events(_store(obj), load_text(obj.name))
            if unfinished:
                protected.append(
                    f"{printable(load_text(obj.name))}: {unfinished} unfinished event(s); "
                    "disable it now and delete it once they are finished"
                )
        return deleted, counts, perms, protected

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        _store(obj).remove_endpoint(load_text(obj.name))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    @admin.action(description="Enable selected endpoints", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected endpoints", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        self._set_enabled(request, queryset, False)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint], enabled: bool
    ) -> None:
        store = DjangoStore(queryset.db)
        rows = list(queryset)
        done = "Enabled" if enabled else "Disabled"
        changed = 0
        for row in rows:
            if store.set_endpoint_enabled(load_text(row.name), enabled):
                changed += 1
                self.log_change(request, row, f"{done}.")
        self.message_user(request, f"{done} {changed} of {len(rows)} endpoints.", messages.SUCCESS)

    shown_name = _text_column("name", "name")

    @admin.display(description="secrets")
    def shown_secrets(self, obj: WebhookEndpoint) -> str:
        """Each secret masked, the current one first, the others with when they end."""
        shown_each = [
            printable(masked_secret(s.secret))
            + (" current" if s.valid_until is None else f" until {_utc(s.valid_until)}")
            for s in load_secrets(obj.secrets)
        ]
        return "; ".join(shown_each) or "none (rotate to set one)"

    @admin.display(description="URL")
    def shown_url(self, obj: WebhookEndpoint) -> str:
        """Where the sender posts this endpoint's events (from the included URLs)."""
        try:
            return reverse("iverton_webhooks:receive", kwargs={"name": load_text(obj.name)})
        except NoReverseMatch:  # not included, or a name no URL can carry
            return ""


def _utc(epoch: float) -> str:
    # Any grace period may be asked for: a time past what a datetime holds is a number.
    try:
        return datetime.fromtimestamp(epoch, timezone.utc).isoformat()
    except (OverflowError, ValueError, OSError):
        return repr(epoch)
