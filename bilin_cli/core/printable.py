"""Names from files made safe for a terminal, and for the text files bilin writes.

Tensor names, JSON keys, class names and paths come from files a user did not write;
echoed raw, an escape sequence in one can rewrite the terminal, and a lone surrogate
(``"\\ud800"`` in a config.json is legal JSON, and Python decodes it to a str that no
UTF-8 stream can encode) crashes the write with ``UnicodeEncodeError``.
:func:`printable` escapes every control character (C0, DEL, C1 and the bidirectional
overrides) and every lone surrogate as ``\\xNN`` or ``\\uNNNN``, and leaves everything
else, non-ASCII letters included, as it is. :func:`file_text` is the same escaping for
a whole text file bilin writes (an HTML page): it keeps tabs and line breaks.

JSON output needs neither: ``json.dumps`` (``ensure_ascii``, its default) writes such a
name as the escape ``"\\u001b"`` / ``"\\ud800"``, valid JSON, never raw.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, the Unicode bidi / zero-width format characters that
# can make a name read as something else, and lone surrogates (never valid in UTF-8).
_UNSAFE_CHARS = ("\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff"
                 "\ud800-\udfff")
_UNSAFE = re.compile(f"[{_UNSAFE_CHARS}]")
# The same, less the tab and line breaks a text file is made of.
_UNSAFE_IN_FILES = re.compile(f"(?![\t\n\r])[{_UNSAFE_CHARS}]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, limit: int | None = 300) -> str:
    """``str(text)`` with control characters and lone surrogates escaped, cut to ``limit``
    characters (``None``: never cut, for paths a script reads back)."""
    s = _UNSAFE.sub(_escape, str(text))
    return s if limit is None or len(s) <= limit else s[: limit - 1] + "…"


def file_text(text: str) -> str:
    """A whole text document (an HTML page) with the escaping of :func:`printable`, line
    breaks and tabs kept: it always encodes as UTF-8 and holds no terminal escape."""
    return _UNSAFE_IN_FILES.sub(_escape, text)


def with_article(noun: str) -> str:
    """``"an image classifier"``, ``"a toy model"``: the noun with its indefinite article."""
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def say_wrote(path, detail: str | None = None) -> None:
    """``wrote PATH (detail)`` on stderr, the path escaped for the terminal: every command's
    one line for each file it wrote."""
    import sys

    print(f"wrote {printable(path, limit=None)}" + (f" ({detail})" if detail else ""),
          file=sys.stderr)
