"""One config, many replicas: N replicas watching one ConfigMap-style folder converge on the same manifest.

Kubernetes mounts a ConfigMap as `<key> -> ..data/<key>`, with `..data` a symlink to a
timestamped folder; an update writes a new folder and swaps `..data` by renaming a new symlink
over it (atomic), then deletes the old folder. This reproduces exactly that, with the manifest
and its module both in the ConfigMap, and three replicas watching it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunnerProcess, loopback_get, mcp_client
from tests.scale import wait_until

pytestmark = pytest.mark.anyio

BEFORE = "name: configmap\ntools:\n  - function: tools:add\n"
AFTER = "name: configmap\ntools:\n  - function: tools:add\n  - function: tools:sub\n"
TOOLS_BEFORE = "def add(a: int, b: int) -> int:\n    return a + b\n"
TOOLS_AFTER = TOOLS_BEFORE + "\n\ndef sub(a: int, b: int) -> int:\n    return a - b\n"


def publish(mount: Path, version: str, files: dict[str, str]) -> None:
    """What the kubelet does: a new `..<version>` folder, `..data` swapped atomically, the old folder removed."""
    target = mount / f"..{version}"
    target.mkdir()
    for name, text in files.items():
        (target / name).write_text(text)
    data = mount / "..data"
    old = os.readlink(data) if data.is_symlink() else None
    os.symlink(target.name, mount / "..data_tmp")
    os.rename(mount / "..data_tmp", data)  # the atomic swap
    for name in files:
        if not (mount / name).is_symlink():
            os.symlink(f"..data/{name}", mount / name)
    if old is not None:
        shutil.rmtree(mount / old)


def health(process: RunnerProcess) -> dict[str, object]:
    answer: dict[str, object] = loopback_get(f"http://127.0.0.1:{process.port}/healthz", timeout=10).json()
    return answer


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[RunnerProcess]]]:
    mount = tmp_path_factory.mktemp("configmap")
    publish(mount, "2026_11_27_01_00_00.1", {"app.yaml": BEFORE, "tools.py": TOOLS_BEFORE})
    started = [
        RunnerProcess(mount / "app.yaml", extra=("--replica-id", f"r{i}"), log=mount.parent / f"{mount.name}-r{i}.log")
        for i in range(1, 4)
    ]
    try:
        for process in started:
            process.start()
        yield mount, started
    finally:
        for process in started:
            if process.proc is not None:
                process.stop()


async def test_replicas_converge_after_a_configmap_update(replicas: tuple[Path, list[RunnerProcess]]) -> None:
    mount, processes = replicas
    before = hashlib.sha256(BEFORE.encode()).hexdigest()
    assert {health(p)["manifest_sha256"] for p in processes} == {before}
    assert sorted(health(p)["replica_id"] for p in processes) == ["r1", "r2", "r3"]

    publish(mount, "2026_11_27_01_05_00.2", {"app.yaml": AFTER, "tools.py": TOOLS_AFTER})

    after = hashlib.sha256(AFTER.encode()).hexdigest()
    for process in processes:  # the operator's check (README): one manifest_sha256, status ok, everywhere
        wait_until(lambda p=process: health(p)["manifest_sha256"] == after, f"{process.url} to reload")
        assert health(process)["status"] == "ok"
        async with mcp_client(process.url) as client:
            result = await client.call_tool("sub", {"a": 5, "b": 3})
            assert result.structured_content == {"result": 2}
