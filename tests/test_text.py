"""Invisible and bidirectional format characters in signed text are escaped wherever
control characters are: ``printable``, the library's log lines and the CLI's listing."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from iverton_webhooks import MemoryStore, Receiver, SQLiteStore
from iverton_webhooks._cli import main
from iverton_webhooks._signature import SIGNATURE_HEADER, sign
from iverton_webhooks._text import printable
from iverton_webhooks.samples import sample_body

SECRET = "whsec_text_tests_0123456789abcdef"

#: One of each kind the issue names, with its escaped form.
FORMAT_CHARACTERS = {
    "\u200b": "\\u200b",  # zero-width space
    "\u200c": "\\u200c",
    "\u200d": "\\u200d",
    "\u200e": "\\u200e",  # left-to-right mark
    "\u200f": "\\u200f",
    "\u202a": "\\u202a",  # bidi embeddings and overrides
    "\u202b": "\\u202b",
    "\u202c": "\\u202c",
    "\u202d": "\\u202d",
    "\u202e": "\\u202e",
    "\u2066": "\\u2066",  # bidi isolates
    "\u2067": "\\u2067",
    "\u2068": "\\u2068",
    "\u2069": "\\u2069",
    "\u061c": "\\u061c",  # Arabic letter mark
    "\ufeff": "\\ufeff",  # byte order mark / zero-width no-break space
}
REVERSED_TYPE = "deal.\u202ewon"


@pytest.mark.parametrize(("char", "escaped"), FORMAT_CHARACTERS.items())
def test_printable_escapes_each_format_character(char: str, escaped: str) -> None:
    assert printable(f"evt{char}1") == f"evt{escaped}1"


def test_printable_escapes_a_reversed_type_and_keeps_ordinary_text() -> None:
    assert printable(REVERSED_TYPE) == "deal.\\u202ewon"
    # Letters of any script, and the neighbours of the escaped ranges, stay as they are.
    for text in ("déjà vu", "交易.赢", "صفقة", "\u2010dash\u2030", "\u2065", "\u206a", "\ufefe"):
        assert printable(text) == text


def _signed(body: bytes) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(body, SECRET)}


def test_a_log_line_about_a_signed_reversed_type_is_escaped() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s | %(event_type)s"))
    logger = logging.getLogger("iverton_webhooks")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        receiver = Receiver(SECRET, store=MemoryStore(), runner="inline")
        body = sample_body("deal.won", id="evt_bidi", type=REVERSED_TYPE)
        reply = receiver.receive("POST", body, _signed(body))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    assert 200 <= reply.status < 300
    lines = stream.getvalue().splitlines()
    about = [line for line in lines if "evt_bidi" in line]
    assert about, lines
    assert any("deal.\\u202ewon" in line for line in about), about
    assert "\u202e" not in stream.getvalue()


def test_cli_events_lists_a_signed_reversed_type_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bidi.db"
    store = SQLiteStore(path)
    receiver = Receiver(SECRET, store=store, runner="inline")
    body = sample_body("deal.won", id="evt_bidi\u2066x", type=REVERSED_TYPE)
    assert 200 <= receiver.receive("POST", body, _signed(body)).status < 300
    store.close()

    assert main(["-q", "events", "--store", f"sqlite:///{path}"]) == 0
    out = capsys.readouterr().out
    assert "deal.\\u202ewon" in out
    assert "evt_bidi\\u2066x" in out
    for char in FORMAT_CHARACTERS:
        assert char not in out
