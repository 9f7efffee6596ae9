"""The docs are tested: the site builds strictly, and every snippet in docs/ and README.md is run or validated.

What each fenced block gets, by its language (a marker is an HTML comment on the line before the fence):

- `yaml`: validated as a manifest with the runner's own loader (`load`). A block without `name:` is a
  partial manifest and gets a name; `<!-- fragment: server -->` nests the block under that key first.
  `<!-- kubernetes -->`: parsed as YAML documents, and the ConfigMap's manifests and modules checked.
- `python`: compiled; then run in a fresh interpreter, as a module (`__name__` is not `"__main__"`),
  unless marked `<!-- no-run: why -->`. `<!-- serve: example.yaml -->`: run as a client of that manifest
  served on a free port (its `http://127.0.0.1:8000/mcp` replaced by the real URL, `MCP_TOKEN` set), and
  what it prints must match the snippet's `# {...}` comment on its print line. `<!-- cwd: notes -->`:
  run in docs/examples/notes, so the snippet can import that server's package.
- `json`: parsed (one document, or one per line).
- `sh`, `console`: every `mcp-runner ...` command is parsed by the real CLI parser (in `console`
  blocks only the `$ ` lines are commands).
- `text` (output, logs) and `mermaid` (built by the site): not checked; any other language, or none, fails.

A block marked `<!-- file: path -->` shows the file docs/examples/path in full, inline (so the page reads
the same as a plain file, on GitHub or in an editor): its text must equal that file's, and it is checked as
that file, from where it is.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# Where the runner's pieces live: after a package move, fix the import here, one line each.
from runner.cli.main import _parser as cli_parser
from runner.manifest.model import load
from runner.manifest.schema import json_schema

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(DOCS.glob("*.md"))
MARKDOWN = [*PAGES, ROOT / "README.md"]
SCRIPT = Path(sys.executable).parent / "mcp-runner"  # the venv's script, as pip installed it
if not SCRIPT.exists():
    SCRIPT = Path(shutil.which("mcp-runner") or SCRIPT)


# Keys the docs describe before the runner has them (built in parallel): a snippet that fails only
# because of one of these is skipped while `mcp-runner schema` lacks it, and checked once it has it.
PENDING_KEYS = {"error_details"}

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>```+)(?P<lang>[\w+-]*)[^\n]*$")
MARKER = re.compile(r"<!--\s*(?P<name>[\w-]+)\s*(?::\s*(?P<arg>.*?))?\s*-->")


@dataclass
class Snippet:
    file: Path
    line: int
    lang: str
    text: str
    markers: dict[str, str]
    source: Path | None = None  # the file under docs/examples a `<!-- file: path -->` block shows

    @property
    def id(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def snippets(path: Path) -> list[Snippet]:
    """Every fenced block of a markdown file, with the markers on the lines just before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, ticks, lang = match["indent"], match["ticks"], match["lang"].lower()
        markers: dict[str, str] = {}
        j = i - 1
        while j >= 0 and (marker := MARKER.fullmatch(lines[j].strip())):
            markers[marker["name"]] = marker["arg"] or ""
            j -= 1
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != ticks:
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        text = "\n".join(body) + "\n"
        snippet = Snippet(path, i - len(body), lang, text, markers)
        if "file" in markers:
            snippet.source = EXAMPLES / markers["file"]
        found.append(snippet)
        i += 1
    return found


ALL = [s for page in MARKDOWN for s in snippets(page)]


def of(*langs: str) -> list[Any]:
    return [pytest.param(s, id=s.id) for s in ALL if s.lang in langs]


