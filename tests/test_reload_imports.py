"""A reload never runs stale code, whatever import form the user's package uses (real server, real client).

One server serves a package `pk` whose `tools.py` reaches a helper module through
each import form (one tool per form). Each test opens its session before editing,
edits, then touches the manifest and waits until /healthz serves that manifest
text: the reload that loaded it started after every edit, so every tool must show
the edit.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.helpers import RunnerProcess, loopback_get, mcp_client, reloaded, settled_reloads

pytestmark = pytest.mark.anyio

# form (tool name) -> the helper module file whose VALUE it returns
FORMS = {
    "from_pk_import_module": "pk/h_a.py",  # from pk import h_a
    "import_dotted": "pk/h_b.py",  # import pk.h_b
    "from_module_import_name": "pk/h_c.py",  # from pk.h_c import VALUE
    "from_dot_import_module": "pk/h_d.py",  # from . import h_d
    "import_dotted_as": "pk/h_e.py",  # import pk.h_e as x
    "from_dot_module_import_as": "pk/h_f.py",  # from .h_f import VALUE as z
    "reexport_from_init": "pk/h_g.py",  # from pk import G; pk/__init__.py: from .h_g import VALUE as G
    "importer_of_importer": "pk/h_t.py",  # from pk import mid; pk/mid.py: from pk.h_t import VALUE
    "dynamic_import": "pk/h_dyn.py",  # dyn.py (outside pk): VALUE = importlib.import_module("pk.h_dyn").VALUE
    "nested_reexport": "pk/sub/deep.py",  # from pk.sub import DEEP; pk/sub/__init__.py: from .deep import ...
    "nested_module": "pk/sub/leaf.py",  # from pk.sub import leaf
    "two_names": "pk/h_two.py",  # import h_two, and from pk import h_two (pk/__init__.py puts pk/ on sys.path)
    "registry": "h_r.py",  # registry.py keeps the first handler plugin.py registers; the tool reads it from there
}

TOOLS = """
import h_two
import pk.h_b
import pk.h_e as h_e_alias
from pk import G, h_a, mid
from pk import h_two as pk_h_two
from pk.h_c import VALUE
from pk.sub import DEEP, leaf

from . import h_d
from .h_f import VALUE as F


def from_pk_import_module() -> str:
    return h_a.VALUE


def import_dotted() -> str:
    return pk.h_b.VALUE


def from_module_import_name() -> str:
    return VALUE


def from_dot_import_module() -> str:
    return h_d.VALUE


def import_dotted_as() -> str:
    return h_e_alias.VALUE


def from_dot_module_import_as() -> str:
    return F


def reexport_from_init() -> str:
    return G


def importer_of_importer() -> str:
    return mid.VALUE


def nested_reexport() -> str:
    return DEEP


def nested_module() -> str:
    return leaf.VALUE


def two_names() -> str:
    return h_two.VALUE if h_two.VALUE == pk_h_two.VALUE else f"{h_two.VALUE} != {pk_h_two.VALUE}"
"""

PERSIST = """
import builtins

from h_k import helper

# Survives re-imports: a name no reload can make fresh.
if not hasattr(builtins, "kept_helper"):
    builtins.kept_helper = helper
HELPER = builtins.kept_helper


def kept() -> str:
    return HELPER()
