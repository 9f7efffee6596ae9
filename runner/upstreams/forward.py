"""An upstream's log messages, elicitation and sampling requests during a call, passed to the client that made it.

They all arrive on the one connection the runner keeps to the upstream. `CALLER`, when set in the context
the SDK's client runs the callbacks below in, is the runner's `Context` of the call they belong to, and
only of that call: two callers' messages never mix.
- Over streamable HTTP the upstream sends them on that call's own POST response stream, and the SDK's
  client reads that stream in a task started in the caller's context (the context streams carry each
  sender's `contextvars`): `CALLER`, set around the forwarded call (served.call_tool), is there.
- Over stdio one reader task reads everything; runner/upstreams/inflight.py sets `CALLER` for a message
  read while exactly one call is in flight on that upstream (the pipe is ordered), and leaves it unset
  otherwise.
- For a 2026-07-28 client, which has no stream to ask on mid-call, `CALLER` is the `HeldCaller` of the
  call (runner/upstreams/rounds.py): a question waits there for the client's next round.
A message without it (several stdio calls in flight, an HTTP upstream's standalone GET stream) belongs to
no known call: a log message goes to the runner's debug log (naming the upstream, never its data), a
question is refused with an error to the upstream; nothing is ever asked of a client that did not make
the call.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

import mcp_types as types
from mcp.client.session import ClientRequestContext
from mcp.shared.message import ServerMessageMetadata

from runner.loglevel import send_log

logger = logging.getLogger("runner")

CALLER: ContextVar[Any] = ContextVar("runner_upstream_caller", default=None)  # the runner's Context of the call
UNTIED: ContextVar[str] = ContextVar("runner_upstream_untied", default="an upstream")  # who sent it, for the log


class HeldCaller:
    """A call held across a 2026-07-28 client's rounds (rounds.Held): asks in the next round, logs to the current."""

    async def ask(self, request: types.InputRequest) -> Any:
        raise NotImplementedError

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        raise NotImplementedError


UNKNOWN_CALL = "the runner cannot tell which of its clients' calls this request belongs to, so it asks no one"


async def log(params: types.LoggingMessageNotificationParams) -> None:
    """The upstream's log message, to the calling client on its call's stream; outside a known call, dropped."""
    caller = CALLER.get()
    if caller is None:
        logger.debug("%s: log message outside a known call: not forwarded", UNTIED.get())
        return
    try:
        if isinstance(caller, HeldCaller):
            await caller.log(params)
            return
        await send_log(caller.session, params, caller.request_id)  # not the SDK's deprecated send_log_message
    except Exception as exc:  # the call goes on without its log line
        logger.debug("upstream log message not forwarded: %s", _why(exc))


async def elicit(
    context: ClientRequestContext | None, params: types.ElicitRequestParams
) -> types.ElicitResult | types.ErrorData:
    """The upstream's question to the user, asked of the client whose call it is answering."""
    caller = CALLER.get()
    if caller is None:
        return _untied()
    if (undeclared := _undeclared(caller, "elicitation")) is not None:
        return undeclared
    try:
        if isinstance(caller, HeldCaller):
            answer = await caller.ask(types.ElicitRequest(params=params))
            return answer if isinstance(answer, types.ElicitResult) else _mismatched("elicitation")
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
        return _untied()
    if (undeclared := _undeclared(caller, "sampling")) is not None:
        return undeclared
    result: type[Any] = types.CreateMessageResultWithTools if params.tools else types.CreateMessageResult
    try:
        if isinstance(caller, HeldCaller):
            answer = await caller.ask(types.CreateMessageRequest(params=params))
            kinds = (types.CreateMessageResult, types.CreateMessageResultWithTools)
            return answer if isinstance(answer, kinds) else _mismatched("sampling")
        return await caller.session.send_request(  # type: ignore[no-any-return]
            types.CreateMessageRequest(params=params),
            result,
            metadata=ServerMessageMetadata(related_request_id=caller.request_id),
        )
    except Exception as exc:
        return _unanswered("sampling", exc)


def _undeclared(caller: Any, capability: str) -> types.ErrorData | None:
    """A calling client that did not declare `capability` is never asked; the upstream hears that, not the text of
    whatever the SDK would raise on the way (a 2026-07-28 client without it has no stream to be asked on)."""
    declared = getattr(caller, "client_capabilities", None)  # the runner's Context; a HeldCaller was checked already
    if declared is None or getattr(declared, capability, None) is not None:
        return None
    message = f"the calling client did not declare the {capability} capability, so the runner cannot ask it"
    return types.ErrorData(code=types.MISSING_REQUIRED_CLIENT_CAPABILITY, message=message)


def _mismatched(kind: str) -> types.ErrorData:
    return types.ErrorData(code=types.INVALID_PARAMS, message=f"the calling client's answer is not a {kind} result")


def _untied() -> types.ErrorData:
    logger.debug("%s: question outside a known call: refused", UNTIED.get())
    return types.ErrorData(code=types.INVALID_REQUEST, message=UNKNOWN_CALL)


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
