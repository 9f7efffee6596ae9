"""A reload rebuilds only the tools whose interface changed, yet always runs the new code (in-process pipeline)."""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.build.server import build
from runner.manifest.config import Binding, Overrides
from runner.manifest.model import load
from runner.reload.reloader import Reloader

pytestmark = pytest.mark.anyio

MODULE = '''
from pydantic import BaseModel


class Item(BaseModel):
    name: str{extra_field}


def stable(x: int, label: str = "") -> str:
    """Its interface never changes."""
    return "{version}"


def typed(item: Item) -> str:
    return item.name


def changing(x: int{extra_param}) -> str:
    return "{version}"
'''

MANIFEST = """
name: reuse
tools:
  - function: reuse_mod:stable
  - function: reuse_mod:typed
  - function: reuse_mod:changing
  - function: reuse_mod:stable
    name: bound
    scopes: [s]
    bind: {label: sub}
signin: {app_id: local}
"""


def write(module: Path, version: str, extra_param: str = "", extra_field: str = "") -> None:
    module.write_text(MODULE.format(version=version, extra_param=extra_param, extra_field=extra_field))


@pytest.fixture
async def reloader(tmp_path: Path) -> AsyncIterator[Reloader]:
    write(tmp_path / "reuse_mod.py", "v1")
    manifest_path = tmp_path / "m.yaml"
    manifest_path.write_text(MANIFEST)
    manifest, source = load(manifest_path)
    where = Binding("127.0.0.1", 1, "/mcp")
    reloader = await Reloader.start(manifest_path, where, Overrides(), build(manifest, source, where), manifest, "")
    try:
        yield reloader
    finally:
        sys.modules.pop("reuse_mod", None)


def tools(reloader: Reloader) -> dict[str, object]:
    return {tool.name: tool for tool in reloader.live._tool_manager.list_tools()}


async def test_a_body_edit_reuses_the_derived_models_and_runs_the_new_code(reloader: Reloader) -> None:
    module = reloader.root / "reuse_mod.py"
    before = tools(reloader)
    write(module, "v2")
    result = await reloader.reload({module.resolve()})
    assert result.ok, result.error
    after = tools(reloader)
    for name in ("stable", "changing", "bound"):
        old, new = before[name], after[name]
        assert new.fn_metadata is old.fn_metadata, f"{name}: unchanged interface, but its models were rebuilt"  # type: ignore[attr-defined]
    # Sync functions are called through the tool pool (runner/build/pool.py), so a tool's fn is awaited.
    assert await after["stable"].fn(1) == "v2"  # type: ignore[attr-defined]
    assert await after["changing"].fn(1) == "v2"  # type: ignore[attr-defined]
    # The claim-bound tool is a new wrapper around the new function, not the old one.
    assert inspect.unwrap(after["bound"].fn) is sys.modules["reuse_mod"].stable  # type: ignore[attr-defined]


async def test_a_changed_signature_or_parameter_model_is_rebuilt(reloader: Reloader) -> None:
    module = reloader.root / "reuse_mod.py"
    write(module, "v2", extra_param=", y: int = 0", extra_field="\n    size: int = 0")
    result = await reloader.reload({module.resolve()})
    assert result.ok, result.error
    after = tools(reloader)
    assert "y" in after["changing"].parameters["properties"]  # type: ignore[attr-defined]
    item = after["typed"].parameters["$defs"]["Item"]  # type: ignore[attr-defined]
    assert "size" in item["properties"], "the parameter model's new field is missing from the schema"
