"""What a build makes of `completions:`: per prompt argument and per template parameter, a completer.

A completer turns the typed value and the other arguments already given into candidate
values. A static list is filtered by prefix here; a `module:function` is the user's code,
called as `fn(value, context)`, sync (on the tool pool) or async. Both live in the
definition's catalog, so a reload swaps them with the prompts and templates they belong to.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class CompletionFailed(Exception):
    """The user's completion function failed or returned something that is not a list of strings."""


class Completer(Protocol):
    async def __call__(self, value: str, context: Mapping[str, str]) -> list[str]: ...


@dataclass(frozen=True)
class StaticCompleter:
    """A fixed list, filtered by the typed prefix, ignoring case; in the manifest's order."""

    values: tuple[str, ...]

    async def __call__(self, value: str, context: Mapping[str, str]) -> list[str]:
        typed = value.casefold()
        return [v for v in self.values if v.casefold().startswith(typed)]


@dataclass(frozen=True)
class FunctionCompleter:
    """`ref`'s function, already offloaded (sync code runs on the tool pool, never on the event loop)."""

    ref: str
    call: Callable[[str, dict[str, str]], Awaitable[Any]]

    async def __call__(self, value: str, context: Mapping[str, str]) -> list[str]:
        try:
            result = await self.call(value, dict(context))  # a copy: the user's code may not alter the request
        except Exception as exc:
            raise CompletionFailed(f"{self.ref} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(result, str) or not isinstance(result, list | tuple):
            raise CompletionFailed(f"{self.ref} returned {type(result).__name__}, not a list of strings")
        if not all(isinstance(v, str) for v in result):
            raise CompletionFailed(f"{self.ref} returned a list holding something other than strings")
        return list(result)


@dataclass
class Completions:
    """Completers by prompt name and by URI template, then by argument (or parameter) name."""

    prompts: dict[str, dict[str, Completer]] = field(default_factory=dict)
    templates: dict[str, dict[str, Completer]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.prompts or self.templates)


def completer_problem(fn: Callable[..., Any]) -> str | None:
    """Why `fn` cannot be called as `fn(value, context)`, or None when it can."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: the call will tell
    try:
        signature.bind("", {})
    except TypeError as exc:
        return f"a completion function is called as fn(value, context), and {signature} does not accept that ({exc})"
    return None
