"""Django hygiene: start-up imports only our users' handler modules (never another
library's ``webhooks`` module), and the signal router lists receivers through public
API only."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.dispatch import Signal

from iverton_webhooks._errors import ConfigurationError
from iverton_webhooks._router import Router
from iverton_webhooks.contrib.django import discovery
from iverton_webhooks.contrib.django.dispatch import ListedSignal
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.router import SignalRouter
from iverton_webhooks.contrib.django.signals import SIGNALS, webhook_received

MARK = "import os\nopen(os.environ['DISCOVERY_MARKS'], 'a').write(__name__ + '\\n')\n"
APPS = {
    # An email library's inbound-webhook module (as anymail.webhooks): not ours.
    "mailish/webhooks.py": MARK + "raise RuntimeError('a library module, not handlers')\n",
    # Handlers under the new name.
    "shop/iverton_handlers.py": MARK + "from iverton_webhooks import on\n",
    # Handlers under the wave-1 name: still found (the source names the library).
    "legacy/webhooks.py": MARK + "from iverton_webhooks import Router\n",
}

SETUP = """
import json, os, sys
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["iverton_webhooks.contrib.django", "mailish", "shop", "legacy"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    IVERTON_WEBHOOKS=json.loads(os.environ["DISCOVERY_SETTING"]),
)
import django
django.setup()
from django.core.checks import run_checks
print(json.dumps(sorted(m.id for m in run_checks())))
"""


def start_up(tmp_path: Path, setting: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Django set up in a fresh process with the fake apps; (modules imported, checks)."""
    for name, source in APPS.items():
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source)
    marks = tmp_path / "marks"
    marks.write_text("")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()]),
        "DISCOVERY_MARKS": str(marks),
        "DISCOVERY_SETTING": json.dumps({"SECRET": "whsec_discovery_test_0123", **setting}),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", SETUP], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return marks.read_text().split(), json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_another_librarys_webhooks_module_is_not_imported(tmp_path: Path) -> None:
    imported, checks = start_up(tmp_path, {})
    assert "mailish.webhooks" not in imported
    assert sorted(imported) == ["legacy.webhooks", "shop.iverton_handlers"]
    # The wave-1 name still works, with a warning to rename it.
    assert "iverton_webhooks.W008" in checks


@pytest.mark.slow
def test_the_autodiscover_setting_names_the_modules(tmp_path: Path) -> None:
    imported, checks = start_up(tmp_path, {"AUTODISCOVER": ["iverton_handlers"]})
    assert imported == ["shop.iverton_handlers"]
    assert "iverton_webhooks.W008" not in checks
    imported, _ = start_up(tmp_path, {"AUTODISCOVER": False})
    assert imported == []


@pytest.mark.parametrize(
    ("value", "names"),
    [(None, None), (True, None), (False, []), ([], []), ("handlers", ["handlers"])],
)
def test_autodiscover_values(value: object, names: list[str] | None) -> None:
    assert discovery.module_names({"AUTODISCOVER": value}) == names


@pytest.mark.parametrize("value", [3, ["a.b"], ["ok", ""], {"x": 1}])
def test_a_bad_autodiscover_value_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError, match="AUTODISCOVER"):
        discovery.module_names({"AUTODISCOVER": value})


# Signals: public API only ----------------------------------------------------------------


def names(router: Router, event_type: str) -> list[str]:
    return [handler.name for handler in router.handlers_for(event_type)]


def test_signal_router_does_not_use_djangos_private_receiver_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def private(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Signal._live_receivers is private API")

    monkeypatch.setattr(Signal, "_live_receivers", private, raising=False)
    calls: list[str] = []

    def on_won(sender: Any, event: Any, **kwargs: Any) -> None:
        calls.append(event)

    SIGNALS["deal.won"].connect(on_won, sender=WebhookEvent)
    try:
        found = names(SignalRouter(Router()), "deal.won")
    finally:
        SIGNALS["deal.won"].disconnect(on_won, sender=WebhookEvent)
    assert found == [f"{__name__}.{on_won.__qualname__} (deal_won)"]
    assert names(SignalRouter(Router()), "deal.won") == []  # disconnected


def test_listed_signal_follows_connect_and_disconnect_as_django_does() -> None:
    signal = ListedSignal()

    class Box:
        def method(self, sender: Any, **kwargs: Any) -> None: ...

    def first(sender: Any, **kwargs: Any) -> None: ...

    def other_sender(sender: Any, **kwargs: Any) -> None: ...

    def kept(sender: Any, **kwargs: Any) -> None: ...

    box = Box()
    signal.connect(first)
    signal.connect(first)  # the same receiver twice: once
    signal.connect(box.method, sender=WebhookEvent)
    signal.connect(other_sender, sender=object)
    signal.connect(kept, dispatch_uid="uid")
    signal.connect(first, dispatch_uid="uid")  # a taken uid: Django keeps the first
    assert signal.receivers_for(WebhookEvent) == [first, box.method, kept]
    # What Django itself would call, in the same order.
    assert [r for r, _ in signal.send(WebhookEvent)] == signal.receivers_for(WebhookEvent)
    del box
    gc.collect()  # a weakly connected receiver goes with its object
    assert signal.receivers_for(WebhookEvent) == [first, kept]
    assert signal.disconnect(dispatch_uid="uid")
    assert signal.disconnect(first)
    assert signal.receivers_for(WebhookEvent) == []
    assert signal.receivers_for(object) == [other_sender]


def test_the_routers_signals_are_listed_signals() -> None:
    assert isinstance(webhook_received, ListedSignal)
    assert all(isinstance(signal, ListedSignal) for signal in SIGNALS.values())
