"""The session's level, kept on the SDK's per-connection state, and the filter that applies it.

The SDK gates `notifications/message` per request: on 2026-07-28 from the request's
`_meta` opt-in, on handshake versions it lets every level through and leaves filtering
to the application. The level lives in `Connection.state`, the SDK's per-connection
scratch space: one short string per session, dropped with the connection when the
session ends, so nothing here grows with sessions that come and go.

Two SDK private attributes are reached, here only: the per-request `ServerSession`
holds its `Connection` as `_connection` and its deliverable levels as
`_allowed_log_levels` (the gate its `send_log_message` checks). There is no public way
to narrow that gate, or to read it. If the SDK renames either, `tests/test_logging.py` fails
and so does a request from a client that has set a level (loudly, never silently unfiltered).

`send_log` sends a log message the runner passes on (an upstream's, runner/upstreams) through
that same gate, without `send_log_message`: the SDK deprecates it with 2026-07-28's logging, and
its warning would name the runner's own code in the log as if the runner's user had called it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, get_args

from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import (
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    RequestId,
    SetLevelRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

LEVELS: tuple[str, ...] = get_args(LoggingLevel)  # least to most severe, as the spec lists them
STATE_KEY = "mcp-runner/logLevel"
log = logging.getLogger("runner.deprecation")


def _connection(session: Any) -> Any:
    connection = getattr(session, "_connection", None)
    if connection is None or not isinstance(getattr(connection, "state", None), dict):
        raise RuntimeError("the mcp SDK changed: ServerSession._connection.state is gone (runner/loglevel/session.py)")
    return connection


async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
    """`logging/setLevel`: remember the level for the rest of this session."""
    _connection(ctx.session).state[STATE_KEY] = params.level
    return EmptyResult()


class LevelFilter:
    """Server middleware: a handshake-era request's log gate narrowed to its session's level and above."""

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            level = _connection(ctx.session).state.get(STATE_KEY)
            if level is not None:
                if not hasattr(ctx.session, "_allowed_log_levels"):
                    raise RuntimeError("the mcp SDK changed: ServerSession._allowed_log_levels is gone")
                ctx.session._allowed_log_levels = frozenset(LEVELS[LEVELS.index(level) :])
        return await call_next(ctx)


async def send_log(session: Any, params: LoggingMessageNotificationParams, related_request_id: RequestId) -> None:
    """`params` to the client on the stream of request `related_request_id`, if that request's gate lets its level
    through: what the SDK's deprecated `send_log_message` does (on 2026-07-28, the request's `_meta` opt-in; on
    handshake versions, the session's `logging/setLevel` level that `LevelFilter` set), without its warning."""
    allowed = getattr(session, "_allowed_log_levels", None)
    if allowed is None:
        raise RuntimeError("the mcp SDK changed: ServerSession._allowed_log_levels is gone (runner/loglevel)")
    if params.level not in allowed:
        return  # not opted in at that level on this request (2026-07-28), or below the session's level
    message = LoggingMessageNotificationParams(level=params.level, data=params.data, logger=params.logger)
    await session.send_notification(LoggingMessageNotification(params=message), related_request_id=related_request_id)


def quiet_deprecation() -> None:
    """Print each of the SDK's deprecation warnings once per process, not once per call site and reload.

    `ctx.info()` and friends (and sampling, elicitation...) carry the SDK's
    `MCPDeprecationWarning`. Python shows a warning once per code location and module,
    a reload re-imports the user's modules (a fresh registry each time), and the SDK
    raises the same warning again from its own frames. A "once" filter is not enough:
    anything that enters `warnings.catch_warnings()` resets the registry it relies on.
    So the printing itself is deduplicated, by message, for this warning class only.
    """
    previous = warnings.showwarning
    if getattr(previous, "_mcp_runner_once", False):
        return  # installed already
    seen: set[str] = set()

    def show_once(message: Any, category: type[Warning], filename: str, lineno: int, *args: Any, **kwargs: Any) -> None:
        if not issubclass(category, MCPDeprecationWarning):
            previous(message, category, filename, lineno, *args, **kwargs)
            return
        text = str(message)
        if text not in seen and len(seen) < MAX_DISTINCT:
            seen.add(text)  # one line, in the log's format, naming the first place it came from
            log.warning("%s (first at %s:%d; said once)", text, filename, lineno)

    show_once._mcp_runner_once = True  # type: ignore[attr-defined]
    warnings.showwarning = show_once


MAX_DISTINCT = 100  # the SDK's deprecation messages are a handful of fixed strings; never an unbounded set
