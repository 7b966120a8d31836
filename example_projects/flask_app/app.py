"""An example Flask CRM receiving Iverton webhooks (``flask --app app run``).

Configuration comes from ``app.config``: ``IVERTON_WEBHOOK_SECRET`` (or ``..._SECRETS``),
``IVERTON_WEBHOOK_STORE``, ... Set them from the environment with the ``FLASK_`` prefix,
e.g. ``FLASK_IVERTON_WEBHOOK_SECRET=whsec_...``.
"""

from __future__ import annotations

import os
from typing import Any

from crm import connect
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from webhooks import router

from iverton_webhooks import Status
from iverton_webhooks.contrib.flask import IvertonWebhooks

# For trying things locally only; a real deployment sets FLASK_IVERTON_WEBHOOK_SECRET.
DEV_SECRET = "whsec_example_dev_only"

webhooks = IvertonWebhooks(router=router)


def create_app(config: dict[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    app = Flask(__name__, instance_path=instance_path)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(
        IVERTON_WEBHOOK_SECRET=DEV_SECRET,
        CRM_DATABASE=os.path.join(app.instance_path, "crm.sqlite3"),
    )
    app.config.from_prefixed_env()
    app.config.update(config or {})
    webhooks.init_app(app)  # POST /webhooks/iverton; inbox in instance/iverton_webhooks.sqlite3

    @app.get("/")
    def summary() -> ResponseReturnValue:
        with connect(app.config["CRM_DATABASE"]) as db:
            won = db.execute("SELECT deal_id, name, value, currency FROM won_deals").fetchall()
            suppressed = db.execute("SELECT address, reason FROM suppressed").fetchall()
        inbox = webhooks.receiver().store
        return jsonify(
            won_deals=[dict(row) for row in won],
            suppressed=[dict(row) for row in suppressed],
            inbox={status.value: len(inbox.list(status=status, limit=10_000)) for status in Status},
        )

    return app
