"""The adapter contract: every adapter (WSGI app, Flask extension, Django view, Starlette
middleware) behind its real server (gunicorn, uvicorn) answers the same way.

Replaces the three hand-written status tables; adapter-only behaviour (Django's CSRF and
ATOMIC_REQUESTS, Flask's MAX_CONTENT_LENGTH, Starlette mounts) stays in their folders.
"""

from __future__ import annotations

import json
import secrets
import time

import pytest

from iverton_webhooks import sign
from iverton_webhooks.samples import sample_body
from tests.adapters.apps import PATH, SECRET
from tests.adapters.conftest import Post, head_only, send
from tests.adapters.edge_payloads import edges, event
from tests.adapters.servers import Row, Server

pytestmark = pytest.mark.slow

CAP = 1024 * 1024  # the receivers' default max_body_bytes
UNFINISHED = {"pending", "processing", "failed"}


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Iverton-Signature": sign(body, secret), "Content-Type": "application/json"}


def unique(name: str) -> str:
    return f"{name}_{secrets.token_hex(4)}"


def settle(server: Server, bodies: list[bytes], timeout: float = 30.0) -> dict[bytes, Row]:
    """Wait (bounded) until every row holding one of ``bodies`` is finished; the rows by body."""
    wanted = set(bodies)
    deadline = time.monotonic() + timeout
    while True:
        rows = {row.body: row for row in server.inbox.rows() if row.body in wanted}
        if all(row.status not in UNFINISHED for row in rows.values()):
            return rows
        if time.monotonic() > deadline:
            stuck = {row.key[:40]: row.status for row in rows.values() if row.status in UNFINISHED}
            raise AssertionError(f"still unfinished after {timeout} s: {stuck}")
        time.sleep(0.1)


def test_signed_event_is_accepted_recorded_then_done_and_a_duplicate_is_acknowledged(
    server: Server, post: Post
) -> None:
    body = sample_body("deal.won", id=unique("evt_ok"))
    first = post("POST", body, signed(body))
    assert (first.status, first.json()) == (200, {"status": "accepted"})
    assert first.headers["content-type"] == "application/json"
    again = post("POST", body, signed(body))
    assert (again.status, again.json()) == (200, {"status": "duplicate"})
    assert settle(server, [body])[body].status == "done"


def test_the_signed_edge_table_is_acknowledged_kept_and_never_blocks(
    server: Server, post: Post
) -> None:
    table = edges(unique("edge"))
    assert len(table) >= 40
    answers = {}
    for case in table:
        reply = post("POST", case.body, signed(case.body))
        answers[case.name] = (reply.status, reply.body[:200])
    refused = {name: answer for name, answer in answers.items() if not 200 <= answer[0] < 300}
    assert not refused, f"signed payloads refused by {server.adapter}: {refused}"
    for case in table:
        status = json.loads(answers[case.name][1])["status"]
        allowed = (
            {"expired"} if case.expect == "expired" else {"accepted", "duplicate", "quarantined"}
        )
        assert status in allowed, (case.name, status)

    kept = [case.body for case in table if case.expect == "kept"]
    rows = settle(server, kept)
    lost = [case.name for case in table if case.expect == "kept" and case.body not in rows]
    assert not lost, f"authentic bodies not in the {server.adapter} inbox: {lost}"
    expired = [case.body for case in table if case.expect == "expired"]
    assert not set(expired) & {row.body for row in server.inbox.rows()}

    # Nothing stored blocks the inbox: a normal event after them all is processed.
    after = sample_body("contact.created", id=unique("evt_after_edges"))
    assert post("POST", after, signed(after)).status == 200
    assert settle(server, [after])[after].status == "done"


@pytest.mark.parametrize(
    "tamper",
    ["missing", "empty", "wrong scheme", "zeros", "other secret", "other body", "truncated"],
)
def test_a_bad_signature_is_401_and_the_answer_says_nothing_more(
    server: Server, post: Post, tamper: str
) -> None:
    body = sample_body("deal.won", id=unique("evt_forged"))
    header = {
        "missing": None,
        "empty": "",
        "wrong scheme": "sha1=abc",
        "zeros": "sha256=" + "0" * 64,
        "other secret": sign(body, "whsec_forger_0000000000"),
        "other body": sign(b"another body", SECRET),
        "truncated": sign(body, SECRET)[:-2],
    }[tamper]
    headers = {} if header is None else {"X-Iverton-Signature": header}
    reply = post("POST", body, headers)
    assert (reply.status, reply.body) == (401, b'{"error":"invalid signature"}')
    assert body not in {row.body for row in server.inbox.rows()}


