"""A reload keeps the state of modules that did not change, and runs no stale code from anywhere (issue 19, D and E).

Real server, real MCP client, real file edits: each test starts its own server,
keeps some state in a module, edits another file, waits for the reload that read
the edit (tests/helpers.py `reloaded`) and checks that the state survived and
the edited code is served.
"""

from __future__ import annotations

import os
import textwrap
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import RunnerProcess, edit_and_wait, healthz, mcp_client, reloaded, settled_reloads

pytestmark = pytest.mark.anyio


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))


def pythonpath(*folders: Path) -> dict[str, str]:
    """PYTHONPATH with `folders` first, keeping whatever the test run itself was given."""
    return {"PYTHONPATH": os.pathsep.join([*map(str, folders), *filter(None, [os.environ.get("PYTHONPATH")])])}


@contextmanager
def serving(manifest: Path, env: dict[str, str] | None = None) -> Iterator[RunnerProcess]:
    runner = RunnerProcess(manifest, env=env or {}).start()
    try:
        yield runner
    finally:
        runner.stop()


async def call(runner: RunnerProcess, tool: str, arguments: dict[str, Any] | None = None) -> str:
    async with mcp_client(runner.url, mode="legacy") as client:
        result = await client.call_tool(tool, arguments or {})
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error, text
    return text


async def edit(runner: RunnerProcess, path: Path, text: str) -> dict[str, Any]:
    """Write `path` (atomically) and wait for the reload that read it, which must have succeeded."""
    health = await edit_and_wait(path.parent, runner.health_url, path.name, textwrap.dedent(text))
    assert health["status"] == "ok" and health["last_reload"]["result"] == "ok", health
    return health


NOTES_TOOLS = """
import notes.store
from .store import NOTES

VERSION = "{version}"


def add_note(text: str) -> str:
    NOTES[str(len(NOTES))] = text
    return "added"


def list_notes() -> str:
    return f"{{VERSION}}: {{', '.join(NOTES.values())}} ({{len(notes.store.NOTES)}})"
"""


NOTES_FUNCTIONS = ("notes.tools:add_note", "notes.tools:list_notes", "notes:version")


async def test_state_in_an_unchanged_sibling_survives_an_edit_of_its_importer(tmp_path: Path) -> None:
    """D1: notes/tools.py edited; notes/store.py's NOTES keep their content; the package re-exports the new code."""
    write(
        tmp_path,
        {
            "notes/__init__.py": "from .tools import VERSION\n\n\ndef version() -> str:\n    return VERSION\n",
            "notes/store.py": "NOTES: dict[str, str] = {}\n",
            "notes/tools.py": NOTES_TOOLS.format(version="v1"),
            "m.yaml": "name: notes\ntools:\n" + "".join(f"  - function: {f}\n" for f in NOTES_FUNCTIONS),
        },
    )
    with serving(tmp_path / "m.yaml") as runner:
        assert await call(runner, "add_note", {"text": "milk"}) == "added"
        assert await call(runner, "list_notes") == "v1: milk (1)"
        await edit(runner, tmp_path / "notes/tools.py", NOTES_TOOLS.format(version="v2"))
        assert await call(runner, "list_notes") == "v2: milk (1)"  # the new code, the old notes
        assert await call(runner, "version") == "v2"  # the parent's re-export is fresh
        assert await call(runner, "add_note", {"text": "eggs"}) == "added"
        assert await call(runner, "list_notes") == "v2: milk, eggs (2)"


NOTES_LIST = "tools:\n  - function: notes.tools:add_note\n  - function: notes.tools:list_notes\n"


async def test_a_failed_reload_keeps_the_state_and_the_next_one_applies_what_changed(tmp_path: Path) -> None:
    """A broken edit of notes/tools.py fails and changes nothing; the fix after it is served, the notes kept."""
    write(
        tmp_path,
        {
            "notes/__init__.py": "",
            "notes/store.py": "NOTES: dict[str, str] = {}\n",
            "notes/tools.py": NOTES_TOOLS.format(version="v1"),
            "m.yaml": "name: notes\n" + NOTES_LIST,
        },
    )
    with serving(tmp_path / "m.yaml") as runner:
        assert await call(runner, "add_note", {"text": "milk"}) == "added"
        health = await edit_and_wait(tmp_path / "notes", runner.health_url, "tools.py", "def list_notes(:\n")
        assert health["status"] == "degraded", health
        assert await call(runner, "list_notes") == "v1: milk (1)"
        health = await edit_and_wait(tmp_path, runner.health_url, "m.yaml", "name: renamed\n" + NOTES_LIST)
        assert health["status"] == "degraded", health  # tools.py is still broken: it was tried again
        await edit(runner, tmp_path / "notes/tools.py", NOTES_TOOLS.format(version="v3"))
        assert await call(runner, "list_notes") == "v3: milk (1)"


