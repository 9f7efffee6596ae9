"""Log formats: the classic text lines, or one JSON object per line (`--log-format json`).

Every record becomes one object with stable keys: `time` (UTC, ISO 8601,
milliseconds), `level`, `logger`, `message`, `exception` when there is one,
and the record's structured `fields` (the audit line's, runner/observe/calls.py).
and `detail` when the record has one (several lines a reader needs, such as a
failed reload's problems). uvicorn's access lines are taken apart into `client`, `method`, `path`,
`http_version`, `status`, plus `duration_ms`, `subject` and `client_id` from
runner/observe/access.py. The token filter (runner/http/redact.py) runs on
the handler before any formatter, so both formats see scrubbed text. Both
formats escape what a client could use to forge a line or drive a terminal,
for every record whoever logged it (runner/observe/escape.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Literal

from runner.http.redact import ACCESS_LOGGER, scrub
from runner.observe import escape, lines
from runner.observe.access import request_fields

LogFormat = Literal["text", "json"]
FORMATS = ("text", "json")
ENV = "MCP_RUNNER_LOG_FORMAT"
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """logging.Formatter's text, with the date and time part of `asctime` formatted once a second, not per line,
    escaped (runner/observe/escape.py): the message on one line, a traceback or `detail` on indented lines."""

    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        record.message = escape.line(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        more = []
        detail = getattr(record, "detail", None)
        if isinstance(detail, str) and detail:
            more.append(detail)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            more.append(record.exc_text)
        if record.stack_info:
            more.append(self.formatStack(record.stack_info))
        for part in more:
            text += "\n" + escape.block(part.rstrip("\n"))
        return text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.stamp(record.created)

    def stamp(self, created: float) -> str:
        """`asctime` of a record created at `created` (time.time()), as logging.Formatter writes it."""
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime(self.default_time_format, self.converter(created)))
        # LogRecord's msecs, and logging.Formatter's default_msec_format.
        return "%s,%03d" % (cached[1], int((created - second) * 1000))  # noqa: UP031

    def line(self, created: float, name: str, message: str, args: Any, fields: Any) -> str:
        """What `format` gives an INFO record of logger `name` with this message, without exception or stack."""
        return f"{self.stamp(created)} INFO {name}: {escape.line(message)}"


class JSONFormatter(logging.Formatter):
    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        message = record.getMessage()
        document = self.document(record.created, record.levelname, record.name, message, record.args, fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(self.formatException(record.exc_info))
        if record.exc_text:
            document["exception"] = record.exc_text
        detail = getattr(record, "detail", None)
        if isinstance(detail, str) and detail:
            document["detail"] = detail
        if record.stack_info:
            document["stack"] = record.stack_info
        return escape.json_line(json.dumps(document, ensure_ascii=False, default=str))

    def document(self, created: float, level: str, name: str, message: str, args: Any, fields: Any) -> dict[str, Any]:
        second = int(created)
        cached = self._second
        if cached[0] != second:  # the date and time formatted once a second, as TextFormatter does
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        document: dict[str, Any] = {
            "time": f"{cached[1]}.{int((created - second) * 1000):03d}Z",  # LogRecord's msecs
            "level": level,
            "logger": name,
            "message": message,
        }
        if name == ACCESS_LOGGER:
            document.update(_access_fields(args))
        if isinstance(fields, dict):
            document.update(fields)
        return document

    def line(self, created: float, name: str, message: str, args: Any, fields: Any) -> str:
        """What `format` gives an INFO record of logger `name` with this message, without exception or stack."""
        document = self.document(created, "INFO", name, message, args, fields)
        return escape.json_line(json.dumps(document, ensure_ascii=False, default=str))


def _access_fields(args: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if isinstance(args, tuple) and len(args) == 5:  # uvicorn: (client, method, path, http version, status)
        client, method, path, version, status = args
        fields = {"client": client, "method": method, "path": path, "http_version": version, "status": status}
    fields.update(request_fields())
    return fields


def chosen(flag: str | None, manifest: str | None = None) -> LogFormat:
    """The flag, else MCP_RUNNER_LOG_FORMAT, else the manifest's server.log_format, else text."""
    for value in (flag, os.environ.get(ENV) or None, manifest):
        if value in FORMATS:
            return value  # type: ignore[return-value]
    return "text"


def env_problem() -> str | None:
    value = os.environ.get(ENV)
    if value and value not in FORMATS:
        return f"{ENV}={value!r}: must be one of {', '.join(FORMATS)}"
    return None


def configure(fmt: LogFormat) -> None:
    """Give every handler of the root logger the chosen format (the CLI set them up; uvicorn adds none)."""
    formatter = JSONFormatter() if fmt == "json" else TextFormatter(TEXT)
    handlers = logging.getLogger().handlers
    for handler in handlers:
        handler.setFormatter(formatter)
    # The access and audit lines may skip the LogRecord while this setup stands (runner/observe/lines.py).
    lines.take(handlers[0] if len(handlers) == 1 else None, formatter)
