"""What the unauthenticated `/healthz` may say about a failed reload: where, and what kind of problem.

A problem's message can carry anything the user's code or manifest put there:
an exception raised at import time with a connection string in it, a value
echoed back by the schema check. `/healthz` answers without a token (and to
any process on the machine), so it gets only the location (`file:line:col`,
plus the file and line an import-time exception was raised at) and a kind
from a fixed vocabulary. The full report goes to the server log.

The kind is recognised from the message's fixed wording; a message this table
does not know becomes "invalid manifest", never its text.
"""

from __future__ import annotations

import builtins
import functools
import re

from runner.manifest.errors import Problem

# (pattern on the message, kind); group 1, when present, must be an exception class name.
_KINDS: list[tuple[str, str]] = [
    (r"^YAML syntax error", "YAML syntax error"),
    (r"^YAML error", "YAML error"),
    (r"^the manifest is empty", "empty manifest"),
    (r"^cannot read the manifest", "cannot read the manifest"),
    (r"^keys must be strings", "non-string key"),
    (r"^duplicate key", "duplicate key"),
    (r"^duplicate tool", "duplicate tool name"),
    (r"^duplicate prompt", "duplicate prompt name"),
    (r"^duplicate resource", "duplicate resource uri"),
    (r"^unknown key", "unknown key"),
    (r"^missing required key", "missing required key"),
    (r"^environment variable .* is not set", "unset environment variable"),
    (r'expected "module:attribute"', "invalid function reference"),
    (r"^cannot import module", "module not found"),
    (r"^importing .* raised (\w+)", "exception at import"),
    (r"^importing .* failed", "import failed"),
    (r"^syntax error", "Python syntax error"),
    (r"has no attribute", "missing attribute"),
    (r"not a callable$", "not callable"),
    (r"^cannot register", "cannot register"),
    (r"still refers to code from the replaced module", "old code a reload cannot replace, restart needed"),
    (r"^bind names", "invalid bind"),
    (r"^input_schema", "invalid input_schema"),
    (r"^output_schema", "invalid output_schema"),
    (r"^_meta key", "invalid _meta key"),
    (r"^structured_output: false contradicts", "structured_output contradicts output_schema"),
    (r"needs a signin block", "needs a signin block"),
    (r"^signin\.resource is required", "missing signin.resource"),
    (r"^refusing to serve", "refused to serve on this host"),
    (r"^[\w.\[\]-]+: ", "invalid value"),
]
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)')
_MODULE_AT = re.compile(r" at (\S+:\d+:\d+)")


def exception_kind(name: str) -> str:
    """A builtin exception's class name; any other class is just "exception" (its name is the user's to choose)."""
    return name if isinstance(getattr(builtins, name, None), type) else "exception"


@functools.cache
def _compiled() -> list[tuple[re.Pattern[str], str]]:
    """Compiled on the first failed reload, not at every start-up (~5 ms for the 30 of them)."""
    return [(re.compile(pattern), kind) for pattern, kind in _KINDS]


def problem_kind(problem: Problem) -> str:
    """The problem's kind, plus where in the user's code it happened when the message says so."""
    message = problem.message
    for pattern, kind in _compiled():
        match = pattern.search(message)
        if match is None:
            continue
        if pattern.groups:
            kind = f"{kind} ({exception_kind(match.group(1))})"
        if kind == "Python syntax error" and (at := _MODULE_AT.search(message)):
            kind += f" at {at.group(1)}"
        frames = [m for line in problem.detail.splitlines() if (m := _FRAME.match(line))]
        if frames:
            kind += f", raised at {frames[-1].group(1)}:{frames[-1].group(2)}"
        return kind
    return "invalid manifest"


def public_summary(problems: list[Problem]) -> str:
    """One `file:line:col: kind` line per problem."""
    return "\n".join(f"{p.location}: {problem_kind(p)}" for p in problems)
