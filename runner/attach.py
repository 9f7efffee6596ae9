"""What a feature package may ask of the live server: the one interface events and observe attach through.

The pipeline runs one way (manifest -> build -> serve). The feature packages (events, observe) plug into
the server the build made, and they type it as this Protocol rather than importing the server class
(runner/build/wrapper.py), which imports them: so no feature imports the server back. The wrapper
satisfies it structurally; mypy checks that where the wrapper hands itself over.

The SDK offers no public way to add request handlers or to look its tools, prompts and resources up
by name, so the interface names four of its private attributes; tests/test_layout.py fails loudly
when the SDK renames or retypes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mcp.server.lowlevel.server import Server
    from mcp.server.mcpserver.prompts import PromptManager
    from mcp.server.mcpserver.resources import ResourceManager
    from mcp.server.mcpserver.tools import ToolManager

    from runner.events.hub import EventHub
    from runner.tasks.extension import TasksExtension


class LiveServer(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def middleware(self) -> list[Any]: ...  # the SDK's server middleware, outermost first

    events: EventHub  # resource updates and list changes, for both protocol generations
    tasks: TasksExtension  # tools that run as tasks (runner/tasks)
    _tool_manager: ToolManager
    _prompt_manager: PromptManager
    _resource_manager: ResourceManager
    _lowlevel_server: Server[Any]

    def add_middleware(self, middleware: Any, *, edits_results: bool = True) -> None: ...

    def may_read(self, uri: str) -> bool: ...

    def upstream_label(self, kind: str, asked: str) -> str | None: ...  # served from an upstream (runner/upstreams)
