"""`list`, `call`, `read`, `prompt`: one MCP request each to the server of a manifest (or a URL).

Each opens a real client session (runner/cli/commands/session.py), sends its request, and prints
the answer: readable text by default, the protocol's own JSON (camelCase, as on the wire)
with `--json`. Exit codes: runner/cli/commands/exits.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from mcp import Client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel

from runner.cli.commands import show
from runner.cli.commands.arguments import coerce, json_object, split_pairs
from runner.cli.commands.exits import EXIT_OK, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, CommandError
from runner.cli.commands.scopes import hidden_tool, tool_scopes
from runner.cli.commands.session import run
from runner.cli.commands.target import DEFAULT_MANIFEST, Target, is_url, resolve
from runner.paging import every_page


class _Intermixed(argparse.ArgumentParser):
    """Positionals may sit between options, as with required ones: `call m.yaml --url URL add`.

    MANIFEST is optional (`call add`), and argparse alone then gives the first group of positionals
    to both `target` and `tool` (`m.yaml` becomes the tool, `add` is "unrecognized"). Parsed as
    `parse_known_intermixed_args` does (options first, then the positionals in order), it is not.
    """

    _mixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._mixing:  # the two passes parse_known_intermixed_args makes
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def common(p: argparse.ArgumentParser) -> None:
        p.__class__ = _Intermixed  # the subparsers' class is the main parser's; only these need it
        # Optional, as for serve/check/token: `call add` is `call mcp-runner.yaml add`. With two positionals
        # the first is the manifest (or URL); with one, it is the tool/URI/prompt (see `_target_and_item`).
        p.add_argument(
            "target",
            metavar="MANIFEST",
            nargs="?",
            help=f"the manifest whose server to ask, or the server's URL (default: {DEFAULT_MANIFEST})",
        )
        p.add_argument("--url", help="the server's MCP URL (default: the manifest's running server, else its server:)")
        p.add_argument("--token", help="bearer token (default: $MCP_TOKEN, else minted for app_id: local)")
        p.add_argument("--json", action="store_true", help="print the answer as JSON")
        p.add_argument(
            "--mode",
            choices=["auto", "legacy", *MODERN_PROTOCOL_VERSIONS],
            default="auto",
            help="protocol generation: auto (2026-07-28 if the server speaks it, else the initialize handshake; "
            "the default), legacy (the handshake, at once), or 2026-07-28 (no probe)",
        )

    listing = commands.add_parser("list", help="list a server's tools, resources and prompts")
    common(listing)
    call = commands.add_parser("call", help="call a tool")
    common(call)
    call.add_argument("tool", metavar="TOOL", help="the tool to call")
    call.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="an argument (repeatable)")
    call.add_argument("--args", metavar="JSON", help="all arguments as one JSON object ('-': read it from stdin)")
    read = commands.add_parser("read", help="read a resource")
    common(read)
    read.add_argument("uri", metavar="URI", help="the resource's URI")
    prompt = commands.add_parser("prompt", help="get a prompt")
    common(prompt)
    prompt.add_argument("name", metavar="NAME", help="the prompt's name")
    prompt.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE", help="an argument (repeatable)")


ITEMS = {"call": "tool", "read": "uri", "prompt": "name"}  # each command's second positional


def main(args: argparse.Namespace) -> int:
    try:
        _check_item(args)
        given = args.target if args.target is not None else DEFAULT_MANIFEST
        needs = (lambda manifest: tool_scopes(manifest, args.tool)) if args.command == "call" else None
        found = resolve(given, args.url, args.token, command=args.command, needs=needs)
        target = dataclasses.replace(found, mode=args.mode)
        if args.command == "list":
            return _list(target, args.json)
        if args.command == "call":
            return _call(target, args.tool, split_pairs(args.arg), json_object(args.args), args.json)
        if args.command == "read":
            return _read(target, args.uri, args.json)
        return _prompt(target, args.name, split_pairs(args.arg), args.json)
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # `| head`: the reader has all it wanted; no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _check_item(args: argparse.Namespace) -> None:
    """`call m.yaml` (the manifest but no tool) reads as the tool `m.yaml` of the default manifest: say so."""
    field = ITEMS.get(args.command)
    item = getattr(args, field, None) if field else None
    if field is None or args.target is not None or not isinstance(item, str):
        return
    if item.endswith((".yaml", ".yml")) or (is_url(item) and field != "uri"):  # a resource URI may be http(s)
        raise CommandError(
            f"mcp-runner: {args.command} {item}: which {field}? `mcp-runner {args.command} {item} {field.upper()}`",
            EXIT_USAGE,
        )


def _list(target: Target, as_json: bool) -> int:
    async def everything(client: Client) -> dict[str, list[Any]]:
        return {
            "tools": await _pages(client.list_tools, "tools"),
            "resources": await _pages(client.list_resources, "resources"),
            "resourceTemplates": await _pages(client.list_resource_templates, "resource_templates"),
            "prompts": await _pages(client.list_prompts, "prompts"),
        }

    found = run(target, everything)
    if as_json:
        _print_json({key: [_dump(item) for item in items] for key, items in found.items()})
    else:
        print(show.listing(found))
    return EXIT_OK


async def _pages(method: Any, field: str) -> list[Any]:
    """Every page of a `Client` list method (runner/paging.py: at most its `MAX_PAGES`, no bound on the items)."""
    return await every_page(lambda cursor: method(cursor=cursor), field)


def _call(target: Target, tool: str, pairs: dict[str, str], given: dict[str, Any], as_json: bool) -> int:
    async def call(client: Client) -> Any:
        arguments = dict(given)
        tools: dict[str, Any] | None = None
        if pairs:
            tools = {t.name: t for t in await _pages(client.list_tools, "tools")}
            if tool in tools:
                arguments.update(coerce(tool, tools[tool].input_schema, pairs))
                return await client.call_tool(tool, arguments)
            _refuse_hidden(target, tool)  # listed only to a token with the tool's scopes
            # Not listed is not always unknown: an upstream that is down (or never connected) lists nothing,
            # yet the server answers a call to one of its tools saying why. So ask, with untyped values.
            arguments.update(coerce(tool, {"additionalProperties": True}, pairs))
        result = await client.call_tool(tool, arguments)
        if result.is_error and [getattr(b, "text", None) for b in result.content] == [f"Unknown tool: {tool}"]:
            # `--args` as `--arg`: an upstream's tool the token's scopes hide is answered as unknown.
            _refuse_hidden(target, tool)
            if tools is None:
                tools = {t.name: t for t in await _pages(client.list_tools, "tools")}
            names = ", ".join(sorted(tools)) or "none"
            raise CommandError(f"mcp-runner: the server has no tool {tool!r} (its tools: {names})", EXIT_REFUSED)
        return result

    result = run(target, call)
    if as_json:
        _print_json(_dump(result))
    else:  # a tool error is no output for a pipe: stderr, as a failing command would do
        print(show.tool_result(result), file=sys.stderr if result.is_error else sys.stdout)
    return EXIT_REFUSED if result.is_error else EXIT_OK


def _refuse_hidden(target: Target, tool: str) -> None:
    """Exit 3 naming the scope, when the manifest says `tool` needs one the token lacks (commands/scopes.py)."""
    hidden = hidden_tool(target, tool)
    if hidden is not None:
        raise CommandError(hidden, EXIT_UNREACHABLE)


def _read(target: Target, uri: str, as_json: bool) -> int:
    async def read(client: Client) -> Any:
        return await client.read_resource(uri)

    result = run(target, read)
    if as_json:
        _print_json(_dump(result))
    else:
        print(show.resource(result))
    return EXIT_OK


def _prompt(target: Target, name: str, pairs: dict[str, str], as_json: bool) -> int:
    async def get(client: Client) -> Any:
        return await client.get_prompt(name, pairs or None)

    result = run(target, get)
    if as_json:
        _print_json(_dump(result))
    else:
        print(show.prompt(result))
    return EXIT_OK


def _dump(model: BaseModel) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))
