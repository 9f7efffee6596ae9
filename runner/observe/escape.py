"""Log text that no client can use to forge a line or drive a terminal.

Much of what the runner logs carries text a client chose: a library's exception message
(PyJWT's "Unsupported critical extension: …" quotes the token header verbatim), a tool name,
a request path, `--log-arguments`. Escaping at each call site misses the next one, so the
formatters (runner/observe/logs.py) apply these to every record, whoever logged it:

- text: a record is one line at column 0; each further line it needs (a traceback, a reload
  error's list of problems) is indented, so no record can start a line that looks like
  another record; every other character that is not printable (ANSI escapes, CR, NEL U+0085,
  the line and paragraph separators U+2028/U+2029, C1 controls, bidi overrides) is written as
  a Python-style escape (`\\x1b`, `\\u2028`);
- JSON: `json.dumps` escapes the C0 controls but, with `ensure_ascii=False`, passes DEL, C1
  controls and U+2028/U+2029 raw (line breaks to many readers); those become `\\uXXXX`.

The common case (every character printable) costs one `str.isprintable()` call.
"""

from __future__ import annotations

INDENT = "  "  # what follows a line break inside one text record


def _escaped(char: str) -> str:
    code = ord(char)
    if char == "\r":
        return "\\r"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def text(value: str) -> str:
    """`value` as one text record: non-printable characters escaped, line breaks followed by an indent."""
    if value.isprintable():
        return value
    out: list[str] = []
    for char in value:
        if char.isprintable() or char == "\t":
            out.append(char)
        elif char == "\n":
            out.append("\n" + INDENT)
        else:
            out.append(_escaped(char))
    return "".join(out)


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
