"""System checks (``manage.py check``; those tagged ``database`` run with ``check
--database <alias>``). The settings are checked by building them (`Settings`), so a
check and the receiver never disagree: its errors are translated here, not restated.

Ids: E001 no secret, E002 an unusable secret, E003/E004 retention and max_age against
the sender's retries, E005 any other unusable setting, W006 unknown keys, W007 the
inbox tables, W008 a handler module under the old name, W009 SQLite not in WAL mode,
W010 the URL prefix, W011 what the store says it cannot keep, W012 a webhook URL
answered as a registered endpoint of another pattern."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.urls import URLPattern, URLResolver, get_resolver

from ..._errors import ConfigurationError
from ..._health import store_warnings
from ..._settings import RetentionError, SettingError
from . import conf, discovery
from .conf import SETTING
from .endpoint import _endpoints, default_endpoint
from .models import WebhookEndpoint, WebhookEvent
from .store import MIGRATE_HINT
from .urls import WebhookPattern


@register("iverton_webhooks")
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    try:
        opts = conf.options()
    except ConfigurationError as exc:
        return [_unusable(exc)]
    messages: list[CheckMessage] = []
    try:
        settings = conf.read(opts)
        # With the registry, registered endpoints have their own secrets: the
        # setting's is then only for the included URL itself (404 without one).
        if not settings.secrets and not settings.endpoint_registry:
            messages.append(
                Error(
                    _no_secret(opts),
                    hint=(
                        f'Set {SETTING} = {{"SECRET": os.environ["IVERTON_WEBHOOK_SECRET"]}} '
                        "with the endpoint's signing secret from the Iverton dashboard "
                        '(whsec_...), or "SECRETS": [new, old] while rotating; or '
                        '"ENDPOINT_REGISTRY": True to serve only endpoints kept in the '
                        "database (/webhooks/iverton/<name>)."
                    ),
                    id="iverton_webhooks.E001",
                )
            )
    except SettingError as exc:
        messages.append(_unusable(exc))
    try:
        conf.router(opts.get("ROUTER"))
    except (ConfigurationError, ImportError) as exc:
        messages.append(_unusable(exc))
    unknown = sorted(set(opts) - conf.KNOWN_KEYS)
    if unknown:
        messages.append(
            Warning(
                f"{SETTING} has unknown keys: {', '.join(unknown)}",
                hint=f"Known keys: {', '.join(sorted(conf.KNOWN_KEYS))}.",
                id="iverton_webhooks.W006",
            )
        )
    return messages


def _unusable(exc: Exception) -> Error:
    """The error for a setting that cannot be used, with the id of its kind (the core's
    message says what to fix)."""
    if isinstance(exc, SettingError) and exc.setting == "secrets":
        return Error(
            str(exc),
            hint=(
                f'Set {SETTING} = {{"SECRETS": [os.environ["IVERTON_WEBHOOK_SECRET"]]}} '
                "(a list, newest first while rotating), or "
                '{"SECRET": os.environ["IVERTON_WEBHOOK_SECRET"]} for one secret, with the '
                "endpoint's signing secret copied exactly from the Iverton dashboard."
            ),
            id="iverton_webhooks.E002",
        )
    if isinstance(exc, RetentionError):
        kind = "E003" if exc.setting == "retention" else "E004"
        return Error(str(exc), id=f"iverton_webhooks.{kind}")
    return Error(str(exc), id="iverton_webhooks.E005")


def _no_secret(opts: dict[str, Any]) -> str:
    # An unset environment variable read with a default of "" gives a blank secret, not a
    # missing key: say which, so the user looks at the environment rather than settings.
    if opts.get("SECRET") == "":
        return (
            f"The Iverton webhook secret is blank: settings.{SETTING}['SECRET'] is an empty "
            "string (is the environment variable it is read from set in this process?)."
        )
    if "SECRETS" in opts and not opts["SECRETS"] and opts.get("SECRET") is None:
        return f"No Iverton webhook secret: settings.{SETTING}['SECRETS'] is empty."
    return f"No Iverton webhook secret: settings.{SETTING} has no SECRET."


@register(Tags.compatibility)
def check_handler_modules(**kwargs: Any) -> list[CheckMessage]:
    """A bad ``AUTODISCOVER``, and handler modules still under the older, shared name."""
    try:
        opts = conf.options()
    except ConfigurationError:
        return []  # reported by check_settings
    try:
        names = discovery.module_names(opts)
    except ConfigurationError as exc:
        return [_unusable(exc)]
    if names is not None:
        return []  # the modules to import are named: nothing is guessed
    return [
        Warning(
            f"{dotted} holds webhook handlers under the old module name "
            f"{discovery.LEGACY_MODULE!r}: it is still imported because it mentions "
            "iverton_webhooks, but other libraries use that name too.",
            hint=(
                f"Rename it to {dotted.rpartition('.')[0]}.{discovery.DEFAULT_MODULE}, or "
                f'name it in {SETTING}["AUTODISCOVER"] = ["{discovery.DEFAULT_MODULE}", '
                f'"{discovery.LEGACY_MODULE}"].'
            ),
            id="iverton_webhooks.W008",
        )
        for dotted in discovery.legacy_modules(apps.get_app_configs())
    ]


def _inbox_connection(databases: Sequence[str] | None) -> BaseDatabaseWrapper | None:
    """The inbox database's connection, when ``check --database`` asked for it (database
    checks run only for the databases named) and the settings name one that exists."""
    try:
        alias = conf.database(conf.options())
    except ConfigurationError:
        return None  # reported by check_settings
    if not databases or alias not in databases or alias not in connections:
        return None
    return connections[alias]


@register(Tags.database)
def check_inbox_table(databases: Sequence[str] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The inbox table exists with every column of the current model, and so does the
    endpoints table when the registry is on.

    A Warning, not an Error: ``migrate`` runs the database checks before migrating, and
    an Error would stop the very command that fixes it. Under ``migrate`` itself the
    check is silent: telling the user to run the command they are running is noise.
    """
    # The subcommand is argv[1] for manage.py, django-admin and python -m django alike
    # (Django's ManagementUtility reads it there). call_command("migrate") skips the
    # system checks unless asked, so a command-line run is the case to recognise.
    connection = _inbox_connection(databases)
    if sys.argv[1:2] == ["migrate"] or connection is None:
        return []
    try:
        registry = conf.read(conf.options()).endpoint_registry
    except ConfigurationError:
        registry = False  # reported by check_settings
    tables: list[tuple[Any, str, str]] = [(WebhookEvent, "inbox", "every webhook")]
    if registry:
        tables.append((WebhookEndpoint, "endpoints", "every request to a registered endpoint"))
    alias = connection.alias
    where = "" if alias == "default" else f" (with --database {alias})"
    messages: list[CheckMessage] = []
    for model, kind, harmed in tables:
        table = model._meta.db_table
        missing = _missing(connection, model)
        if missing is None:
            return []  # an unreachable database is not ours to report
        if not missing:
            continue
        messages.append(
            Warning(
                f"The webhook {kind} table {table!r} {missing} in database {alias!r}: "
                f"{harmed} would be answered 503 (and the sender disables the endpoint "
                "after 5 failed deliveries).",
                hint=f"{MIGRATE_HINT[0].upper()}{MIGRATE_HINT[1:]}{where}.",
                id="iverton_webhooks.W007",
            )
        )
    return messages