"""

FILES = {
    "pk/__init__.py": (
        "import os\nimport sys\n\nfrom .h_g import VALUE as G\n\n"
        "if os.path.dirname(__file__) not in sys.path:\n    sys.path.append(os.path.dirname(__file__))\n"
    ),
    "registry.py": "HANDLERS = {}\n\n\ndef register(f):\n    HANDLERS.setdefault(f.__name__, f)\n    return f\n",
    "registry_tool.py": (
        'import plugin\nfrom registry import HANDLERS\n\n\ndef registry() -> str:\n    return HANDLERS["handle"]()\n'
    ),
    "plugin.py": (
        "from h_r import VALUE\nfrom registry import register\n\n\n@register\ndef handle() -> str:\n    return VALUE\n"
    ),
    "pk/tools.py": TOOLS,
    "pk/mid.py": "from pk.h_t import VALUE\n",
    "dyn.py": (
        'import importlib\n\nVALUE = importlib.import_module("pk.h_dyn").VALUE\n\n\n'
        "def dynamic_import() -> str:\n    return VALUE\n"
    ),
    "pk/sub/__init__.py": "from .deep import VALUE as DEEP\n",
    "side.py": "from side_helper import VALUE\n\n\ndef hidden() -> str:\n    return VALUE\n",
    "side_helper.py": 'VALUE = "v1"\n',
    "pk/models.py": "from pydantic import BaseModel\n\n\nclass Item(BaseModel):\n    name: str\n",
    "pk/shop.py": "from . import models\n\n\ndef order(item: models.Item) -> str:\n    return item.name\n",
    **{helper: 'VALUE = "v1"\n' for helper in FORMS.values()},
}

ELSEWHERE = {"dynamic_import": "dyn", "registry": "registry_tool"}  # the tools not in pk/tools.py
MANIFEST = "name: imports\ntools:\n" + "".join(f"  - function: {ELSEWHERE.get(f, 'pk.tools')}:{f}\n" for f in FORMS)
MANIFEST += "  - function: pk.shop:order\n  - function: side:hidden\n"


@dataclass
class Project:
    folder: Path
    runner: RunnerProcess

    def health(self) -> dict[str, Any]:
        return loopback_get(f"http://127.0.0.1:{self.runner.port}/healthz").json()  # type: ignore[no-any-return]

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
            (self.folder / name).write_text(textwrap.dedent(text))

    async def reloaded(self) -> dict[str, Any]:
        """Touch the manifest and wait (bounded, polling) until a reload has loaded that very text."""
        text = MANIFEST + f"# {uuid.uuid4().hex}\n"
        (self.folder / "imports.yaml").write_text(text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        with anyio.fail_after(60):
            while (health := self.health())["manifest_sha256"] != digest:
                await anyio.sleep(0.02)
        return health

    async def write_and_wait(self, files: dict[str, str]) -> dict[str, Any]:
        """Write the files, then wait for the finished reload that read them all; its /healthz."""
        before = await settled_reloads(self.runner.health_url)
        self.write(files)
        return await reloaded(self.runner.health_url, before, f"the reload that read {sorted(files)}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    folder = tmp_path_factory.mktemp("imports")
    project = Project(folder, RunnerProcess(folder / "imports.yaml"))
    project.write(FILES)
    (folder / "imports.yaml").write_text(MANIFEST)
    project.runner.start()
    yield project
    project.runner.stop()


async def text_of(client: Client, tool: str) -> str:
    result = await client.call_tool(tool, {})
    return result.content[0].text if not result.is_error else f"error: {result.content[0].text}"  # type: ignore[union-attr]


async def values(client: Client) -> dict[str, str]:
    return {form: await text_of(client, form) for form in FORMS}


async def test_every_import_form_runs_the_edited_helper(project: Project) -> None:
    async with mcp_client(project.runner.url, mode="legacy") as client:
        expected = await values(client)  # the session is open and has used every tool before the edit
        # pk/__init__.py re-exports h_g, and the registry's stale entry makes the runner re-import everything:
        # each gets its own round, so the rules that cover the others are each put to the test.
        alone = ["reexport_from_init", "registry"]
        for batch in ([f for f in FORMS if f not in alone], *([f] for f in alone)):
            tag = f"v-{uuid.uuid4().hex[:8]}"
            project.write({FORMS[form]: f'VALUE = "{tag}"\n' for form in batch})
            expected.update({form: tag for form in batch})
            health = await project.reloaded()
            assert health["status"] == "ok", health
            assert await values(client) == expected


async def test_failed_edit_keeps_the_last_good_code_then_the_fix_applies(project: Project) -> None:
    async with mcp_client(project.runner.url, mode="legacy") as client:
        good = await values(client)
        assert all(not v.startswith("error") for v in good.values()), good
        # A syntax error in a submodule the package's __init__ re-exports, and in one used as `pk.h_b`.
        health = await project.write_and_wait({"pk/h_g.py": "VALUE = (\n", "pk/h_b.py": "VALUE = (\n"})
        assert health["status"] == "degraded" and "syntax error" in health["last_reload"]["error"], health
        assert await values(client) == good  # exactly the last good code, parents' attributes included
        tag = f"fixed-{uuid.uuid4().hex[:8]}"
        project.write({helper: f'VALUE = "{tag}"\n' for helper in FORMS.values()})
        health = await project.reloaded()
        assert health["status"] == "ok", health
        assert await values(client) == {form: tag for form in FORMS}


async def test_model_change_shows_in_the_schema_of_the_tool_that_uses_it(project: Project) -> None:
    async with mcp_client(project.runner.url, mode="legacy") as client:
        schema = next(t.input_schema for t in (await client.list_tools()).tools if t.name == "order")
        assert "name" in json.dumps(schema) and "quantity" not in json.dumps(schema)
        project.write({"pk/models.py": FILES["pk/models.py"] + "    quantity: int = 1\n"})
        await project.reloaded()
        schema = next(t.input_schema for t in (await client.list_tools()).tools if t.name == "order")
        item = schema["$defs"]["Item"] if "$defs" in schema else schema["properties"]["item"]
        assert set(item["properties"]) == {"name", "quantity"}, schema


async def test_a_change_no_file_event_reported_is_still_picked_up(project: Project) -> None:
    """Write through a hard link in a folder nobody watches: no event names side_helper.py."""
    elsewhere = project.folder / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    link = elsewhere / f"hidden-{uuid.uuid4().hex[:8]}.link"
    os.link(project.folder / "side_helper.py", link)
    tag = uuid.uuid4().hex[:8]
    async with mcp_client(project.runner.url, mode="legacy") as client:
        assert await text_of(client, "hidden") != tag
        with open(link, "r+") as handle:  # in place: the same inode as side_helper.py
            handle.write(f'VALUE = "{tag}"\n')
            handle.truncate()
        await project.reloaded()
        assert await text_of(client, "hidden") == tag


async def test_a_name_no_reload_can_make_fresh_fails_the_reload_and_says_so(tmp_path: Path) -> None:
    """Its own server: once it holds an old copy for good, every reload touching that module must fail."""
    project = Project(tmp_path, RunnerProcess(tmp_path / "imports.yaml"))
    project.write({"persist.py": PERSIST, "h_k.py": 'def helper() -> str:\n    return "k1"\n'})
    (tmp_path / "imports.yaml").write_text("name: persist\ntools:\n  - function: persist:kept\n")
    project.runner.start()
    try:
        async with mcp_client(project.runner.url, mode="legacy") as client:
            assert await text_of(client, "kept") == "k1"
            health = await project.write_and_wait({"h_k.py": 'def helper() -> str:\n    return "k2"\n'})
            assert health["status"] == "degraded", health
            # The unauthenticated probe gets where and what kind; the log gets the whole story (checked below).
            assert health["last_reload"]["error"] == "persist.py:9:1: old code a reload cannot replace, restart needed"
            assert await text_of(client, "kept") == "k1"  # the last good definition, consistently
            # Dropping the pattern makes the next reload fresh again.
            fixed = "from h_k import helper\n\n\ndef kept() -> str:\n    return helper()\n"
            health = await project.write_and_wait({"persist.py": fixed})
            assert health["status"] == "ok", health
            assert await text_of(client, "kept") == "k2"
    finally:
        err = project.runner.stop()
    assert "persist.HELPER still refers to code from the replaced module 'h_k'" in err
    assert "restart the server to run the edited code" in err
