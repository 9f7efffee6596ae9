"""A tool that asks the user twice before it answers, written as the SDK's docs teach (the resolver API).

A 2026-07-28 client gets `input_required` twice (the name, then the confirmation, which depends on
the name) and calls three times in all; a handshake-era client gets two elicitation requests on its
session. `REPLICA` in the environment names the process that gave the final answer.
"""

import os
from typing import Annotated

from mcp.server.mcpserver import Elicit, Resolve
from pydantic import BaseModel


class Name(BaseModel):
    name: str


class Confirm(BaseModel):
    ok: bool


def ask_name() -> Elicit[Name]:
    return Elicit("Your name?", Name)


def ask_confirm(name: Annotated[Name, Resolve(ask_name)]) -> Elicit[Confirm]:
    return Elicit(f"Greet {name.name}?", Confirm)


def greet(
    name: Annotated[Name, Resolve(ask_name)],
    confirm: Annotated[Confirm, Resolve(ask_confirm)],
    call: int = 0,
) -> str:
    """Greet the user by the name they give, if they confirm."""
    greeting = "hello" if confirm.ok else "goodbye"
    return f"{greeting} {name.name} #{call} from {os.environ.get('REPLICA', '?')}"
