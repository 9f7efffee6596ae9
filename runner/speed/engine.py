"""Which event loop and HTTP/1.1 parser `serve` runs on: uvloop + httptools unless told otherwise.

Why here: uvicorn picks httptools and uvloop only when it creates the loop
itself (`uvicorn.run`); the runner runs its own loop (`anyio.run`) so that it
can build and bind first, and so it got asyncio's loop and the pure-Python h11
parser. On the same machine uvloop + httptools served `tools/call` ~1.3x
faster (issue 12). `--loop asyncio` / `--http h11` fall back to the standard
library loop and h11, for a platform without the compiled packages (uvloop
has no Windows build) or to rule them out when chasing a bug.

The default degrades with one warning when a package cannot be imported; a
flag that asks for it by name is a clear error instead (exit 2).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio

from runner.speed import collector

logger = logging.getLogger("runner")

Loop = Literal["uvloop", "asyncio"]
Parser = Literal["httptools", "h11"]
LOOPS: tuple[Loop, ...] = ("uvloop", "asyncio")
PARSERS: tuple[Parser, ...] = ("httptools", "h11")
_FALLBACK = {"uvloop": "asyncio", "httptools": "h11"}
_FLAG = {"uvloop": "--loop", "httptools": "--http"}

T = TypeVar("T")


class Unavailable(Exception):
    """A loop or parser asked for by name cannot be imported on this machine."""


@dataclass(frozen=True)
class Engine:
    loop: Loop = "uvloop"
    http: Parser = "httptools"

    def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`anyio.run(func, *args)` on this engine's loop, with the collector tuned for serving."""
        collector.tune()
        options: dict[str, Any] = {}
        if self.loop == "uvloop":
            import uvloop

            options["loop_factory"] = uvloop.new_event_loop
        return anyio.run(func, *args, backend="asyncio", backend_options=options)


def _importable(module: str) -> str | None:
    """None if `module` imports, else why not (one line)."""
    try:
        importlib.import_module(module)
    except Exception as exc:  # an ImportError, or a broken build raising anything at import
        return f"{type(exc).__name__}: {exc}"
    return None


def choose(loop: Loop | None, http: Parser | None) -> Engine:
    """The engine for these flags (None: not given). Raises `Unavailable` for a named one that does not import."""
    chosen: dict[str, str] = {}
    for wanted, default in ((loop, "uvloop"), (http, "httptools")):
        name = wanted or default
        if name in _FALLBACK:  # a compiled package: is it there?
            why = _importable(name)
            if why is not None:
                fallback, flag = _FALLBACK[name], _FLAG[name]
                if wanted is not None:
                    raise Unavailable(
                        f"{flag} {name}: {name} cannot be imported ({why}); "
                        f"install it (pip install {name}) or pass {flag} {fallback}"
                    )
                logger.warning(
                    "%s cannot be imported (%s): serving on %s instead (pass %s %s to choose it without this warning)",
                    name,
                    why,
                    fallback,
                    flag,
                    fallback,
                )
                name = fallback
        chosen["loop" if default == "uvloop" else "http"] = name
    return Engine(loop=chosen["loop"], http=chosen["http"])  # type: ignore[arg-type]


def running_loop() -> str:
    """The loop this code runs on, read from the loop itself ("uvloop" or "asyncio"), for the start-up block."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def parser_of(protocol: type) -> str:
    """The parser a uvicorn protocol class is built on, read from its bases, for the start-up block."""
    modules = {cls.__module__ for cls in protocol.__mro__}
    return "httptools" if "uvicorn.protocols.http.httptools_impl" in modules else "h11"