# --- the site -------------------------------------------------------------------------------------


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The site builds with no warning: every page in the nav, every link and anchor resolving."""
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "site" / "manifest" / "index.html").exists()


def test_every_page_is_in_the_nav() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.Loader)  # !!python/name tags
    listed = {next(iter(item.values())) for item in config["nav"]}
    assert listed == {p.name for p in PAGES}


def test_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


CHECKED = {"yaml", "python", "json", "sh", "console"}
UNCHECKED = {"text", "mermaid"}  # output and log lines; the diagram is checked by the site's build


def test_every_block_says_its_language() -> None:
    """A block without a language, or with another one, would escape every check above: none may."""
    unknown = [f"{s.id} ({s.lang or 'none'})" for s in ALL if s.lang not in CHECKED | UNCHECKED]
    assert not unknown, f"label these blocks with one of {sorted(CHECKED | UNCHECKED)}: {', '.join(unknown)}"


def test_the_collector_finds_snippets() -> None:
    """A guard against a collector that silently finds nothing: each kind is present, in numbers."""
    langs = [s.lang for s in ALL]
    assert langs.count("yaml") >= 10 and langs.count("python") >= 5 and langs.count("sh") >= 5
    assert any(s.source for s in ALL), "no <!-- file: path --> block was found"


def _clients_without_timeout(source: str) -> int:
    """How many `httpx2.AsyncClient(...)` calls in `source` leave the timeout at httpx2's default."""
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
    named = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "AsyncClient"]
    return sum(1 for c in named if not any(k.arg == "timeout" for k in c.keywords))


def test_documented_clients_keep_the_sdks_timeouts() -> None:
    """A client the docs show passes its own httpx2 client with the SDK's timeouts: httpx2's default (5 s of
    silence) failed any call slower than that, and dropped the session's GET stream, so a reader's client
    got the first `list_changed` after a reload and none after (a newcomer found it on the docs' client)."""
    python = [s for s in ALL if s.lang == "python"]
    assert any("AsyncClient(" in s.text for s in python), "no documented client builds its own httpx2 client"
    bare = [s.id for s in python if _clients_without_timeout(s.text)]
    assert not bare, f"give httpx2.AsyncClient the SDK's timeouts (timeout=httpx2.Timeout(30.0, read=300.0)): {bare}"
    assert _clients_without_timeout("httpx2.AsyncClient(headers={})") == 1  # the check can fail


@pytest.mark.parametrize("snippet", [s for s in ALL if s.source is not None], ids=lambda s: s.id)
def test_a_file_shown_inline_is_the_file(snippet: Snippet) -> None:
    """The tutorial shows its files in full; they must be the example files the tests serve, to the byte."""
    assert snippet.source is not None and snippet.source.is_file(), f"{snippet.id}: no file {snippet.source}"
    assert snippet.text == snippet.source.read_text(encoding="utf-8"), (
        f"{snippet.id} differs from {snippet.source.relative_to(ROOT)}: copy the file into the page again"
    )


# --- manifests ------------------------------------------------------------------------------------

ENV = {  # what ${VAR} in the docs' manifests is set to
    "MCP_APP_ID": "your-app-id",
    "MCP_APP_RESOURCE": "https://mcp.example.com/mcp",
    "POD_NAME": "mcp-0",
    "PORT": "8124",
    "MCP_BUS": "redis://127.0.0.1:6379/0",
    "MCP_STATE_KEY": "0f" * 32,  # server.request_state_keys (docs/deployment.md)
    "MCP_STATE_KEY_NEW": "1e" * 32,
}


def schema_keys() -> set[str]:
    """Every key of `mcp-runner schema`, nested ones as `server.metrics.host` and `tools[].icons[].src`."""
    schema = json_schema()
    keys: set[str] = set()

    def walk(node: Any, prefix: str, seen: frozenset[str]) -> None:
        if not isinstance(node, dict):
            return
        if ref := node.get("$ref"):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                walk(schema["$defs"][name], prefix, seen | {name})
        for key, sub in node.get("properties", {}).items():
            keys.add(prefix + key)
            walk(sub, prefix + key + ".", seen)
        if isinstance(node.get("items"), dict):
            walk(node["items"], prefix.rstrip(".") + "[].", seen)
        for branch in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(branch, []):
                walk(sub, prefix, seen)

    walk(schema, "", frozenset())
    return keys


