"""`mcp-runner check`: every class of broken manifest is reported as file:line:col and a non-zero exit."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.helpers import run_cli, run_main

MODULE = '''
def add(a: int, b: int) -> int:
    """Add two numbers"""
    return a + b


def greet(name: str) -> str:
    return f"Hello {name}"


NOT_CALLABLE = 42
'''


def check(
    tmp_path: Path, manifest: str, files: dict[str, str] | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    (tmp_path / "mod_ok.py").write_text(MODULE)
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text))
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(manifest).lstrip())
    result = run_main("check", str(path), cwd=tmp_path, env=env)
    return result.returncode, result.stdout, result.stderr.replace(str(path), "m.yaml").replace(f"{tmp_path}/", "")


def test_valid_manifest_passes_with_summary(tmp_path: Path) -> None:
    code, out, err = check(
        tmp_path,
        """
        name: ok
        tools:
          - function: mod_ok:add
        resources:
          - uri: greet://{name}
            function: mod_ok:greet
    """,
    )
    assert code == 0, err
    assert out.strip().endswith('ok: "ok" at http://127.0.0.1:8000/mcp: 1 tool, 1 resource, 0 prompts, no auth')


CASES = {
    "yaml syntax": (
        "name: x\ntools:\n  - function: mod_ok:add\n   name: bad\n",
        {},
        "m.yaml:4:4: YAML syntax error",
    ),
    "unknown top-level key with hint": (
        "name: x\ntoolz: []\n",
        {},
        "m.yaml:2:1: unknown key 'toolz' (did you mean 'tools'?)",
    ),
    "unknown nested key with hint": (
        "name: x\ntools:\n  - function: mod_ok:add\n    descripton: hi\n",
        {},
        "m.yaml:4:5: unknown key 'descripton' (did you mean 'description'?)",
    ),
    "unknown annotation key": (
        "name: x\ntools:\n  - function: mod_ok:add\n    annotations: {readonlyHint: true}\n",
        {},
        "m.yaml:4:19: unknown key 'readonlyHint' (did you mean 'readOnlyHint'?)",
    ),
    "missing name": (
        "tools: []\n",
        {},
        "m.yaml:1:1: missing required key 'name'",
    ),
    "wrong type": (
        "name: x\nserver:\n  port: eighty\n",
        {},
        "m.yaml:3:9: server.port: Input should be a valid integer",
    ),
    "quoted number": (
        "name: x\nserver:\n  port: '8124'\n",
        {},
        "m.yaml:3:9: server.port: Input should be a valid integer, not the string '8124' (write it without quotes)",
    ),
    "missing env var": (
        "name: x\nsignin:\n  app_id: ${NO_SUCH_VAR_FOR_TEST}\n  resource: http://127.0.0.1:1/mcp\n",
        {},
        "m.yaml:3:11: environment variable 'NO_SUCH_VAR_FOR_TEST' is not set and has no default",
    ),
    "bad function reference": (
        "name: x\ntools:\n  - function: mod_ok.add\n",
        {},
        'm.yaml:3:15: tools.0.function: expected "module:attribute"',
    ),
    "module does not exist": (
        "name: x\ntools:\n  - function: nowhere_mod:add\n",
        {},
        "m.yaml:3:15: cannot import module 'nowhere_mod': no module named 'nowhere_mod'",
    ),
    "module with syntax error": (
        "name: x\ntools:\n  - function: broken_syntax:add\n",
        {"broken_syntax.py": "def add(a, b)\n    return a + b\n"},
        "broken_syntax.py:1:14: syntax error: expected ':' (needed by m.yaml: tool 'add' on line 3)",
    ),
    "module raising at import": (
        "name: x\ntools:\n  - function: raising_mod:add\n",
        {"raising_mod.py": "def helper():\n    raise ValueError('no config')\n\nhelper()\n"},
        "m.yaml:3:15: importing 'raising_mod' raised ValueError: no config",
    ),
    "missing attribute with hint": (
        "name: x\ntools:\n  - function: mod_ok:ad\n",
        {},
        "m.yaml:3:15: 'mod_ok' has no attribute 'ad' (did you mean 'add'?)",
    ),
    "attribute not callable": (
        "name: x\ntools:\n  - function: mod_ok:NOT_CALLABLE\n",
        {},
        "m.yaml:3:15: 'mod_ok:NOT_CALLABLE' is an int, not a callable",
    ),
    "duplicate tool names": (
        "name: x\ntools:\n  - function: mod_ok:add\n  - function: mod_ok:greet\n    name: add\n",
        {},
        "m.yaml:5:11: duplicate tool name 'add' (first at line 3)",
    ),
    "duplicate key": (
        "name: x\nname: y\n",
        {},
        "m.yaml:2:1: duplicate key 'name'",
    ),
    "template params do not match": (
        "name: x\nresources:\n  - uri: greet://{who}\n    function: mod_ok:greet\n",
        {},
        "m.yaml:3:10: cannot register 'mod_ok:greet': Mismatch between URI parameters",
    ),
    "resource needs a signin resource": (
        "name: x\nsignin:\n  app_id: real\n",
        {},
        "m.yaml:3:3: signin.resource is required unless app_id is 'local'",
    ),
    "bind to a parameter the function lacks": (
        "name: x\nsignin:\n  app_id: local\ntools:\n  - function: mod_ok:add\n    bind: {user: sub}\n",
        {},
        "m.yaml:6:11: bind names parameter 'user' that add() does not take",
    ),
    "bind without signin": (
        "name: x\ntools:\n  - function: mod_ok:add\n    bind: {a: sub}\n",
        {},
        "m.yaml:4:5: bind needs a signin block",
    ),
    "scopes without signin": (
        "name: x\nprompts:\n  - function: mod_ok:greet\n    scopes: [admin]\n",
        {},
        "m.yaml:4:5: scopes needs a signin block",
    ),
    "invalid scope token": (
        "name: x\nsignin:\n  app_id: local\n  scopes: ['has space']\n",
        {},
        "m.yaml:4:12: signin.scopes.0: String should match pattern",
    ),
    "not a URI": (
        "name: x\nresources:\n  - uri: not a uri\n    function: mod_ok:greet\n",
        {},
        "m.yaml:3:10: resources.0.uri: 'not a uri' is not a URI: it needs a scheme followed by ':'",
    ),
    "space in a URI": (
        "name: x\nresources:\n  - uri: notes://my notes\n    function: mod_ok:greet\n",
        {},
        "m.yaml:3:10: resources.0.uri: 'notes://my notes' is not a URI: ' ' at character 11 is not allowed in one",
    ),
    "unclosed template expression": (
        "name: x\nresources:\n  - uri: greet://{name\n    function: mod_ok:greet\n",
        {},
        "m.yaml:3:10: resources.0.uri: 'greet://{name' is not a valid URI template: unmatched '{' at character 9",
    ),
    "stray closing brace": (
        "name: x\nresources:\n  - uri: greet://{name}}\n    function: mod_ok:greet\n",
        {},
        "m.yaml:3:10: resources.0.uri: 'greet://{name}}' is not a valid URI template: unmatched '}' at character 15",
    ),
    "bad template variable": (
        "name: x\nresources:\n  - uri: greet://{first-name}\n    function: mod_ok:greet\n",
        {},
        "m.yaml:3:10: resources.0.uri: 'greet://{first-name}' is not a valid URI template: Invalid variable name",
    ),
    "adjacent template variables": (
        "name: x\nresources:\n  - uri: greet://{a}{b}\n    function: mod_ok:greet\n",
        {},
        "m.yaml:3:10: resources.0.uri: 'greet://{a}{b}' is not a valid URI template: Variables 'a' and 'b'",
    ),
    "empty manifest": ("", {}, "m.yaml:1:1: the manifest is empty"),
    "not a mapping": ("- a\n- b\n", {}, "m.yaml:1:1: manifest: Input should be a valid dictionary"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_manifest_is_located(tmp_path: Path, case: str) -> None:
    manifest, files, expected = CASES[case]
    code, out, err = check(tmp_path, manifest, files)
    assert code == 2, (out, err)
    assert expected in err, err
    assert "Traceback (most recent call last)" not in err  # never a runner traceback
    assert out == ""


def test_import_error_shows_only_the_users_frames(tmp_path: Path) -> None:
    code, _, err = check(
        tmp_path,
        "name: x\ntools:\n  - function: pkg.raising:add\n",
        {
            "pkg/__init__.py": "",
            "pkg/raising.py": "from pkg.helper import load\nload()\n",
            "pkg/helper.py": "def load():\n    return {}['missing']\n",
        },
    )
    assert code == 2
    assert "Traceback (your code):" in err
    assert 'File "pkg/raising.py", line 2, in <module>' in err
    assert 'File "pkg/helper.py", line 2, in load' in err
    assert "KeyError: 'missing'" in err
    assert "importlib" not in err and "runner/" not in err


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    code, _, err = check(tmp_path, "name: x\ntools:\n  - function: mod_ok:nope\n  - function: missing_mod:f\n")
    assert code == 2
    assert "m.yaml:3:15:" in err and "m.yaml:4:15:" in err
    assert "2 problems in" in err


def test_env_substitution_and_defaults(tmp_path: Path) -> None:
    manifest = (
        "name: ${NAME_FOR_TEST:-fallback}\nserver:\n  port: ${PORT_FOR_TEST:-8123}\ntools:\n  - function: mod_ok:add\n"
    )
    code, out, err = check(tmp_path, manifest, env={"NAME_FOR_TEST": "from-env"})
    assert code == 0, err
    assert 'ok: "from-env" at http://127.0.0.1:8123/mcp' in out


def test_schema_command_emits_the_manifest_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["additionalProperties"] is False
    assert {"name", "signin", "server", "tools", "resources", "prompts"} <= set(schema["properties"])
    assert schema["required"] == ["name"]


def test_counts_agree_with_their_nouns(tmp_path: Path) -> None:
    code, out, err = check(
        tmp_path,
        """
        name: ok
        tools:
          - function: mod_ok:add
          - function: mod_ok:greet
        prompts:
          - function: mod_ok:greet
        """,
    )
    assert code == 0, err
    assert out.strip().endswith("2 tools, 0 resources, 1 prompt, no auth")
    code, _, err = check(tmp_path, "name: x\ntools:\n  - function: mod_ok:nope\n")
    assert err.strip().endswith("mcp-runner: 1 problem in m.yaml")


def test_version_flag() -> None:
    import tomllib

    from tests.helpers import ROOT

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"mcp-runner {declared}\n"


def problem_lines(err: str) -> list[str]:
    """The located problem lines: everything but indented detail and the closing summary."""
    return [
        line for line in err.splitlines() if line and not line.startswith(" ") and not line.startswith("mcp-runner:")
    ]


def test_one_syntax_error_used_by_nine_entries_is_one_problem(tmp_path: Path) -> None:
    tools = "".join(f"  - function: shared:{name}\n" for name in ("a", "b", "c", "d", "e", "f", "g"))
    others = "prompts:\n  - function: shared:p\nresources:\n  - uri: r://{x}\n    function: shared:r\n"
    manifest = f"name: x\ntools:\n{tools}{others}"
    code, out, err = check(tmp_path, manifest, {"shared.py": "import os\n\ndef a(x):\n    return (x +\n"})
    assert code == 2 and out == ""
    entries = (
        "tool 'a' on line 3, tool 'b' on line 4, tool 'c' on line 5, tool 'd' on line 6, tool 'e' on line 7, "
        "tool 'f' on line 8, tool 'g' on line 9, prompt 'p' on line 11, resource 'r://{x}' on line 14"
    )
    assert problem_lines(err) == [f"shared.py:4:12: syntax error: '(' was never closed (needed by m.yaml: {entries})"]
    assert "\n    return (x +\n           ^\n" in err  # the line and a caret, as a compiler shows it
    assert err.rstrip().endswith("mcp-runner: 1 problem in m.yaml")


def test_one_import_failure_shared_by_entries_is_one_problem(tmp_path: Path) -> None:
    manifest = "name: x\ntools:\n  - function: boom:a\n  - function: boom:b\nprompts:\n  - function: boom:c\n"
    code, _, err = check(tmp_path, manifest, {"boom.py": "raise RuntimeError('no database')\n"})
    assert code == 2
    assert problem_lines(err) == [
        "m.yaml:3:15: importing 'boom' raised RuntimeError: no database "
        "(also needed by tool 'b' on line 4, prompt 'c' on line 6)"
    ]
    assert err.count("Traceback (your code):") == 1


def test_unschemable_parameter_type_is_one_line_naming_it(tmp_path: Path) -> None:
    module = "import socket\n\ndef connect(host: str, conn: socket.socket) -> str:\n    return host\n"
    manifest = "name: x\ntools:\n  - function: sock:connect\nprompts:\n  - function: sock:connect\n"
    code, _, err = check(tmp_path, manifest, {"sock.py": module})
    assert code == 2
    reason = "parameter 'conn' of connect() has type socket.socket, which has no JSON Schema (use str, int, float, bool"
    assert [line.split(": ", 1)[0] for line in problem_lines(err)] == ["m.yaml:3:15", "m.yaml:5:15"]
    for line in problem_lines(err):
        assert f"cannot register 'sock:connect': {reason}" in line
    assert len(err.splitlines()) == 3  # two problems, one line each, and the summary
    assert "errors.pydantic.dev" not in err


def test_an_asked_parameter_is_not_blamed_for_having_no_schema(tmp_path: Path) -> None:
    """A parameter a resolver fills (docs/asking.md) needs no JSON Schema: the one that does is named."""
    module = (
        "import socket\nfrom typing import Annotated\n\nfrom mcp.server.mcpserver.resolve import Resolve\n\n\n"
        "def opened() -> socket.socket:\n    return socket.socket()\n\n\n"
        "def connect(sock: Annotated[socket.socket, Resolve(opened)], conn: socket.socket) -> str:\n    return ''\n"
    )
    code, _, err = check(tmp_path, "name: x\ntools:\n  - function: sock:connect\n", {"sock.py": module})
    assert code == 2
    [line] = problem_lines(err)
    assert "cannot register 'sock:connect': parameter 'conn' of connect() has type socket.socket" in line, line


def test_a_static_resource_that_asks_is_one_line_saying_why(tmp_path: Path) -> None:
    module = (
        "from typing import Annotated\n\nfrom mcp.server.mcpserver.resolve import Elicit, Resolve\n"
        "from pydantic import BaseModel\n\n\nclass Name(BaseModel):\n    name: str\n\n\n"
        "def ask() -> Elicit[Name]:\n    return Elicit('Name?', Name)\n\n\n"
        "def today(who: Annotated[Name, Resolve(ask)]) -> str:\n    return who.name\n"
    )
    manifest = "name: x\nresources:\n  - uri: note://today\n    function: notes:today\n"
    code, _, err = check(tmp_path, manifest, {"notes.py": module})
    assert code == 2
    assert problem_lines(err) == [
        "m.yaml:3:10: cannot register 'notes:today': a static resource cannot ask (Resolve(...) in 'who'): "
        "give its URI a {parameter} to make it a template, or ask in a tool"
    ]


def test_problems_caused_by_flags_name_the_flag(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("name: x\n")
    served = run_cli("serve", "m.yaml", "--host", "0.0.0.0", cwd=tmp_path)
    assert served.returncode == 2
    assert served.stderr.startswith("--host 0.0.0.0: refusing to serve without auth on '0.0.0.0'"), served.stderr
    assert "m.yaml:1:1" not in served.stderr
    for flag, value, reason in (
        ("--port", "70000", "must be a number from 0 to 65535, got 70000"),
        ("--path", "mcp", "must start with '/', got 'mcp'"),
    ):
        result = run_cli("serve", "m.yaml", flag, value, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.splitlines()[-1] == f"mcp-runner serve: error: argument {flag}: {reason}"
        assert "Traceback" not in result.stderr


SCHEMA_CASES = {
    # manifest text -> whether `check` (and so the schema) accepts it
    "substituted port": ("name: x\nserver:\n  port: ${PORT_FOR_SCHEMA:-8124}\n", True),
    "substituted flags and skew": (
        "name: x\nsignin:\n  app_id: local\n  clock_skew: ${SKEW:-10}\ntools:\n  - function: mod_ok:add\n"
        "    annotations: {readOnlyHint: '${RO:-true}', openWorldHint: false}\n",
        True,
    ),
    "plain types": ("name: x\nversion: '1.2'\nserver:\n  port: 0\n  host: 127.0.0.1\n", True),
    "unknown top-level key": ("name: x\nportt: 1\n", False),
    "unknown nested key": ("name: x\nserver:\n  prot: 1\n", False),
    "quoted number": ("name: x\nserver:\n  port: '8124'\n", False),
    "quoted boolean": ("name: x\ntools:\n  - function: mod_ok:add\n    annotations: {readOnlyHint: 'true'}\n", False),
    "port out of range": ("name: x\nserver:\n  port: 70000\n", False),
}


def test_schema_accepts_exactly_what_check_accepts(tmp_path: Path) -> None:
    """The editor's verdict (JSON Schema on the manifest as written) matches `check`'s, both ways here."""
    import jsonschema
    import yaml

    from tests.helpers import ROOT

    schema = json.loads(run_main("schema").stdout)
    validator = jsonschema.Draft202012Validator(schema)
    for case, (manifest, accepted) in SCHEMA_CASES.items():
        code, _, err = check(tmp_path, manifest)
        assert (code == 0) is accepted, (case, err)
        errors = list(validator.iter_errors(yaml.safe_load(manifest)))
        assert (not errors) is accepted, (case, [e.message for e in errors])
    # Every manifest that ships with the project, as written (not what bench/.venvs/ installed).
    shipped = [p for p in (ROOT / "bench").rglob("*.yaml") if ".venvs" not in p.relative_to(ROOT).parts]
    for path in [ROOT / "example.yaml", *sorted(shipped)]:
        validator.validate(yaml.safe_load(path.read_text()))
    assert run_main("check", str(ROOT / "example.yaml"), cwd=ROOT).returncode == 0


def test_every_number_field_refuses_a_quoted_literal_as_the_schema_does(tmp_path: Path) -> None:
    """The class, not the example: each number field the schema lists (new ones included) is checked alike."""
    schema = json.loads(run_main("schema").stdout)

    def typed(model: str) -> list[str]:
        properties = schema["$defs"][model]["properties"]
        kinds = ("integer", "number", "boolean")
        return [name for name, p in properties.items() if any(a.get("type") in kinds for a in p.get("anyOf", []))]

    fields = {"signin": typed("SignIn"), "server": typed("ServerSettings")}
    assert "clock_skew" in fields["signin"] and "port" in fields["server"]
    lines = ["name: x", "signin:", "  app_id: local", *[f"  {f}: '1'" for f in fields["signin"]], "server:"]
    lines += [f"  {f}: '1'" for f in fields["server"]]
    code, _, err = check(tmp_path, "\n".join(lines) + "\n")
    assert code == 2
    for section, names in fields.items():
        for name in names:
            assert f"{section}.{name}: Input should be a valid" in err and "not the string '1'" in err, (name, err)
    assert len(problem_lines(err)) == len(fields["signin"]) + len(fields["server"])
