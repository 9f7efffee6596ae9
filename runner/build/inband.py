"""A tool that asks by returning `InputRequiredResult` itself, called by a handshake-era client.

Such a tool (docs/asking.md, "Naming the questions yourself") is written for 2026-07-28 rounds: it reads
`ctx.input_responses` and answers `InputRequiredResult` while one is missing. A handshake-era client
(2025-11-25 and earlier) cannot receive that result (the SDK would refuse it with "Handler returned an
invalid result"), but it can be asked on the call's own stream, as the SDK asks it for a resolver: so the
runner sends each of the round's questions as a real request (`elicitation/create`,
`sampling/createMessage`, `roots/list`) and runs the tool again with the answers and its `requestState`,
as the client's next round would have, until the tool returns its result. Without a stream to ask on (a
`--stateless` server), the call fails with an error that says why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard

import mcp_types as types
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import is_version_at_least

MODERN = "2026-07-28"  # the first revision whose clients answer input_required themselves
MAX_ROUNDS = 16  # a tool that keeps asking is cut off


def needs_asking(result: Any, context: Any) -> TypeGuard[types.InputRequiredResult]:
    """Whether `result` asks questions a handshake-era client cannot take as a result."""
    if not isinstance(result, types.InputRequiredResult) or context is None:
        return False
    return not is_version_at_least(context.protocol_version or "", MODERN)


async def answered(
    name: str,
    arguments: dict[str, Any],
    result: types.InputRequiredResult,
    context: Context[Any, Any],
    again: Callable[[Context[Any, Any]], Awaitable[Any]],
    subscriptions: Any,
) -> Any:
    """Ask the client each round's questions on the call's stream and call the tool again, until it answers."""
    for _ in range(MAX_ROUNDS):
        responses: dict[str, Any] = {}
        for key, request in (result.input_requests or {}).items():
            responses[key] = await _ask(name, context, request)
        params = types.CallToolRequestParams(
            name=name, arguments=arguments, input_responses=responses, request_state=result.request_state
        )
        round_context: Context[Any, Any] = Context(
            request_context=context.request_context,
            mcp_server=context.mcp_server,
            input_params=params,
            subscriptions=subscriptions,
        )
        answer = await again(round_context)
        if not isinstance(answer, types.InputRequiredResult):
            return answer
        result = answer
    raise ToolError(f"tool {name!r} asked more than {MAX_ROUNDS} rounds of questions: stopped")


async def _ask(name: str, context: Context[Any, Any], request: types.InputRequest) -> Any:
    expected: type[Any]
    if isinstance(request, types.ElicitRequest):
        expected = types.ElicitResult
    elif isinstance(request, types.CreateMessageRequest):
        expected = types.CreateMessageResultWithTools if request.params.tools else types.CreateMessageResult
    else:
        expected = types.ListRootsResult
    metadata = ServerMessageMetadata(related_request_id=context.request_id)
    try:
        return await context.session.send_request(request, expected, metadata=metadata)
    except NoBackChannelError:
        raise ToolError(
            f"tool {name!r} asks its questions as a 2026-07-28 multi-round call (input_required), and this "
            f"client speaks {context.protocol_version} on a server without a stream to ask it on (--stateless): "
            "call it from a 2026-07-28 client"
        ) from None