def validate_manifest(data: Any, tmp_path: Path, where: Path | None = None) -> None:
    """Validate manifest data with the runner's loader, from a file (in `where` when it names modules)."""
    folder = where or tmp_path
    file = folder / "docs-snippet.yaml" if where is None else where
    if where is None:
        file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    try:
        load(file, env=ENV)
    except Exception as exc:  # ManifestError: its problems are the message
        problems = str(exc)
        pending = [k for k in PENDING_KEYS if f"'{k}'" in problems and k not in {x.split(".")[-1] for x in KEYS}]
        if pending and problems.count("unknown key") == 1:
            pytest.skip(f"{pending[0]} is documented but not in this runner yet")
        raise AssertionError(f"{problems}\n--- manifest ---\n{yaml.safe_dump(data, sort_keys=False)}") from None


KEYS = schema_keys()


@pytest.mark.parametrize("snippet", of("yaml", "yml"))
def test_yaml_snippet(snippet: Snippet, tmp_path: Path) -> None:
    if "kubernetes" in snippet.markers:
        check_kubernetes(snippet.text, tmp_path)
        return
    if snippet.source is not None:  # a real manifest file: validate it where it is
        validate_manifest(None, tmp_path, where=snippet.source)
        return
    data = yaml.safe_load(snippet.text)
    if fragment := snippet.markers.get("fragment"):
        for key in reversed(fragment.split(".")):
            data = {key: data}
    assert isinstance(data, dict), f"{snippet.id}: a manifest is a mapping (or mark it <!-- fragment: KEY -->)"
    if "name" not in data:
        data = {"name": "docs", **data}
    validate_manifest(data, tmp_path)


def check_kubernetes(text: str, tmp_path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(text) if d]
    kinds = {d["kind"] for d in documents}
    assert {"ConfigMap", "Deployment", "Service"} <= kinds
    for config_map in (d for d in documents if d["kind"] == "ConfigMap"):
        folder = tmp_path / config_map["metadata"]["name"]
        folder.mkdir()
        for name, content in config_map["data"].items():
            (folder / name).write_text(content, encoding="utf-8")
            if name.endswith(".py"):
                compile(content, name, "exec")
        for name in config_map["data"]:
            if name.endswith((".yaml", ".yml")):
                validate_manifest(None, tmp_path, where=folder / name)


def test_yaml_check_can_fail(tmp_path: Path) -> None:
    """The manifest check refuses a misspelt key, and a fragment marker does not hide it."""
    bad = Snippet(ROOT / "README.md", 1, "yaml", "prot: 8000\n", {"fragment": "server"})
    with pytest.raises(AssertionError, match="unknown key 'prot'"):
        test_yaml_snippet(bad, tmp_path)


def test_python_check_can_fail(tmp_path: Path) -> None:
    """A Python snippet that raises fails its test."""
    bad = Snippet(ROOT / "README.md", 1, "python", "raise RuntimeError('no')\n", {})
    with pytest.raises(AssertionError, match="RuntimeError: no"):
        test_python_snippet(bad, tmp_path)


def test_every_schema_key_is_in_the_manifest_reference() -> None:
    """Each key of `mcp-runner schema`, nested ones included, is named in docs/manifest.md as `path`."""
    page = (DOCS / "manifest.md").read_text(encoding="utf-8")
    missing = sorted(k for k in KEYS if f"`{k}`" not in page)
    assert not missing, f"docs/manifest.md does not name: {', '.join(missing)}"


def test_schema_walk_sees_nested_keys() -> None:
    """The walk above must reach into $defs, lists and optional blocks, or the test before proves nothing."""
    assert {"server.metrics.port", "tools[].icons[].src", "tools[].annotations.readOnlyHint", "signin.app_id"} <= KEYS


