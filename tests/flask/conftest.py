"""Fixtures for the Flask adapter. Skipped when Flask is not installed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# A submodule, not "flask": with tests/ on sys.path this very folder would import as a
# namespace package called flask, and importorskip("flask") would never skip.
pytest.importorskip("flask.app")

from flask import Flask, current_app

from iverton_webhooks import Event, Router
from iverton_webhooks.contrib.flask import webhooks_blueprint
from tests.conftest import SECRET
from tests.flask.flask_helpers import Seen, close_all


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def router(seen: Seen) -> Router:
    router = Router()

    @router.on("*")
    def record(event: Event) -> None:
        # current_app only works inside an app context: proves the adapter pushed one.
        seen.add(event, current_app.name)

    return router


@pytest.fixture
def make_app(tmp_path: Path, router: Router) -> Iterator[Callable[..., Flask]]:
    """A Flask app with the webhook blueprint; keyword arguments go to the blueprint."""
    made: list[Flask] = []

    def make(name: str = "app", *, config: dict[str, Any] | None = None, **options: Any) -> Flask:
        app = Flask(name, instance_path=str(tmp_path / f"instance-{name}-{len(made)}"))
        app.config.update(TESTING=True, **(config or {}))
        options.setdefault("router", router)
        options.setdefault("runner", "inline")
        if "receiver" in options:
            del options["router"], options["runner"]
        else:
            options.setdefault("secret", SECRET)
        app.register_blueprint(webhooks_blueprint(**options))
        made.append(app)
        return app

    yield make
    for app in made:
        close_all(app)
