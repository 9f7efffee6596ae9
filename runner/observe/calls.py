"""One observation per tool call, resource read and prompt get: a metric, an audit line.

`Observer` is context-tier server middleware (the SDK's `Server.middleware`):
it sees every inbound MCP request, after the bearer gate, with the caller's
token in context. For the three calls that run user code it measures the
time to answer, decides the outcome and records it:

- `ok`: answered;
- `tool_error` (tools) / `error` (resources, prompts): the user's code ran and failed;
- `refused`: the user's code never ran: an unknown name, a scope the token
  lacks, arguments that fail the schema, or a full tool pool. The runner's
  own refusals say so through `refused()`, since the SDK answers several of
  them with the same error result a failing tool gets.

The name is a metric label only when the served manifest has it: anything
else a client sends is `_unknown`, so a client cannot grow the series.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, CallToolResult
from pydantic import ValidationError

from runner.http.redact import REDACTED, scrub
from runner.observe import lines, metrics

if TYPE_CHECKING:
    from runner.attach import LiveServer

audit = logging.getLogger("runner.audit")

UNKNOWN = "_unknown"
KINDS = {"tools/call": "tool", "resources/read": "resource", "prompts/get": "prompt"}
VERBS = {"tool": "tool call", "resource": "resource read", "prompt": "prompt get"}
MAX_NAME = 200  # characters of a client-supplied name shown in a log line
MAX_ARGUMENTS = 2000  # characters of logged arguments (--log-arguments), then cut
# Argument keys whose values are credentials whatever they look like.
SECRET_KEY = re.compile(r"(?i)token|secret|passw|authori[sz]ation|api[_-]?key|credential|cookie|private[_-]?key")
_REFUSAL_CODES = {INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND}


class _Slot:
    __slots__ = ("refused",)

    def __init__(self) -> None:
        self.refused = False


_CURRENT: ContextVar[_Slot | None] = ContextVar("mcp_runner_call", default=None)


def refused() -> None:
    """The call being served is refused by the runner (scope, arguments, busy): it never reached user code."""
    slot = _CURRENT.get()
    if slot is not None:
        slot.refused = True


def redact_arguments(arguments: Any) -> str:
    """Arguments fit for a log line: credential-named keys and token-shaped strings replaced, then cut.

    Token-shaped text is scrubbed in the JSON text as a whole, so a token a client sends as a KEY is
    replaced as well as one sent as a value (issue 22: a key was logged whole in the JSON log's
    `arguments` field, which no filter reads). A token is base64url and dots, written verbatim by
    `json.dumps`, and `[redacted]` needs no escape: the text stays valid JSON.
    """

    def clean(value: Any, depth: int = 0) -> Any:
        if depth > 20:
            return "..."
        if isinstance(value, dict):
            return {str(k): REDACTED if SECRET_KEY.search(str(k)) else clean(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v, depth + 1) for v in value]
        return value

    text = scrub(json.dumps(clean(arguments), ensure_ascii=False, default=str))
    return text if len(text) <= MAX_ARGUMENTS else text[:MAX_ARGUMENTS] + f"... ({len(text)} chars)"


class Observer:
    """Server middleware: metrics and an audit line for each call; listen streams counted."""

    def __init__(self, live: LiveServer, log_arguments: bool = False) -> None:
        self.live = live
        self.log_arguments = log_arguments
        self._resources: tuple[Any, set[str], list[Any]] | None = None  # (manager, static URIs, templates)

    async def __call__(self, ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        kind = KINDS.get(ctx.method)
        if kind is None:
            if ctx.method != "subscriptions/listen":
                return await call_next(ctx)
            metrics.listen_streams(1)
            try:
                return await call_next(ctx)
            finally:
                metrics.listen_streams(-1)
        params = ctx.params or {}
        asked = params.get("uri" if kind == "resource" else "name")
        label = self._label(kind, asked)
        slot = _Slot()
        reset = _CURRENT.set(slot)
        started = time.perf_counter()
        outcome = "ok"
        try:
            result = await call_next(ctx)
            # The shapes the SDK's own span treats as a tool error (mcp/server/_otel.py).
            match result:
                case CallToolResult(is_error=True) | {"isError": True}:
                    outcome = "tool_error"
                case _:
                    pass
            return result
        except MCPError as exc:
            outcome = "refused" if exc.error.code in _REFUSAL_CODES else "error"
            raise
        except ValidationError:
            outcome = "refused"
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            _CURRENT.reset(reset)
            seconds = time.perf_counter() - started
            if slot.refused or label == UNKNOWN:
                outcome = "refused"
            elif outcome == "tool_error" and kind != "tool":
                outcome = "error"
            elif outcome == "error" and kind == "tool":
                outcome = "tool_error"
            metrics.call(kind, label, outcome, seconds)
            self._audit(kind, asked, label == asked, outcome, seconds, params.get("arguments"))

    def _label(self, kind: str, asked: Any) -> str:
        if not isinstance(asked, str):
            return UNKNOWN
        if kind == "tool":
            served = self.live._tool_manager.get_tool(asked) is not None
        elif kind == "prompt":
            served = self.live._prompt_manager.get_prompt(asked) is not None
        else:
            label = self._resource_label(asked)
            return label if label != UNKNOWN else self.live.upstream_label(kind, asked) or UNKNOWN
        return asked if served else self.live.upstream_label(kind, asked) or UNKNOWN

    def _resource_label(self, uri: str) -> str:
        """The served resource's URI, or the template that matches `uri` (its parameters are client input)."""
        manager = self.live._resource_manager
        if self._resources is None or self._resources[0] is not manager:  # a reload swapped the catalog
            self._resources = (manager, {str(r.uri) for r in manager.list_resources()}, manager.list_templates())
        _, static, templates = self._resources
        if uri in static:
            return uri
        for template in templates:
            try:
                if template.matches(uri) is not None:
                    return str(template.uri_template)
            except Exception:  # a URI the template refuses (path traversal...): not a served resource
                return UNKNOWN
        return UNKNOWN

    def _audit(self, kind: str, asked: Any, served: bool, outcome: str, seconds: float, arguments: Any) -> None:
        """The audit line. Written with `makeRecord` and `handle`, as the access line is: `Logger.info` would
        walk the stack for the caller's file and line (`findCaller`), which no format shows."""
        if not audit.isEnabledFor(logging.INFO):
            return
        token = get_access_token()
        subject = token.subject if token is not None else None
        client_id = token.client_id if token is not None else None
        # A name of the manifest's is quoted once; client input every time, never cached.
        name, quoted = (_served_name if served else _shown_name)(asked)
        fields: dict[str, Any] = {
            "event": "audit",
            "kind": kind,
            "name": name,
            "outcome": outcome,
            "duration_ms": round(seconds * 1000, 3),
            "subject": subject,
            "client_id": client_id,
        }
        who = "anonymous" if token is None else _who(subject, client_id)
        text = f"{VERBS[kind]} {quoted} by {who}: {outcome} in {seconds * 1000:.1f} ms"
        if self.log_arguments and kind != "resource":
            fields["arguments"] = logged = redact_arguments(arguments or {})
            text += f" arguments={logged}"
        if lines.write(audit, audit.name, "%s", (text,), fields):  # without a LogRecord, when that is the same
            return
        record = audit.makeRecord(audit.name, logging.INFO, __file__, 0, "%s", (text,), None)
        record.fields = fields
        audit.handle(record)


def _shown_name(asked: Any) -> tuple[str | None, str]:
    """The asked name as the audit line shows it (scrubbed, cut), and its quoted form."""
    name = scrub(str(asked)[:MAX_NAME]) if asked is not None else None
    return name, json.dumps(name, ensure_ascii=True)


# A served tool or prompt name, or resource URI (from the manifest, so few).
_served_name = functools.lru_cache(maxsize=1024)(_shown_name)


@functools.lru_cache(maxsize=1024)
def _who(subject: str | None, client_id: str | None) -> str:
    """The caller as the text line shows it; claims of verified tokens, so the few callers a server sees."""
    return f"{json.dumps(subject)} (client {json.dumps(client_id)})"