# --- Python ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("snippet", of("python", "py"))
def test_python_snippet(snippet: Snippet, tmp_path: Path) -> None:
    name = str(snippet.source or snippet.id)
    compile(snippet.text, name, "exec")
    if "serve" in snippet.markers:
        run_as_client(snippet, tmp_path)
        return
    if "no-run" in snippet.markers:
        assert snippet.markers["no-run"], f"{snippet.id}: say why it does not run: <!-- no-run: why -->"
        return
    if snippet.source is not None:  # a module of a package under docs/examples: import it as the runner would
        top = snippet.source.relative_to(EXAMPLES).parts[0]
        package_root = EXAMPLES / top
        module = ".".join(snippet.source.relative_to(package_root).with_suffix("").parts)
        code = f"import importlib; importlib.import_module({module!r})"
        cwd = package_root
    else:
        script = tmp_path / "snippet.py"
        script.write_text(snippet.text, encoding="utf-8")
        code = f"import runpy; runpy.run_path({str(script)!r}, run_name='docs_snippet')"
        cwd = EXAMPLES / snippet.markers["cwd"] if "cwd" in snippet.markers else tmp_path
    env = {**os.environ, **ENV}  # what ${VAR} in the manifests is set to, for snippets that read it too
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{snippet.id} raised:\n{out.stderr[-3000:]}"


def run_as_client(snippet: Snippet, tmp_path: Path) -> None:
    """Serve the marked manifest (a copy, in tmp_path) and run the snippet against it."""
    from tests.conftest import copy_example
    from tests.helpers import RunnerProcess, run_cli

    assert snippet.markers["serve"] == "example.yaml", "only example.yaml is served for snippets"
    manifest = copy_example(tmp_path)
    runner = RunnerProcess(manifest).start()
    try:
        token = run_cli("token", str(manifest), "--port", str(runner.port), cwd=tmp_path)
        assert token.returncode == 0, token.stderr
        script = tmp_path / "client.py"
        script.write_text(snippet.text.replace("http://127.0.0.1:8000/mcp", runner.url), encoding="utf-8")
        env = {**os.environ, "MCP_TOKEN": token.stdout.strip()}
        out = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        runner.stop()
    assert out.returncode == 0, f"{snippet.id} raised:\n{out.stderr[-3000:]}"
    expected = re.search(r"print\(.*\)\s+#\s*(.+)$", snippet.text, re.MULTILINE)
    assert expected, f"{snippet.id}: say what it prints in a comment on its print line"
    assert out.stdout.strip() == expected[1].strip()


# --- JSON -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("snippet", of("json"))
def test_json_snippet(snippet: Snippet) -> None:
    try:
        json.loads(snippet.text)
    except json.JSONDecodeError:
        for line in snippet.text.splitlines():
            if line.strip():
                json.loads(line)


# --- shell ----------------------------------------------------------------------------------------

COMMAND = re.compile(r"(?:^|[\s(`;&|])(?:\S*/)?mcp-runner(?=\s|$)((?:\s+[^|;&>)`\n]*)?)")


def commands(snippet: Snippet) -> list[str]:
    """The `mcp-runner` argument lists in a shell block."""
    lines = snippet.text.replace("\\\n", " ").splitlines()
    if snippet.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    found = []
    for line in lines:
        line = re.sub(r"(^|\s)#.*$", "", line)  # a comment
        found += [m[1].strip() for m in COMMAND.finditer(line) if m[1].strip()]  # not a bare path
    return found


@pytest.mark.parametrize("snippet", [p for p in of("sh", "console", "bash") if commands(p.values[0])])
def test_shell_commands_parse(snippet: Snippet) -> None:
    """Each `mcp-runner` command in the docs names a real subcommand with real flags and valid values."""
    parser = cli_parser()
    for args in commands(snippet):
        argv = shlex.split(args)
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(argv)
        except SystemExit as exc:
            assert exc.code == 0, f"{snippet.id}: `mcp-runner {args}` does not parse:\n{stderr.getvalue()}"


