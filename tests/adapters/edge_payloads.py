"""Issue 11's table: signed edge payloads an authentic sender could send (or a sender's
bug could), each of which must be acknowledged (2xx) and kept, never refused.

``expect``: ``"kept"`` (the body is in the inbox: pending/done, unhandled or quarantined),
``"expired"`` (older than ``max_age``: acknowledged, deliberately not recorded) or
``"duplicate"`` (an id already recorded with another body: acknowledged, counted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from iverton_webhooks.samples import sample_body

# Now, whenever the suite runs: never too old for max_age, nor too far ahead of it.
NOW = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Edge:
    name: str
    body: bytes
    expect: str = "kept"


def event(event_id: Any = "evt", **fields: Any) -> bytes:
    """An envelope with ``fields`` replacing (or, when set to ``...``, removing) the
    defaults; the resulting bytes are what gets signed."""
    envelope: dict[str, Any] = {
        "id": event_id,
        "type": "contact.created",
        "created_at": NOW,
        "data": {"id": "con_1", "email": "a@example.com"},
    }
    envelope.update(fields)
    return json.dumps({k: v for k, v in envelope.items() if v is not ...}).encode()


def _deep(levels: int) -> bytes:
    return (
        b'{"id":"evt_deep","type":"contact.created","created_at":"' + NOW.encode() + b'",'
        b'"data":{"id":"con_deep","x":' + b"[" * levels + b"]" * levels + b"}}"
    )


def edges(prefix: str) -> list[Edge]:
    """The table, with ids made unique by ``prefix`` (one server holds many runs)."""
    p = prefix
    cases = [
        Edge("not json", b"not json at all " + p.encode()),
        Edge("non-utf8", b"\xff\xfe\x00 garbage " + p.encode()),
        Edge("json array", f'[1, 2, "{p}"]'.encode()),
        Edge("json string", f'"{p}"'.encode()),
        Edge("json null + space", b"null " + p.encode()),
        Edge("truncated json", event(f"{p}_cut")[:-3]),
        Edge("bom prefix", b"\xef\xbb\xbf" + event(f"{p}_bom")),
        Edge("missing id", event(..., note=p)),
        Edge("empty id", event("", note=p)),
        Edge("null id", event(None, note=p)),
        Edge("numeric id", event(12345, note=p)),
        Edge("blank id", event("   ", note=p)),
        Edge("missing type", event(f"{p}_notype", type=...)),
        Edge("empty type", event(f"{p}_emptytype", type="")),
        Edge("numeric type", event(f"{p}_numtype", type=7)),
        Edge("missing created_at", event(f"{p}_nocreated", created_at=...)),
        Edge("bad created_at", event(f"{p}_yesterday", created_at="yesterday")),
        Edge("numeric created_at", event(f"{p}_epoch", created_at=1700000000)),
        Edge("impossible date", event(f"{p}_month13", created_at="2024-13-45T99:99:99Z")),
        Edge("year 1 +14:00", event(f"{p}_y1", created_at="0001-01-01T00:00:00+14:00")),
        Edge("year 9999 -14:00", event(f"{p}_y9999", created_at="9999-12-31T23:59:59-14:00")),
        Edge("naive created_at", event(f"{p}_naive", created_at=NOW.removesuffix("Z"))),
        Edge("nanosecond digits", event(f"{p}_nanos", created_at=NOW[:-1] + ".123456789Z")),
        Edge("missing data", event(f"{p}_nodata", data=...)),
        Edge("null data", event(f"{p}_nulldata", data=None)),
        Edge("data array", event(f"{p}_dataarray", data=[1, 2])),
        Edge("data without id", event(f"{p}_dataid", data={"email": "a@example.com"})),
        Edge("data empty id", event(f"{p}_dataemptyid", data={"id": ""})),
        Edge("data numeric id", event(f"{p}_datanumid", data={"id": 42})),
        Edge("nesting too deep", _deep(5000).replace(b"evt_deep", f"{p}_deep".encode())),
        Edge("nesting 100", _deep(100).replace(b"evt_deep", f"{p}_deep100".encode())),
        Edge(
            "huge integer",
            event(f"{p}_bigint", data={"id": "con_1", "n": 10**400}),
        ),
        Edge("huge float", event(f"{p}_bigfloat").replace(b'"con_1"', b'"con_1", "f": 1e400')),
        Edge("NaN literal", event(f"{p}_nan").replace(b'"con_1"', b'"con_1", "f": NaN')),
        Edge("id 255 chars", event((p + "_" + "i" * 255)[:255])),
        Edge("id 256 chars", event((p + "_" + "j" * 256)[:256])),
        Edge("type 255 chars", event(f"{p}_t255", type="t" * 255)),
        Edge("type 256 chars", event(f"{p}_t256", type="u" * 256)),
        Edge("data.id 256 chars", event(f"{p}_d256", data={"id": "d" * 256})),
        Edge("NUL in id", event(f"{p}_nul\u0000id")),
        Edge("CRLF in id", event(f"{p}_crlf\r\nX-Forged: 1")),
        Edge("escape codes in id", event(f"{p}_ansi\u001b[2J\u001b]52;c;AAAA\u0007")),
        Edge("unicode id", event(f"{p}_évt_ünïcode_😀")),
        Edge("lone surrogate in id", event(f"{p}_x").replace(b'_x"', b'_\\ud800"')),
        Edge("NUL in data.id", event(f"{p}_datanul", data={"id": "con\u0000nul"})),
        Edge("unknown type", event(f"{p}_invoice", type="invoice.paid")),
        Edge("unknown family-less type", event(f"{p}_weird", type="weird")),
        Edge("extra top-level fields", event(f"{p}_extra", extra={"a": [1, 2]}, version=2)),
        Edge("duplicate keys", event(f"{p}_dupkey")[:-1] + f', "id": "{p}_dupkey2"}}'.encode()),
        Edge("empty object", f'{{"note": "{p}"}}'.encode()),
        Edge(
            "too old with max_age", event(f"{p}_old", created_at="2020-01-01T00:00:00Z"), "expired"
        ),
        Edge("sample event", sample_body("deal.won", id=f"{p}_sample")),
    ]
    cases.append(Edge("same id, same body again", event(f"{p}_twice")))
    cases.append(Edge("same id, same body again (2)", event(f"{p}_twice"), "duplicate"))
    cases.append(Edge("same id, other body", event(f"{p}_twice", note="other"), "duplicate"))
    cases.append(Edge("empty body", b""))
    return cases