COUNTER = """
SEEN: list[str] = []


def remember(text: str) -> str:
    SEEN.append(text)
    return "{version} " + ",".join(SEEN)
"""


def manifest(instructions: str) -> str:
    return f"name: counter\ninstructions: {instructions}\ntools:\n  - function: counter:remember\n"


async def test_a_manifest_only_edit_reimports_no_module(tmp_path: Path) -> None:
    """D2: a manifest edit right after a module's reload keeps that module's state, however new its file is."""
    write(tmp_path, {"counter.py": COUNTER.format(version="v1"), "m.yaml": manifest("first")})
    with serving(tmp_path / "m.yaml") as runner:
        assert await call(runner, "remember", {"text": "a"}) == "v1 a"
        await edit(runner, tmp_path / "counter.py", COUNTER.format(version="v2"))  # its state starts anew: edited
        assert await call(runner, "remember", {"text": "b"}) == "v2 b"
        await edit(runner, tmp_path / "m.yaml", manifest("second"))  # at once: the file was written just now
        assert await call(runner, "remember", {"text": "c"}) == "v2 b,c"

        # A file stamped ahead of the clock (clock skew, an unpacked archive) is as new as can be at every reload.
        before = await settled_reloads(runner.health_url)
        ahead = time.time_ns() + 600 * 10**9
        temporary = tmp_path / ".counter.tmp"
        temporary.write_text(textwrap.dedent(COUNTER.format(version="v3")))
        os.utime(temporary, ns=(ahead, ahead))
        os.replace(temporary, tmp_path / "counter.py")
        await reloaded(runner.health_url, before, "the reload that read counter.py")
        assert await call(runner, "remember", {"text": "d"}) == "v3 d"
        await edit(runner, tmp_path / "m.yaml", manifest("third"))
        assert await call(runner, "remember", {"text": "e"}) == "v3 d,e"
        assert healthz(runner.health_url)["last_reload"]["changes"] == "no visible change"


async def test_the_reload_log_line_names_what_changed_besides_the_lists(tmp_path: Path) -> None:
    """A body edit, `instructions:` and a setting change no list a client sees, yet they are served: the log says so
    (it said `no visible change`); /healthz, which needs no token, keeps to the list changes."""
    write(tmp_path, {"counter.py": COUNTER.format(version="v1"), "m.yaml": manifest("first")})
    with serving(tmp_path / "m.yaml") as runner:
        await edit(runner, tmp_path / "counter.py", COUNTER.format(version="v2"))
        await edit(runner, tmp_path / "m.yaml", manifest("second"))
        await edit(runner, tmp_path / "m.yaml", manifest("second") + "server:\n  error_details: full\n")
        said = [line.split(": ", 2)[-1] for line in runner.logged().splitlines() if "reload ok in" in line]
        assert healthz(runner.health_url)["last_reload"]["changes"] == "no visible change"
    assert said[-3:] == ["code counter", "manifest instructions", "manifest server.error_details"], said


async def test_an_edit_reimports_its_importers_transitively_and_nothing_else(tmp_path: Path) -> None:
    """chain/a.py imports b, which imports c: editing c re-imports b and a; chain/state.py keeps its count."""
    write(
        tmp_path,
        {
            "chain/__init__.py": "",
            "chain/a.py": "from chain.b import DERIVED\n\n\ndef value() -> str:\n    return DERIVED\n",
            "chain/b.py": 'from .c import BASE\n\nDERIVED = BASE + "+b"\n',
            "chain/c.py": 'BASE = "c1"\n',
            "chain/state.py": "COUNT = [0]\n\n\ndef bump() -> int:\n    COUNT[0] += 1\n    return COUNT[0]\n",
            "m.yaml": "name: chain\ntools:\n  - function: chain.a:value\n  - function: chain.state:bump\n",
        },
    )
    with serving(tmp_path / "m.yaml") as runner:
        assert (await call(runner, "value"), await call(runner, "bump")) == ("c1+b", "1")
        await edit(runner, tmp_path / "chain/c.py", 'BASE = "c2"\n')
        assert (await call(runner, "value"), await call(runner, "bump")) == ("c2+b", "2")


GREETING = 'def hello() -> str:\n    return "hello {version}"\n'
USES_GREETING = "from greeting import hello\n\n\ndef hi() -> str:\n    return hello()\n"


