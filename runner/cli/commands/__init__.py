"""The commands people reach for first: `init`, `list`, `call`, `read`, `prompt`, `install`.

runner/cli/main.py stays the thin parser: it asks `add_parsers` for these commands' parsers and
hands a parsed command to `main`. One module per command; shared pieces (which server,
which token, the client session, exit codes) have their own modules.
"""

from __future__ import annotations

import argparse
from pathlib import Path

COMMANDS = ("init", "list", "call", "read", "prompt", "install")


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from runner.cli.commands import client, install

    init = commands.add_parser("init", help="write a starter manifest, module and test (never overwrites)")
    init.add_argument("folder", metavar="DIR", nargs="?", type=Path, default=Path("."), help="default: here")
    client.add_parsers(commands)
    install.add_parser(commands)


def main(args: argparse.Namespace) -> int:
    if args.command == "init":
        from runner.cli.commands.init import init

        return init(args.folder)
    if args.command == "install":
        from runner.cli.commands import install

        return install.main(args)
    from runner.cli.commands import client

    return client.main(args)
