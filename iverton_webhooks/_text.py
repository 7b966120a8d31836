"""Making untrusted text safe to print to a terminal or write into a log line.

Event ids, types and handler errors come from signed but still foreign input: a raw
escape sequence could clear a screen, write a clipboard (OSC 52) or forge a log line
with ``\\r\\n``, and an invisible or bidirectional format character (U+202E RIGHT-TO-LEFT
OVERRIDE, a zero-width space) could make ``deal.\\u202ewon`` read as another type in a
terminal, a log or the admin. Every human-readable output goes through `printable`;
JSON output keeps the exact values.

>>> printable("evt_1\\x1b[2J\\r\\nFAKE")
'evt_1\\\\x1b[2J\\\\r\\\\nFAKE'
>>> printable("deal.\\u202ewon\\u200b")
'deal.\\\\u202ewon\\\\u200b'
>>> printable("déjà vu")
'déjà vu'
"""

from __future__ import annotations

import re

# C0 and C1 controls, the line and paragraph separators, and the format characters that
# hide text or reorder it: zero-width (U+200B-U+200D), direction marks (U+200E, U+200F,
# U+061C), bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and
# the byte order mark (U+FEFF).
# Lone surrogates too: a terminal or a log file cannot encode them, and printing one fails.
_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)
_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(text: object) -> str:
    """``str(text)`` with every control and invisible format character shown as an escape."""
    value = str(text)
    return _CONTROL.sub(_escape, value) if _CONTROL.search(value) else value
