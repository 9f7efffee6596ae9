"""The two lines of every request (access, audit) written without the logging machinery, when that changes nothing.

Through `logging`, a line is a LogRecord (about twenty attributes, the process id
among them), the logger's and the handler's filter chains, the handler lock, the
formatter's `%`-formatting of the record's dict, then the write. Profiled in a
saturated server, that was about 6% of a tools/call's CPU for these two lines;
in isolation about 20 µs a line, against about 4 µs to format the same text
and write it.

`write` takes the short way only when the result is byte for byte what the
logging path would write: the setup is still the one `mcp-runner serve` made
(the root's single stderr handler, with the runner's formatter, text or JSON,
and the token filter, and no other handler or filter on the way), and no
argument has anything the token filter would change. Otherwise it returns False and the
caller logs as usual, so a handler that user code adds, a level or filter
changed, or a suspicious argument all take the ordinary, filtered path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from runner.http.redact import FILTER, untouched

_INFO = logging.INFO
_handler: logging.Handler | None = None
_formatter: object = None  # the runner's formatter on that handler, text or JSON (runner/observe/logs.py)
_line: Callable[[float, str, str, Any, Any], str] | None = None  # its `line`: an INFO record's text


def take(handler: logging.Handler | None, formatter: Any) -> None:
    """The handler and formatter (text or JSON, runner/observe/logs.py) `serve` set up (None: the short way is off)."""
    global _handler, _formatter, _line
    _handler, _formatter = handler, formatter
    _line = getattr(formatter, "line", None)


def write(handling: logging.Logger, name: str, message: str, args: tuple[Any, ...], fields: Any = None) -> bool:
    """Write `message % args` (with the JSON `fields`) as logger `name`'s INFO line, as `handling.handle(record)`
    would, if that can be done without a LogRecord; else False. The caller has checked the level."""
    handler, line_of = _handler, _line
    if handler is None or line_of is None or handler.formatter is not _formatter or not _plain_path(handling, handler):
        return False
    if not untouched((message, *args)):  # what the token filter would change goes through it
        return False
    if isinstance(fields, dict) and not untouched(tuple(fields.values())):
        return False
    line = line_of(time.time(), name, message % args, args, fields) + "\n"
    handler.acquire()
    try:
        stream = handler.stream  # type: ignore[attr-defined]  # a StreamHandler: checked in `_plain_path`
        stream.write(line)
        stream.flush()
    except Exception:
        return False  # the logging path retries, and reports an error its own way
    finally:
        handler.release()
    return True


def _plain_path(handling: logging.Logger, handler: logging.Handler) -> bool:
    """Whether an INFO record handled by `handling` reaches exactly `handler`, through exactly the token filter."""
    root = logging.root
    if root.handlers != [handler] or root.filters or root.disabled or handler.level > _INFO:
        return False
    if handler.filters != [FILTER] or type(handler) is not logging.StreamHandler:
        return False
    current: logging.Logger | None = handling
    while current is not None and current is not root:
        if current.handlers or current.filters or current.disabled or not current.propagate:
            return False
        current = current.parent
    return True
