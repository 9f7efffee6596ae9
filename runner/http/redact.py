"""Keep tokens out of every log line, whatever part of a request carried them.

A token sent in the query string is refused by the gate, but uvicorn's access
log used to print the request target in full. The filter sits on every
handler (so records from any logger pass through it) and:

- drops the query string from access-log lines: MCP never uses one, and it is
  the usual place a misconfigured client puts `?access_token=`;
- replaces anything shaped like a JWT (`eyJ….….…`) or following `Bearer ` (20 characters or more), in
  the message, its arguments, its structured `fields` (what the JSON format writes besides the
  message) and a formatted traceback, with `[redacted]`.

"Shaped like a JWT" includes a JWT's prefix: a log line often shows client input cut to a
length (a tool name at 200 characters, the SDK's session id at 64), and a token cut before its
second dot, or its first, still leaks its header and part of its claims. So `eyJ…` followed by
a dot, or by 17 or more base64url characters (the base64 of a JSON object), is redacted whole.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){1,2}|eyJ[A-Za-z0-9_-]{17,}")
# An opaque credential after "Bearer ": 20+ token68 characters (so "bearer token" in prose is left alone).
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/-]{20,}=*")
ACCESS_LOGGER = "uvicorn.access"


def scrub(text: str) -> str:
    """`text` with every token-shaped substring replaced."""
    if "eyJ" not in text and "earer" not in text:  # the common case, cheaply
        return text
    return _BEARER.sub(r"\1" + REDACTED, _JWT.sub(REDACTED, text))


def untouched(values: tuple[Any, ...]) -> bool:
    """Whether `_scrub_arg` would leave every value as it is, decided in one loop (no call per value): the
    common case of every log line, and the test runner/observe/lines.py applies before its short way."""
    for arg in values:
        if arg is None or isinstance(arg, (int, float)):
            continue
        if not (isinstance(arg, str) and "eyJ" not in arg and "earer" not in arg):
            return False
    return True


def _scrub_arg(value: Any) -> Any:
    if isinstance(value, (int, float)):  # keeps %d working
        return value
    text = str(value)
    clean = scrub(text)
    return value if clean == text else clean


class RedactFilter(logging.Filter):
    """On every record of every handler, so it is on the path of every log line: the common case is cheap."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == ACCESS_LOGGER and isinstance(args, tuple) and len(args) >= 3:
            # uvicorn: '%s - "%s %s HTTP/%s" %d' with (client, method, path?query, version, status).
            path = args[2]
            if not isinstance(path, str) or "?" in path:
                args = (*args[:2], str(path).partition("?")[0], *args[3:])
        if isinstance(args, tuple):
            if not untouched(args):
                args = tuple(_scrub_arg(a) for a in args)
            record.args = args
        elif isinstance(args, dict):
            record.args = {k: _scrub_arg(v) for k, v in args.items()}
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        fields = getattr(record, "fields", None)  # the JSON log's structured fields (the audit line's)
        if isinstance(fields, dict) and not untouched(tuple(fields.values())):
            record.fields = {key: _scrub_arg(value) for key, value in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


FILTER = RedactFilter()  # the one instance: runner/observe/lines.py checks a handler has exactly it


def install() -> None:
    """Put the filter on every handler configured so far (call it after uvicorn configured its logging)."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [item for item in logging.root.manager.loggerDict.values() if isinstance(item, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            handler.addFilter(FILTER)