def test_a_repeated_signature_header_never_lets_a_forged_one_through(
    server: Server, post: Post
) -> None:
    body = sample_body("deal.won", id=unique("evt_two_headers"))
    forged = [("X-Iverton-Signature", "sha256=" + "0" * 64)]
    reply = post("POST", body, [*forged, ("X-Iverton-Signature", sign(body, SECRET))])
    assert reply.status in (200, 401)  # first wins, or the joined value fails: never a 5xx
    only_forged = post("POST", body, [*forged, *forged])
    assert only_forged.status == 401


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_the_raw_body_is_verified_whatever_the_content_type(
    server: Server, post: Post, content_type: str | None
) -> None:
    body = sample_body("contact.created", id=unique("evt_ct"), data={"first_name": "Zoë"})
    headers = {"X-Iverton-Signature": sign(body, SECRET)}
    if content_type:
        headers["Content-Type"] = content_type
    assert post("POST", body, headers).status == 200


def test_an_unknown_type_is_accepted_with_a_note(server: Server, post: Post) -> None:
    body = event(unique("evt_future"), type="invoice.paid")
    reply = post("POST", body, signed(body))
    assert reply.status == 200
    assert reply.json()["status"] == "accepted"


@pytest.mark.parametrize("path", [PATH, PATH + "/"])
def test_the_path_answers_with_and_without_a_trailing_slash(
    server: Server, post: Post, path: str
) -> None:
    body = sample_body("deal.won", id=unique("evt_slash"))
    reply = post("POST", body, signed(body), path=path)
    assert (reply.status, reply.json()) == (200, {"status": "accepted"})


@pytest.mark.parametrize(("method", "length"), [("PUT", 2_000_000), ("GET", 3_000_000)])
def test_another_method_is_405_without_reading_the_body(
    server: Server, method: str, length: int
) -> None:
    # The body is never sent: an answer at all shows it was not read; 405, not 413.
    reply = head_only(server, method, length)
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
def test_another_method_is_405(server: Server, post: Post, method: str) -> None:
    reply = post(method)
    assert (reply.status, reply.headers.get("allow")) == (405, "POST")


def test_a_declared_body_over_the_cap_is_413_without_reading_it(server: Server) -> None:
    body = sample_body("deal.won")
    reply = head_only(server, "POST", CAP + 1, signed(body))
    assert (reply.status, reply.body) == (413, b'{"error":"body too large"}')


def padded(event_id: str, size: int) -> bytes:
    """A valid event of exactly ``size`` bytes (JSON whitespace before the last braces)."""
    body = event(event_id, data={"id": "con_1"})
    return body[:-2] + b" " * (size - len(body)) + body[-2:]


def test_a_body_exactly_at_the_cap_is_read(server: Server, post: Post) -> None:
    exact = padded(unique("evt_exact"), CAP)
    assert post("POST", exact, signed(exact)).status == 200


def test_a_chunked_body_is_read_under_the_cap(server: Server, post: Post) -> None:
    body = sample_body("deal.won", id=unique("evt_chunked"))
    pieces = [body[i : i + 50] for i in range(0, len(body), 50)]
    reply = post("POST", iter(pieces), signed(body))
    assert (reply.status, reply.json()) == (200, {"status": "accepted"})
    assert body in {row.body for row in server.inbox.rows()}
    # Over the cap by a little, so the server has read nearly all of it when it answers.
    over = padded(unique("evt_chunked_big"), CAP + 10)
    pieces = [over[i : i + 65536] for i in range(0, len(over), 65536)]
    reply = post("POST", iter(pieces), signed(over))
    assert (reply.status, reply.body) == (413, b'{"error":"body too large"}')


@pytest.mark.parametrize("length", ["\u00b2", "1\u00b2", "-5", "abc", "0x10"])
def test_a_content_length_that_is_not_ascii_digits_is_never_a_500(
    server: Server, length: str
) -> None:
    body = sample_body("deal.won", id=unique("evt_length"))
    try:
        reply = send(server, "POST", body, {**signed(body), "Content-Length": length}, timeout=10)
    except (ConnectionError, OSError):
        return  # the server closed the connection: a refusal, not an error page
    assert reply.status < 500, (reply.status, reply.body[:200])


def test_the_server_is_still_healthy(server: Server, post: Post) -> None:
    body = sample_body("contact.updated", id=unique("evt_healthy"))
    assert post("POST", body, signed(body)).status == 200
    assert server.process.poll() is None
