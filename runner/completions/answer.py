"""`completion/complete`: the live definition's completer for a prompt argument or template parameter.

The answer is bounded as the spec says: at most 100 values, with `total` and
`hasMore` telling the client how many there were. An unknown prompt or template
is the client's mistake (-32602); a failing completion function is the server's
(-32603, logged once at WARNING, its exception text never sent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, Completion, PromptReference, ResourceTemplateReference

from runner.completions.table import CompletionFailed, Completions

MAX_VALUES = 100  # the spec's cap on `values` in one completion response
log = logging.getLogger("runner.completions")


async def complete(
    completions: Completions,
    ref: PromptReference | ResourceTemplateReference,
    argument: str,
    value: str,
    context: Mapping[str, str] | None,
    *,
    known: Callable[[PromptReference | ResourceTemplateReference], bool],
) -> Completion:
    """Complete `argument` of `ref`; `known(ref)` says whether the caller may see the prompt or template."""
    if not known(ref):
        what = f"prompt: {ref.name}" if isinstance(ref, PromptReference) else f"resource template: {ref.uri}"
        raise MCPError(code=INVALID_PARAMS, message=f"Unknown {what}")
    table = (
        completions.prompts.get(ref.name) if isinstance(ref, PromptReference) else completions.templates.get(ref.uri)
    )
    completer = (table or {}).get(argument)
    if completer is None:
        return Completion(values=[], total=0, has_more=False)
    try:
        values = await completer(value, context or {})
    except CompletionFailed as exc:
        log.warning("completion of %r failed: %s", argument, exc)
        raise MCPError(code=INTERNAL_ERROR, message=f"completion of {argument!r} failed") from None
    return Completion(values=values[:MAX_VALUES], total=len(values), has_more=len(values) > MAX_VALUES)