def test_shell_check_can_fail() -> None:
    """The shell check refuses a flag that does not exist."""
    fake = Snippet(ROOT / "README.md", 1, "sh", "mcp-runner serve example.yaml --no-such-flag\n", {})
    with pytest.raises(AssertionError, match="does not parse"):
        test_shell_commands_parse(fake)


def test_every_flag_is_in_the_cli_reference() -> None:
    """Each subcommand, and each of its flags, is named in docs/cli.md."""
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = cli_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [flag for a in parser._actions for flag in a.option_strings if f"`mcp-runner {flag}`" not in page]
    missing = [m for m in missing if m not in ("-h", "--help")]
    for name, sub in subparsers.choices.items():
        if f"mcp-runner {name}" not in page:
            missing.append(f"mcp-runner {name}")
        for action in sub._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help") and f"`{flag}" not in page:
                    missing.append(f"{name} {flag}")
    assert not missing, f"docs/cli.md does not name: {', '.join(missing)}"


# --- the tutorial's server ------------------------------------------------------------------------

NOTES = EXAMPLES / "notes"


def test_notes_server_checks() -> None:
    """`mcp-runner check` accepts the tutorial's server: its manifest, and every import it names."""
    out = subprocess.run(
        [str(SCRIPT), "check", "mcp-runner.yaml"], cwd=NOTES, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 tools, 1 resource, 1 prompt" in out.stdout


def test_notes_tools_behave_as_the_tutorial_says() -> None:
    """The tutorial's claims about its functions: ids, the errors a model reads, completions, the prompt."""
    code = """
from mcp.server.mcpserver.exceptions import ToolError
from notes import store, tools
assert tools.add_note("buy milk") == "n1" and tools.add_note("call Ann") == "n2"
assert tools.get_note("n1") == "buy milk"
try:
    tools.get_note("n9")
except ToolError as exc:
    assert str(exc) == "no note 'n9'; the ids are: n1, n2", exc
else:
    raise AssertionError("get_note of an unknown id did not raise")
try:
    tools.add_note("  ")
except ValueError as exc:
    assert "empty" in str(exc)
else:
    raise AssertionError("add_note of blank text did not raise")
assert tools.complete_note_id("n", {}) == ["n1", "n2"] and tools.complete_note_id("n2", {}) == ["n2"]
assert tools.remove_note("n1") == "removed n1" and list(store.NOTES) == ["n2"]
assert "- n2: call Ann" in tools.summarize("in one line")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=NOTES, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_notes_survive_the_tutorials_edit(tmp_path: Path) -> None:
    """Tutorial step 10: an edit of tools.py and of the manifest reloads the server, and the notes survive it."""
    import anyio

    from tests.helpers import RunnerProcess, reloaded, run_cli, settled_reloads, write_atomically

    folder = tmp_path / "notes"
    shutil.copytree(NOTES, folder, ignore=shutil.ignore_patterns("__pycache__", ".mcp-runner"))
    manifest = folder / "mcp-runner.yaml"
    runner = RunnerProcess(manifest).start()
    try:

        def call(tool: str, *args: str) -> str:
            out = run_cli("call", str(manifest), tool, *args, cwd=folder)
            assert out.returncode == 0, out.stderr
            return out.stdout.strip()

        assert call("add_note", "--arg", "text=buy milk") == "n1"
        before = anyio.run(settled_reloads, runner.health_url)
        tools = folder / "notes" / "tools.py"
        addition = '\n\ndef count_notes() -> int:\n    """How many notes there are."""\n    return len(store.NOTES)\n'
        write_atomically(tools, tools.read_text() + addition)
        text = manifest.read_text().replace(
            "\nresources:", "  - function: notes.tools:count_notes\n    annotations: {readOnlyHint: true}\n\nresources:"
        )
        write_atomically(manifest, text)
        health = anyio.run(reloaded, runner.health_url, before)
        assert health["last_reload"]["result"] == "ok", health
        assert call("count_notes") == "1"
        assert call("get_note", "--arg", "note_id=n1") == "buy milk"
    finally:
        runner.stop()
