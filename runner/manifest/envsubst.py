"""`${VAR}` and `${VAR:-default}` substitution in manifest strings.

Done per YAML scalar, before validation, so a substituted port is validated
like a typed one and a missing variable is reported at the scalar's line.
`$${` is a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Substituted(str):
    """A string that came from `${VAR}` substitution.

    Only these may stand for a number or a boolean (`port: ${PORT:-8124}`): a literal
    `port: "8124"` is a string where a number belongs, an error. That keeps what `check`
    accepts exactly what the JSON Schema (`mcp-runner schema`) can describe.
    """


class MissingVariable(Exception):
    def __init__(self, name: str, offset: int) -> None:
        super().__init__(name)
        self.name = name
        self.offset = offset  # where `${` starts in the scalar, to point the column at it


def substitute(text: str, env: Mapping[str, str]) -> str:
    if "$" not in text:
        return text
    variables = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal variables
        if match.group(0) == "$${":
            return "${"
        variables += 1
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is not None and (value != "" or default is None):
            return value
        if default is not None:
            return default
        raise MissingVariable(name, match.start())

    result = _PATTERN.sub(replace, text)
    return Substituted(result) if variables else result
