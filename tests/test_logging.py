"""Client logging served for real: `logging/setLevel` per handshake-era session, the 2026-07-28 per-request opt-in."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_types import LoggingMessageNotificationParams

from tests.helpers import RunnerProcess, mcp_client

# The client side warns too (set_logging_level is deprecated at 2026-07-28); this file uses it on purpose.
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

MODULE = '''
from mcp.server.mcpserver import Context


async def chatty(ctx: Context) -> str:
    """Logs once at each of four levels."""
    await ctx.debug("debug")
    await ctx.info("info")
    await ctx.warning("warning")
    await ctx.error("error")
    return "done"
'''

MANIFEST = """
name: Logging
tools:
  - function: chatty:chatty
"""

EVERY = ["debug", "info", "warning", "error"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProcess]:
    folder: Path = tmp_path_factory.mktemp("logging")
    (folder / "chatty.py").write_text(textwrap.dedent(MODULE))
    (folder / "logging.yaml").write_text(MANIFEST)
    runner = RunnerProcess(folder / "logging.yaml", log=folder / "server.log").start()
    yield runner
    runner.stop()


class Heard:
    """The `notifications/message` a client received, in order."""

    def __init__(self) -> None:
        self.levels: list[str] = []

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.levels.append(params.level)

    async def call(self, client: Any) -> list[str]:
        """Call the tool; what it logged to this client (request-scoped: it arrives before the result)."""
        self.levels.clear()
        assert (await client.call_tool("chatty", {})).content[0].text == "done"
        return list(self.levels)


async def test_set_level_filters_per_session(served: RunnerProcess) -> None:
    quiet, loud = Heard(), Heard()
    async with (
        mcp_client(served.url, mode="legacy", logging_callback=quiet) as first,
        mcp_client(served.url, mode="legacy", logging_callback=loud) as second,
    ):
        assert first.server_capabilities.logging is not None
        assert await quiet.call(first) == EVERY  # no setLevel yet: the SDK's handshake-era default
        await first.set_logging_level("warning")
        assert await quiet.call(first) == ["warning", "error"]  # below the level: not sent
        assert await loud.call(second) == EVERY  # another session keeps its own level
        await second.set_logging_level("error")
        assert await loud.call(second) == ["error"]
        await first.set_logging_level("debug")
        assert await quiet.call(first) == EVERY


async def test_modern_clients_opt_in_per_request(served: RunnerProcess) -> None:
    heard = Heard()
    async with mcp_client(served.url, logging_callback=heard) as client:
        assert client.server_capabilities.logging is not None
        assert await heard.call(client) == []  # 2026-07-28: nothing without the `_meta` opt-in
    async with mcp_client(served.url, logging_callback=heard, log_level="info") as client:
        assert await heard.call(client) == ["info", "warning", "error"]


async def test_deprecation_said_once(served: RunnerProcess) -> None:
    heard = Heard()
    async with mcp_client(served.url, mode="legacy", logging_callback=heard) as client:
        for _ in range(3):
            assert await heard.call(client) == EVERY
    # Four call sites, several calls, every test of this module: one warning for the whole process.
    assert served.logged().count("The logging capability is deprecated") == 1


def test_the_text_formatter_writes_what_logging_default_formatter_writes() -> None:
    """TextFormatter formats the date and time once a second (runner/observe/logs.py): the lines stay the same."""
    import logging

    from runner.observe.logs import TEXT, TextFormatter

    fast, default = TextFormatter(TEXT), logging.Formatter(TEXT)
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0005, 1_700_000_001.5, 1_699_999_999.25):
        record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "%s - %d", ("a", 200), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert fast.format(record) == default.format(record)


def test_the_short_way_writes_what_the_logging_path_writes_and_steps_aside_otherwise() -> None:
    """runner/observe/lines.py: the access and audit lines without a LogRecord are the same bytes as through
    logging, and any setup or argument the short way cannot vouch for goes the logging way (token filter included)."""
    import io
    import logging

    from runner.http.redact import FILTER
    from runner.observe import lines
    from runner.observe.logs import TEXT, JSONFormatter, TextFormatter

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter := TextFormatter(TEXT))
    handler.addFilter(FILTER)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    audit = logging.getLogger("runner.audit")
    access = ("127.0.0.1:5000", "POST", "/mcp", "1.1", 200)

    fields = {"event": "audit", "kind": "tool", "name": "add", "outcome": "ok", "duration_ms": 1.2, "subject": "alice"}

    def both(
        handling: logging.Logger, name: str, message: str, args: tuple[object, ...], extra: object = None
    ) -> tuple[bool, str, str]:
        out.seek(0), out.truncate()
        short = lines.write(handling, name, message, args, extra)
        fast = out.getvalue()
        out.seek(0), out.truncate()
        record = logging.LogRecord(name, logging.INFO, __file__, 0, message, args, None)
        if extra is not None:
            record.fields = extra
        handling.handle(record)
        return short, fast, out.getvalue()

    def timeless(line: str) -> dict[str, object]:
        document = json.loads(line)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", document.pop("time"))
        return document

    try:
        for formatter in (TextFormatter(TEXT), JSONFormatter()):
            handler.setFormatter(formatter)
            lines.take(handler, formatter)
            for handling, name, message, args, extra in (
                (root, "uvicorn.access", '%s - "%s %s HTTP/%s" %d', access, None),
                (audit, "runner.audit", "%s", ('tool call "add" by "alice" (client "c"): ok in 1.2 ms',), fields),
            ):
                short, fast, slow = both(handling, name, message, args, extra)
                assert short and fast.endswith("\n") and fast.count("\n") == 1, (fast, slow)
                if isinstance(formatter, TextFormatter):
                    assert fast[23:] == slow[23:], (fast, slow)  # after the asctime
                else:
                    assert timeless(fast) == timeless(slow) and fast.index('"level"') == slow.index('"level"')
        formatter = TextFormatter(TEXT)
        handler.setFormatter(formatter)
        lines.take(handler, formatter)
        for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.0005):
            record = logging.LogRecord("x", logging.INFO, __file__, 0, "m", None, None)
            record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
            assert formatter.stamp(created) == logging.Formatter(TEXT).formatTime(record)
        token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
        short, fast, slow = both(
            root, "uvicorn.access", '%s - "%s %s HTTP/%s" %d', (*access[:2], f"/x/{token}", "1.1", 404)
        )
        assert not short and not fast and token not in slow and "[redacted]" in slow  # a token: the filter's way
        other = logging.StreamHandler(io.StringIO())
        root.addHandler(other)  # user code added a handler: both must get the line
        assert not lines.write(root, "uvicorn.access", '%s - "%s %s HTTP/%s" %d', access)
        root.removeHandler(other)
        audit.propagate = False  # or changed where a logger's records go
        assert not lines.write(audit, "runner.audit", "%s", ("x",))
        audit.propagate = True
        handler.setFormatter(logging.Formatter(TEXT))  # a formatter other than the one taken
        assert not lines.write(root, "uvicorn.access", '%s - "%s %s HTTP/%s" %d', access)
        handler.setFormatter(formatter)
        lines.take(None, None)  # not the CLI's setup (the Python API): always the logging way
        assert not lines.write(root, "uvicorn.access", '%s - "%s %s HTTP/%s" %d', access)
    finally:
        lines.take(None, None)
        audit.propagate = True
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
