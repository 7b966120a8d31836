"""Issue 13 items 1 and 4 (Flask side) and issue 11 item 5: the extension's mistakes fail
at init with the config keys to set; a blueprint's name is its endpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from iverton_webhooks import ConfigurationError, Receiver
from iverton_webhooks.contrib.flask import IvertonWebhooks, webhooks_blueprint
from tests.conftest import SECRET, signed
from tests.flask.flask_helpers import PREFIX, close_all, receiver_of


def flask_app(tmp_path: Path, **config: object) -> Flask:
    app = Flask("cfg", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, IVERTON_WEBHOOK_RUNNER="inline", **config)
    return app


def test_the_extension_without_a_secret_names_the_config_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        IvertonWebhooks(flask_app(tmp_path))
    message = str(caught.value)
    assert "IVERTON_WEBHOOK_SECRET" in message
    assert "FLASK_IVERTON_WEBHOOK_SECRET" in message
    assert "secret=" not in message  # a Flask user sets config, not a keyword


def test_a_string_for_the_secrets_list_is_refused_with_the_list_form(tmp_path: Path) -> None:
    app = flask_app(tmp_path, IVERTON_WEBHOOK_SECRETS="whsec_abcdef0123456789")
    with pytest.raises(ConfigurationError, match=r"WEBHOOK_SECRETS'\] is one string"):
        IvertonWebhooks(app)


def test_a_list_from_the_environment_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_IVERTON_WEBHOOK_SECRETS", f'["whsec_new_0123456789", "{SECRET}"]')
    app = flask_app(tmp_path)
    app.config.from_prefixed_env()
    IvertonWebhooks(app)
    try:
        body, headers = signed(id="evt_env")
        assert app.test_client().post(PREFIX, data=body, headers=headers).status_code == 200
    finally:
        close_all(app)


def test_the_blueprint_refuses_a_string_for_secrets_and_a_missing_secret() -> None:
    with pytest.raises(ConfigurationError, match="list"):
        webhooks_blueprint(secrets="whsec_abcdef0123456789")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no webhook secret configured"):
        webhooks_blueprint(store="memory://")
    with pytest.raises(ConfigurationError, match="either receiver"):
        webhooks_blueprint(SECRET, receiver=Receiver(SECRET, store="memory://"))


def test_a_blueprint_name_is_its_endpoint(tmp_path: Path) -> None:
    app = flask_app(tmp_path)
    app.register_blueprint(
        webhooks_blueprint(SECRET, name="eu", url_prefix="/webhooks/eu", runner="inline")
    )
    try:
        receiver = receiver_of(app, "eu")
        assert receiver.endpoint == "eu"
        body, headers = signed(id="evt_eu")
        reply = app.test_client().post("/webhooks/eu", data=body, headers=headers)
        assert reply.status_code == 200
        assert receiver.store.get("evt_eu", endpoint="eu") is not None
        assert receiver.store.get("evt_eu") is None  # not under "default"
    finally:
        close_all(app)


def test_the_default_blueprint_keeps_the_default_endpoint(make_app: Callable[..., Flask]) -> None:
    assert receiver_of(make_app()).endpoint == "default"
