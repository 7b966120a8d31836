"""Fixtures for the Starlette / FastAPI adapter.

Each test module here starts with ``pytest.importorskip("starlette.applications")`` (a
submodule: this very folder would import as a namespace package named "starlette"), so the
folder is skipped with a reason when Starlette is not installed, whether the whole suite runs
or only ``pytest tests/starlette``. This conftest needs nothing from Starlette.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import pytest

from iverton_webhooks import MemoryStore, Receiver, Router
from tests.conftest import SECRET

# Run by uvicorn in a subprocess, configured by their environment: not modules to import here
# (and the FastAPI one needs FastAPI, which the Starlette-only tox envs lack).
collect_ignore = ["e2e_app.py", "endpoints_app.py", "fastapi_dep_app.py"]


# Starlette >= 1.x warns once, on import, that its TestClient prefers httpx2 to httpx; it works
# the same with httpx, which the older Starlette versions we support need.
with warnings.catch_warnings(), contextlib.suppress(ImportError):  # not installed: modules skip
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import starlette.testclient  # noqa: F401


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def make_receiver(store: MemoryStore, router: Router) -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**options: object) -> Receiver:
        options.setdefault("store", store)
        options.setdefault("router", router)
        options.setdefault("runner", "asyncio")
        receiver = Receiver(SECRET, **options)  # type: ignore[arg-type]
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.runner.close(0)
