"""Making untrusted text safe to print to a terminal or write into a log line.

Event ids, types and handler errors come from signed but still foreign input: a raw
escape sequence could clear a screen, write a clipboard (OSC 52) or forge a log line
with ``\\r\\n``. Every human-readable output goes through :func:`printable`; JSON output
keeps the exact values.

>>> printable("evt_1\\x1b[2J\\r\\nFAKE")
'evt_1\\\\x1b[2J\\\\r\\\\nFAKE'
>>> printable("déjà vu")
'déjà vu'
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def printable(text: object) -> str:
    """``str(text)`` with every control character shown as an escape."""
    value = str(text)
    return _CONTROL.sub(_escape, value) if _CONTROL.search(value) else value
