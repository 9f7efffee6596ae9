"""An upstream's log messages, elicitation and sampling requests during a call, passed to the client that made it.

They all arrive on the one connection the runner keeps to the upstream, and nothing in them names the call
they belong to. Over streamable HTTP the upstream sends them on that call's own POST response stream, and
the SDK's client reads that stream in a task started in the caller's context (the context streams carry
each sender's `contextvars`) and runs the callbacks below in it. So `CALLER`, set around the forwarded
call (served.call_tool), is the runner's `Context` of that call, and only of that call: two callers'
messages never mix. A message without it (a stdio upstream, whose single reader task carries no call, or
an HTTP upstream's standalone GET stream) belongs to no known call: a log message is dropped, a question
is refused with an error to the upstream; nothing is ever asked of a client that did not make the call.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import mcp_types as types
from mcp.client.session import ClientRequestContext
from mcp.shared.message import ServerMessageMetadata

logger = logging.getLogger("runner")

CALLER: ContextVar[Any] = ContextVar("runner_upstream_caller", default=None)  # the runner's Context of the call

UNKNOWN_CALL = "the runner cannot tell which of its clients' calls this request belongs to, so it asks no one"


async def log(params: types.LoggingMessageNotificationParams) -> None:
    """The upstream's log message, to the calling client on its call's stream; outside a known call, dropped."""
    caller = CALLER.get()
    if caller is None:
        logger.debug("upstream log message outside a known call: not forwarded")
        return
    try:
        await caller.session.send_log_message(
            params.level, params.data, params.logger, related_request_id=caller.request_id
        )
    except Exception as exc:  # the call goes on without its log line
        logger.debug("upstream log message not forwarded: %s", _why(exc))


async def elicit(
    context: ClientRequestContext | None, params: types.ElicitRequestParams
) -> types.ElicitResult | types.ErrorData:
    """The upstream's question to the user, asked of the client whose call it is answering."""
    caller = CALLER.get()
    if caller is None:
        return types.ErrorData(code=types.INVALID_REQUEST, message=UNKNOWN_CALL)
    try:
        if isinstance(params, types.ElicitRequestURLParams):
            return await caller.session.elicit_url(  # type: ignore[no-any-return]
                params.message, params.url, params.elicitation_id, related_request_id=caller.request_id
            )
        return await caller.session.elicit_form(  # type: ignore[no-any-return]
            params.message, params.requested_schema, related_request_id=caller.request_id
        )
    except Exception as exc:
        return _unanswered("elicitation", exc)


async def sample(
    context: ClientRequestContext | None, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult | types.CreateMessageResultWithTools | types.ErrorData:
    """The upstream's sampling request, sent as it is to the client whose call it is answering."""
    caller = CALLER.get()
    if caller is None:
        return types.ErrorData(code=types.INVALID_REQUEST, message=UNKNOWN_CALL)
    result: type[Any] = types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
    try:
        return await caller.session.send_request(  # type: ignore[no-any-return]
            types.CreateMessageRequest(params=params),
            result,
            metadata=ServerMessageMetadata(related_request_id=caller.request_id),
        )
    except Exception as exc:
        return _unanswered("sampling", exc)


async def log_message(params: dict[str, Any]) -> None:
    """A log notification's params as they came on a call's stream (runner/upstreams/lean.py)."""
    try:
        parsed = types.LoggingMessageNotificationParams.model_validate(params)
    except ValueError:
        return  # not a log message this runner can pass on
    await log(parsed)


async def answer(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The `result` or `error` member of the answer to an upstream's request on a call's stream (lean.py)."""
    outcome: Any
    try:
        if method == "elicitation/create":
            request = types.ElicitRequest.model_validate({"method": method, "params": params})
            outcome = await elicit(None, request.params)
        elif method == "sampling/createMessage":
            outcome = await sample(None, types.CreateMessageRequestParams.model_validate(params))
        elif method == "ping":
            return {"result": {}}
        else:
            outcome = types.ErrorData(code=types.METHOD_NOT_FOUND, message=f"{method} is not supported")
    except ValueError as exc:  # pydantic's ValidationError: the upstream's request is malformed
        outcome = types.ErrorData(code=types.INVALID_PARAMS, message=_why(exc))
    dumped = outcome.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {"error": dumped} if isinstance(outcome, types.ErrorData) else {"result": dumped}


def _unanswered(kind: str, exc: Exception) -> types.ErrorData:
    """The calling client could not answer (no such capability, an error, gone): the upstream hears why."""
    error = getattr(exc, "error", None)
    if isinstance(error, types.ErrorData):
        return error
    text = f"the calling client did not answer the {kind}: {_why(exc)}"
    return types.ErrorData(code=types.INTERNAL_ERROR, message=text)


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