async def test_a_module_on_pythonpath_outside_the_folder_is_watched_and_reloaded(tmp_path: Path) -> None:
    """E: a shared lib/ on PYTHONPATH, next to (not in) the manifest's folder."""
    lib, app = tmp_path / "lib", tmp_path / "app"
    write(lib, {"greeting.py": GREETING.format(version="v1")})
    write(app, {"tools.py": USES_GREETING, "m.yaml": "name: e\ntools:\n  - function: tools:hi\n"})
    with serving(app / "m.yaml", pythonpath(lib)) as runner:
        assert await call(runner, "hi") == "hello v1"
        await edit(runner, lib / "greeting.py", GREETING.format(version="v2"))
        assert await call(runner, "hi") == "hello v2"


async def test_a_src_layout_outside_the_manifests_folder_is_reloaded(tmp_path: Path) -> None:
    """E: project/src/shop is the code, project/config/mcp.yaml the manifest, src/ on PYTHONPATH."""
    src, config = tmp_path / "src", tmp_path / "config"
    write(
        src,
        {
            "shop/__init__.py": "",
            "shop/prices.py": "PRICE = 1\n",
            "shop/tools.py": "from shop.prices import PRICE\n\n\ndef price() -> int:\n    return PRICE\n",
        },
    )
    write(config, {"mcp.yaml": "name: shop\ntools:\n  - function: shop.tools:price\n"})
    with serving(config / "mcp.yaml", pythonpath(src)) as runner:
        assert await call(runner, "price") == "1"
        await edit(runner, src / "shop/prices.py", "PRICE = 2\n")
        assert await call(runner, "price") == "2"


async def test_a_symlinked_module_whose_target_is_elsewhere_is_reloaded(tmp_path: Path) -> None:
    """E: app/greeting.py is a link to shared/greeting_impl.py; editing the target is served."""
    shared, app = tmp_path / "shared", tmp_path / "app"
    write(shared, {"greeting_impl.py": GREETING.format(version="v1")})
    write(app, {"tools.py": USES_GREETING, "m.yaml": "name: e\ntools:\n  - function: tools:hi\n"})
    (app / "greeting.py").symlink_to(shared / "greeting_impl.py")
    with serving(app / "m.yaml") as runner:
        assert await call(runner, "hi") == "hello v1"
        await edit(runner, shared / "greeting_impl.py", GREETING.format(version="v2"))
        assert await call(runner, "hi") == "hello v2"


async def test_a_module_no_reload_can_replace_is_named_and_never_reported_as_reloaded(tmp_path: Path) -> None:
    """E: a module imported from a zip archive on PYTHONPATH: named at start-up; /healthz never says plain ok."""
    archive, app = tmp_path / "lib.zip", tmp_path / "app"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped.py", 'VALUE = "z1"\n')
    write(app, {"tools.py": "from zipped import VALUE\n\n\ndef value() -> str:\n    return VALUE\n"})
    write(app, {"m.yaml": "name: z\ntools:\n  - function: tools:value\n"})
    with serving(app / "m.yaml", pythonpath(archive)) as runner:
        assert await call(runner, "value") == "z1"
        health = healthz(runner.health_url)
        assert health["status"] == "unwatched" and health["not_reloadable"] == {"zipped": "imported from a zip archive"}
        assert f"not reloadable: zipped (imported from a zip archive: {archive})" in runner.logged()
        # The archive changes: what runs is now older than its file, and every answer says so.
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("zipped.py", 'VALUE = "z2"\n')
        assert healthz(runner.health_url)["status"] == "stale"
        health = await edit_and_wait(app, runner.health_url, "m.yaml", "name: z2\ntools:\n  - function: tools:value\n")
        assert health["status"] == "stale", health
        assert health["last_reload"]["result"] == "stale" and health["last_reload"]["stale"] == ["zipped"], health
    assert "reload stale in" in runner.logged() and "still running the old code of zipped" in runner.logged()


def test_the_runners_own_modules_are_never_the_users_even_in_the_manifests_folder() -> None:
    """Served from a checkout (the README's tour serves example.yaml from the repository root), the runner's
    package lies in the manifest's folder: it was taken for user code, fingerprinted and graphed at every
    reload (about 220 ms instead of 15 ms), and an edit of it would have been re-imported under the server."""
    import runner.serve.run  # noqa: F401  (loaded in any real serve)
    from runner.reload.modules import user_modules
    from tests.helpers import ROOT

    assert (ROOT / "runner").is_dir() and (ROOT / "example.yaml").is_file()
    loaded = user_modules(ROOT)
    assert not [name for name in loaded if name == "runner" or name.startswith("runner.")], sorted(loaded)
