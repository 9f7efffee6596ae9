"""Reloading many times keeps neither old module objects nor old definitions alive (in-process, the real pipeline)."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from pathlib import Path

import anyio

from runner.build.server import build
from runner.manifest.config import Binding, Overrides
from runner.manifest.model import load
from runner.reload.reloader import Reloader


def test_old_modules_and_catalogs_are_released(tmp_path: Path) -> None:
    """Run in a fresh interpreter, as a server is: a test worker's process holds hundreds of modules from
    earlier tests, which made each reload here take seconds (74 s for the 30) and says nothing of a server."""
    run = subprocess.run(
        [sys.executable, __file__, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.strip() == "released: 30 of 30 modules, catalogs and functions"


async def released(tmp_path: Path) -> None:
    module = tmp_path / "memleak_mod.py"
    module.write_text("PAYLOAD = bytearray(1_000_000)\n\ndef f() -> int:\n    return 0\n")
    manifest_path = tmp_path / "m.yaml"
    manifest_path.write_text("name: mem\ntools:\n  - function: memleak_mod:f\n")
    manifest, source = load(manifest_path)
    where = Binding("127.0.0.1", 1, "/mcp")
    built = build(manifest, source, where)
    reloader = await Reloader.start(manifest_path, where, Overrides(), built, manifest, source.digest)
    old_modules: list[weakref.ref[object]] = []
    old_catalogs: list[weakref.ref[object]] = []
    old_functions: list[weakref.ref[object]] = []  # in a cycle with their module's globals: only gc frees them
    try:
        for i in range(1, 31):
            old_modules.append(weakref.ref(sys.modules["memleak_mod"]))
            old_catalogs.append(weakref.ref(reloader.live._catalog))
            old_functions.append(weakref.ref(sys.modules["memleak_mod"].f))
            module.write_text(f"PAYLOAD = bytearray(1_000_000)\n\ndef f() -> int:\n    return {i}\n")
            result = await reloader.reload({module.resolve()})
            assert result.ok, result.error
            tool = reloader.live._tool_manager.get_tool("f")
            assert tool is not None and await tool.fn() == i  # sync code runs on the tool pool
        reloader.settler.settle_now()  # what the server's background settler does once edits are quiet
        gc.collect()
        alive_modules = sum(ref() is not None for ref in old_modules)
        alive_catalogs = sum(ref() is not None for ref in old_catalogs)
        alive_functions = sum(ref() is not None for ref in old_functions)
        assert alive_modules == 0, f"{alive_modules} of 30 replaced module objects still alive"
        assert alive_catalogs == 0, f"{alive_catalogs} of 30 replaced catalogs still alive"
        assert alive_functions == 0, f"{alive_functions} of 30 replaced functions still alive"
        print("released: 30 of 30 modules, catalogs and functions")
    finally:
        sys.modules.pop("memleak_mod", None)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's runner, as under pytest
    anyio.run(released, Path(sys.argv[1]))
