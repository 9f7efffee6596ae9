"""The package layout keeps its promises: imports run one way, and the SDK's private names still exist.

The pipeline is manifest -> build -> serve (-> cli on top). Feature packages (auth, completions, deploy,
events, http, loglevel, observe, speed, surface) attach to the server through runner/attach.py and never
import the build, serve or cli stages, not even for types. These checks read the source (every import,
at module level or inside a function, outside `if TYPE_CHECKING:` for cycles), so a new edge that
breaks a rule fails here with the edge named.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "runner"
STAGES = ["manifest", "build", "serve", "cli"]  # each may import the ones before it, never after
FEATURES = [
    *("auth", "completions", "deploy", "events", "http", "loglevel", "observe", "openapi", "speed", "surface", "tasks"),
    "upstreams",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, *, types_too: bool) -> set[str]:
    """Every runner module `path` imports, anywhere in it; `types_too` counts `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) and not types_too:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in MODULES}


def test_no_import_cycles_between_packages() -> None:
    """Within one package, a module may import a sibling lazily that imports it back: `http/limits.py`
    picks its parser's protocol, `observe/metrics.py` loads prometheus_client only when metrics are on.
    Between packages, a cycle is a layering fault: none at all, lazy or not."""

    def package(name: str) -> str:
        return name.rpartition(".")[0] if name in MODULES and not MODULES[name].name == "__init__.py" else name

    graph = {
        name: {t for t in imports(path, types_too=False) if not name.startswith(t + ".")}  # parents always load first
        for name, path in MODULES.items()
    }
    cycles = []
    for start in graph:  # small graph: a depth-first search from each module for a path back to it
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start and len({package(m) for m in trail}) > 1:
                    cycles.append(" -> ".join([*trail, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def package_of(name: str) -> str:
    return name.split(".")[1] if name.count(".") >= 1 else ""


def test_stages_import_only_earlier_stages_and_features_no_stage_but_the_manifest() -> None:
    wrong = []
    for name, path in MODULES.items():
        here = package_of(name)
        for target in imports(path, types_too=True):
            there = package_of(target)
            if there not in STAGES or there == here:
                continue
            if here in FEATURES and there != "manifest":
                wrong.append(f"{name} (feature) imports {target}: attach through runner/attach.py instead")
            elif here in STAGES and STAGES.index(there) > STAGES.index(here):
                wrong.append(f"{name} ({here} stage) imports {target} (a later stage)")
    # The one way back, on purpose: the Python API's `FastMCPSignInWrapper.streamable_http_app()` serves
    # the server it is called on, so the wrapper imports the serve stage's app builder when called.
    allowed = {"runner.build.wrapper (build stage) imports runner.serve.app (a later stage)"}
    assert sorted(set(wrong) - allowed) == []


def test_sdk_private_names_that_runner_attach_declares_still_exist() -> None:
    """runner/attach.py names four private attributes of the SDK's server; fail loudly when the SDK renames them."""
    from mcp.server.lowlevel.server import Server
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.prompts import PromptManager
    from mcp.server.mcpserver.resources import ResourceManager
    from mcp.server.mcpserver.tools import ToolManager

    server = MCPServer("canary")
    expected = {
        "_tool_manager": ToolManager,
        "_prompt_manager": PromptManager,
        "_resource_manager": ResourceManager,
        "_lowlevel_server": Server,
    }
    for attribute, kind in expected.items():
        assert isinstance(getattr(server, attribute, None), kind), f"the SDK's MCPServer has no {attribute} ({kind})"


def test_sdk_dispatcher_still_reads_last_context_from_its_read_stream() -> None:
    """runner/upstreams/inflight.py hands the SDK's dispatcher each stdio message's context through the read
    stream's `last_context` (duck-typed, the SDK's own hook for its context streams); fail loudly when it is gone."""
    import inspect

    from mcp.shared import jsonrpc_dispatcher

    source = inspect.getsource(jsonrpc_dispatcher)
    assert '"last_context"' in source, "the SDK's JSON-RPC dispatcher no longer reads last_context: see inflight.py"
