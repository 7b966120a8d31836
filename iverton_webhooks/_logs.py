"""Structured log fields: every record the library logs about an event carries
``event_id``, ``event_type``, ``endpoint``, ``handler`` and ``status`` as attributes
(None where they do not apply), so a JSON formatter can emit them as fields.

Records the library logs with no event at hand carry the five as None too.
Values are escaped with `printable`, like the messages:
ids and types are the sender's text, and a format string such as ``%(event_id)s``
must not write a raw escape sequence or a forged line.

>>> import logging
>>> record = logging.makeLogRecord(fields(event_id="evt\\r\\n1", endpoint="default"))
>>> record.event_id, record.endpoint, record.handler
('evt\\\\r\\\\n1', 'default', None)
"""

from __future__ import annotations

import logging
from typing import Any

from ._text import printable

#: The attribute names every record about an event carries.
FIELDS = ("event_id", "event_type", "endpoint", "handler", "status")


def _with_every_field(record: logging.LogRecord) -> bool:
    # Records logged without fields (start-up, polling) still get them, as None, so a
    # format string or JSON formatter naming them never meets a record without them.
    for name in FIELDS:
        if not hasattr(record, name):
            setattr(record, name, None)
    return True


logging.getLogger("iverton_webhooks").addFilter(_with_every_field)


def fields(
    *,
    event_id: object = None,
    event_type: object = None,
    endpoint: object = None,
    handler: object = None,
    status: object = None,
) -> dict[str, Any]:
    """The ``extra=`` mapping for one log call (escaped values; None stays None)."""

    def shown(value: object) -> str | None:
        if value is None:
            return None
        return printable(getattr(value, "value", value))  # an Enum by its value

    return {
        "event_id": shown(event_id),
        "event_type": shown(event_type),
        "endpoint": shown(endpoint),
        "handler": shown(handler),
        "status": shown(status),
    }
