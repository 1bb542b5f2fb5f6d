"""Names from files made safe for a terminal.

Tensor names, JSON keys and paths come from files a user did not write; echoed raw,
an escape sequence in one can rewrite the terminal. :func:`printable` escapes every
control character (C0, DEL, C1 and the bidirectional overrides) as ``\\xNN`` or
``\\uNNNN``, and leaves everything else, non-ASCII letters included, as it is.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, and the Unicode bidi / zero-width format characters that
# can make a name read as something else.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, limit: int = 300) -> str:
    """``str(text)`` with control characters escaped, cut to ``limit`` characters."""
    s = _UNSAFE.sub(_escape, str(text))
    return s if len(s) <= limit else s[: limit - 1] + "…"
