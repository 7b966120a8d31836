"""The example apps in example_projects/, driven through Starlette's TestClient.
(test_starlette_uvicorn.py also runs the Starlette one under a real uvicorn.)"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("starlette.applications")

from starlette.testclient import TestClient

from iverton_webhooks import sign
from iverton_webhooks.samples import sample_body
from tests.conftest import wait_for

EXAMPLES = Path(__file__).parent.parent.parent / "example_projects"
SECRET = "whsec_example_tests"


@pytest.fixture
def load_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], ModuleType]]:
    """Import an example's app.py afresh, configured by its environment to use tmp files."""
    monkeypatch.setenv("IVERTON_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("IVERTON_INBOX", f"sqlite:///{tmp_path / 'webhooks.sqlite3'}")
    monkeypatch.setenv("EXAMPLE_CRM_DB", str(tmp_path / "crm.sqlite3"))
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        module_name = f"iverton_example_{name}"
        spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name / "app.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        loaded.append(module_name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def deliver(client: TestClient, event_type: str, secret: str = SECRET, **overrides: object) -> int:
    body = sample_body(event_type, **overrides)
    headers = {"X-Iverton-Signature": sign(body, secret), "Content-Type": "application/json"}
    return client.post("/webhooks/iverton", content=body, headers=headers).status_code


def rows(db: Path, query: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def test_starlette_example(load_example: Callable[[str], ModuleType], tmp_path: Path) -> None:
    example = load_example("starlette_app")
    crm = tmp_path / "crm.sqlite3"
    with TestClient(example.app) as client:
        assert deliver(client, "contact.created", id="evt_c1") == 200
        assert deliver(client, "contact.created", id="evt_c1") == 200  # duplicate
        assert deliver(client, "deal.won", id="evt_d1") == 200
        assert deliver(client, "deal.won", secret="whsec_not_it", id="evt_d2") == 401
        assert wait_for(lambda: client.get("/").json() == {"contacts": 1, "won_deals": 1})
        contact = rows(crm, "SELECT id, email, name FROM contacts")
        assert contact == [("con_456def", "john@example.com", "John Doe")]
        assert deliver(client, "contact.deleted", id="evt_c2") == 200
        assert wait_for(lambda: client.get("/").json()["contacts"] == 0)
    assert rows(crm, "SELECT id, event_id FROM won_deals") == [("deal_654mno", "evt_d1")]


def test_fastapi_example(load_example: Callable[[str], ModuleType]) -> None:
    pytest.importorskip("fastapi")
    example = load_example("fastapi_app")
    with TestClient(example.app) as client:
        assert client.get("/api/contacts").json() == []
        assert deliver(client, "contact.created", id="evt_f1") == 200
        expected = [{"id": "con_456def", "email": "john@example.com", "subscribed": False}]
        assert wait_for(lambda: client.get("/api/contacts").json() == expected)
        assert deliver(client, "contact.subscribed", id="evt_f2") == 200
        expected[0]["subscribed"] = True
        assert wait_for(lambda: client.get("/api/contacts").json() == expected)
        bad = client.post("/webhooks/iverton", content=b"{}", headers={"X-Iverton-Signature": "x"})
        assert (bad.status_code, bad.json()) == (401, {"error": "invalid signature"})
        assert "/api/contacts" in json.dumps(client.get("/openapi.json").json())
