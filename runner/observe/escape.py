"""Log text that no client can use to forge a line or drive a terminal.

Much of what the runner logs carries text a client chose: a library's exception message
(PyJWT's "Unsupported critical extension: …" quotes the token header verbatim), a tool name,
a request path, `--log-arguments`. Escaping at each call site misses the next one, so the
formatters (runner/observe/logs.py) apply these to every record, whoever logged it:

- text: a record's message is one line: every character that is not printable (LF, CR, TAB,
  ANSI escapes, NEL U+0085, the line and paragraph separators U+2028/U+2029, C1 controls,
  bidi overrides) is written as a Python-style escape (`\\n`, `\\x1b`, `\\u2028`). What needs
  several lines (a traceback, a reload error's `detail`) follows on lines indented by two
  spaces, escaped the same way but for the line breaks between them: no record can start a
  line at column 0 but its own first;
- JSON: `json.dumps` escapes the C0 controls but, with `ensure_ascii=False`, passes DEL, C1
  controls and U+2028/U+2029 raw (line breaks to many readers); those become `\\uXXXX`.

The common case (every character printable) costs one `str.isprintable()` call.
"""

from __future__ import annotations

INDENT = "  "  # every line of a record's traceback or detail starts with it
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def line(value: str) -> str:
    """`value` on one line: every character that is not printable (line breaks included) as an escape."""
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else _escaped(char) for char in value)


def block(value: str) -> str:
    """`value` (a traceback, a detail) as indented lines: no line of it starts at column 0, and nothing that is
    not printable but the line breaks between its lines passes raw."""
    return "\n".join(INDENT + line(part) for part in value.split("\n"))


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON spells a character beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_line(document: str) -> str:
    """A `json.dumps(..., ensure_ascii=False)` result with every non-printable character as a `\\u` escape.

    Valid because JSON text outside strings is printable ASCII: any such character sits inside a string.
    """
    if document.isprintable():
        return document
    return "".join(char if char.isprintable() else _json_escape(char) for char in document)