def _missing(connection: BaseDatabaseWrapper, model: Any) -> str | None:
    """What ``model``'s table lacks ("" when nothing), or None if the database cannot be
    asked."""
    table = model._meta.db_table
    try:
        with connection.cursor() as cursor:
            if table not in connection.introspection.table_names(cursor):
                return "does not exist"
            description = connection.introspection.get_table_description(cursor, table)
    except DatabaseError:
        return None
    have = {column.name for column in description}
    want = {str(field.column) for field in model._meta.concrete_fields}
    lacking = sorted(want - have)
    return f"lacks the column(s) {', '.join(lacking)}" if lacking else ""


@register(Tags.database)
def check_sqlite_wal(databases: Sequence[str] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """The inbox database, when SQLite, is in WAL mode: a property of the file, so the
    database is asked, not the settings."""
    connection = _inbox_connection(databases)
    if connection is None or connection.vendor != "sqlite":
        return []
    alias = connection.alias
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            mode = str(cursor.fetchone()[0]).lower()
    except DatabaseError:
        return []  # an unreachable database is not ours to report
    if mode == "wal":
        return []
    return [
        Warning(
            f"The webhook inbox database {alias!r} is SQLite in journal_mode={mode!r}, not "
            "WAL: under a burst, webhook acks wait on the worker threads' writes (seconds) "
            "and some are answered 503 'database is locked'.",
            hint=(
                "Put the file in WAL mode once (it stays so), e.g. in DATABASES["
                f'{alias!r}][\'OPTIONS\']: "init_command": "PRAGMA journal_mode=WAL; PRAGMA '
                'synchronous=NORMAL" (Django 5.1+, with "transaction_mode": "IMMEDIATE"), '
                "or PostgreSQL."
            ),
            id="iverton_webhooks.W009",
        )
    ]


@register(Tags.database)
def check_store_warnings(**kwargs: Any) -> list[CheckMessage]:
    """What an endpoint's store says it cannot keep (a Redis without persistence loses
    every acknowledged event on a restart): the same sentences ``stats`` and the health
    view show. Tagged ``database``: asking a server is I/O."""
    said: dict[str, None] = {}
    for endpoint in (default_endpoint, *_endpoints):
        try:
            store = endpoint.receiver.store
        except ConfigurationError:
            continue  # check_settings reports an unusable setting
        for warning in store_warnings(store):
            said.setdefault(warning, None)
    return [
        Warning(
            warning,
            hint="Until this is fixed, acknowledged webhooks may be lost.",
            id="iverton_webhooks.W011",
        )
        for warning in said
    ]


_URLS_MODULE = "iverton_webhooks.contrib.django.urls"


@register(Tags.urls)
def check_webhook_urls(**kwargs: Any) -> list[CheckMessage]:
    """The webhook URLs are not included under a prefix ending in ``/``, which answers
    only the URL with the slash the sender's URL usually lacks; and each ``webhook_path``
    URL is answered by its own endpoint, not taken as a name by a pattern serving
    registered endpoints listed before it (Django tries patterns in order, so the fix is
    the order)."""
    try:
        resolver = get_resolver()
        entries = list(_url_entries(resolver.url_patterns))
    except Exception:
        return []  # a broken URLconf is reported by Django's own URL checks
    messages: list[CheckMessage] = []
    for above, entry in entries:
        if not isinstance(entry, URLResolver):
            continue
        if getattr(entry.urlconf_name, "__name__", entry.urlconf_name) != _URLS_MODULE:
            continue
        prefix = above + str(entry.pattern)
        route = prefix.replace("^", "").strip("/")  # a regex prefix reads as a route
        if not prefix.endswith("/") or not route:
            continue
        messages.append(
            Warning(
                f"The webhook URLs are included under {prefix!r}, which ends with '/': a "
                f"POST to /{route} (the sender's URL form, no trailing slash) is redirected "
                "(a failed delivery) or, with DEBUG and APPEND_SLASH, answered 500.",
                hint=(
                    f'Include them with no slash after the prefix: path("{route}", '
                    f'include("{_URLS_MODULE}")); both /{route} and /{route}/ then answer.'
                ),
                id="iverton_webhooks.W010",
            )
        )
    for above, entry in entries:
        # Only a path that can be told from the URLconf: no converters, no regex syntax.
        prefix = above.replace("^", "")  # a regex prefix reads as a route
        if any(char in prefix for char in "<>()[]{}\\$?*+|"):
            continue
        if not isinstance(entry, WebhookPattern) or not entry.route:
            continue
        path = prefix + entry.route
        try:
            match = resolver.resolve("/" + path)
        except Exception:  # no match, or a setting check_settings reports
            continue
        own = getattr(entry.callback, "endpoint", None)
        if "name" not in match.kwargs or getattr(match.func, "endpoint", None) is own:
            continue
        messages.append(
            Warning(
                f"The webhook URL /{path} is answered by a webhook URL pattern listed before "
                f"it, as the registered endpoint {match.kwargs['name']!r}: its deliveries "
                "would get 404 (and the sender disables the endpoint after 5 failed "
                "deliveries).",
                hint=(
                    "List webhook_path(...) before the include of the webhook URLs in "
                    "urlpatterns, or give it a URL outside that prefix."
                ),
                id="iverton_webhooks.W012",
            )
        )
    return messages


def _url_entries(
    patterns: Sequence[URLPattern | URLResolver], above: str = ""
) -> Iterator[tuple[str, URLPattern | URLResolver]]:
    """Every entry of a URLconf with the prefix it is under, nested includes joined."""
    for entry in patterns:
        yield above, entry
        if isinstance(entry, URLResolver):
            yield from _url_entries(entry.url_patterns, above + str(entry.pattern))
