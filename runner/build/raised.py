"""What a client is told, and the log keeps, when a tool, resource or prompt raises.

The SDK answers every crash with `Error executing tool <name>` and a full traceback
in the log (some 40 lines, one of them the user's), and gives a model no way to read
why its call failed. Here the exception the user's code raised decides:

- Anticipated: `ToolError`, `ResourceError` (the SDK's "failures you saw coming") and
  `ValueError` with its subclasses, bar pydantic's own (a `ValidationError` quotes the
  values it refused, which may be data the tool read, not the caller's). Their
  message is the answer, so a model can correct its arguments; one INFO line, no
  traceback. The same in every `server.error_details` mode: raising them is how a
  tool talks to the model.
- Anything else is a crash. The client gets `Internal error in tool 'get_note' (ref
  3f9c2a1b)` (`safe`), the same plus the exception's type and message (`full`), or no
  reference (`none`); never, in `safe`, a word of the exception (it may hold a
  secret). The log gets ONE record with that reference (in every mode: it names the
  failure in a ticket even when the client never saw it), showing the user's own
  frames (the import-error trim of runner/build/resolve.py); the whole traceback,
  SDK frames included, only when DEBUG is on.

The SDK wraps what user code raises (`ToolError`/`UnexpectedToolError` around a tool,
`UnexpectedResourceError` around a resource, two `ValueError`s around a prompt), each
with the original as `__cause__`: `original` unwraps them.
"""

from __future__ import annotations

import logging
import os
import secrets
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mcp
from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedResourceError, UnexpectedToolError

from runner.build.pool import PoolFull
from runner.build.resolve import user_traceback
from runner.http.redact import scrub
from runner.manifest.settings import ErrorDetails
from runner.observe.calls import refused

logger = logging.getLogger("runner.errors")

_SDK = os.path.dirname(os.path.abspath(mcp.__file__)) + os.sep
_CRASH_WRAPPERS = (UnexpectedToolError, UnexpectedResourceError)
MAX_NAME = 200  # characters of a client-supplied name (a resource URI) in a log line
# The request each kind answers, and its parameter that names what it calls: a failure is translated
# only there (see `answering`).
REQUESTS = {"tool": ("tools/call", "name"), "resource": ("resources/read", "uri"), "prompt": ("prompts/get", "name")}


def original(exc: BaseException) -> BaseException:
    """What the user's code raised: `exc` without the SDK's wrappers."""
    return unwrapped(exc)[-1]


def unwrapped(exc: BaseException) -> list[BaseException]:
    """`exc`, and each exception it wraps, down to what the user's code raised (the last)."""
    chain = [exc]
    while exc.__cause__ is not None and (isinstance(exc, _CRASH_WRAPPERS) or _raised_by_sdk(exc)):
        exc = exc.__cause__
        chain.append(exc)
    return chain


def _raised_by_sdk(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(_SDK)


def anticipated(exc: BaseException) -> bool:
    """A failure the user's code meant the client to read (the module docstring)."""
    if isinstance(exc, _CRASH_WRAPPERS):
        return False
    if isinstance(exc, ToolError | ResourceError):
        return True
    # pydantic's own ValueErrors: a ValidationError quotes the values it refused (data the tool read, maybe a
    # secret), a serialization error is a return value that could not be sent: both the server's to fix.
    return isinstance(exc, ValueError) and not type(exc).__module__.startswith("pydantic_core")


def refused_if_busy(exc: BaseException) -> None:
    """A full tool pool refused a sync resource or prompt: it never ran (a tool's is the SDK's ToolError)."""
    if isinstance(original(exc), PoolFull):
        refused()


def answering(context: Any, kind: str, name: str) -> bool:
    """Whether `context` is the client's request for this very call, the one whose answer this failure is.

    A tool that reads a resource (`ctx.read_resource`), or calls the server in-process, reaches the
    same methods: there the failure stays an exception, for that code to catch or to fail with, as
    the SDK has it.
    """
    method, key = REQUESTS[kind]
    try:
        request = context.request_context
    except (AttributeError, ValueError):  # no Context, or one outside a request
        return False
    return request.method == method and (request.params or {}).get(key) == name


@dataclass(frozen=True)
class ErrorPolicy:
    """`server.error_details`, and the folder whose files are the user's code (for the trimmed traceback)."""

    details: ErrorDetails = "safe"
    root: Path = field(default_factory=Path.cwd)

    def answer(self, kind: str, name: str, exc: BaseException) -> str:
        """The text the client gets for `exc` (raised from the `kind` called `name`); logs it once."""
        raised = original(exc)
        shown = scrub(name[:MAX_NAME])
        if anticipated(raised):
            text = str(raised) or type(raised).__name__
            logger.info("%s %r failed: %r", kind, shown, text)  # %r: the text on one line
            return text
        ref = secrets.token_hex(4)
        self._log(kind, shown, raised, exc, ref)
        where = f"Internal error in {kind} {name!r}"
        if self.details == "none":
            return where
        if self.details == "full":
            return f"{where} (ref {ref}): {describe(raised)}"
        return f"{where} (ref {ref})"

    def _log(self, kind: str, name: str, raised: BaseException, exc: BaseException, ref: str) -> None:
        """The one ERROR record of a crash: reference, the user's frames, and everything else at DEBUG."""
        if not logger.isEnabledFor(logging.ERROR):
            return
        trace = user_traceback(raised, self.root, unwrapped(exc)[:-1]) or describe(raised)
        if logger.isEnabledFor(logging.DEBUG):
            trace += "\n\nThe whole traceback:\n" + "".join(traceback.format_exception(exc)).rstrip()
        args = (kind, name, type(raised).__name__, ref)
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "%s %r raised %s (ref %s)", args, None)
        record.exc_text = trace  # both formats print it as the record's exception (runner/observe/logs.py)
        record.fields = {"event": "error", "kind": kind, "name": name, "error": type(raised).__name__, "ref": ref}
        logger.handle(record)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
