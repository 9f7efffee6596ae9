"""The manifest's scalar types: scope tokens, identifiers, and numbers and booleans that refuse quotes.

A number or boolean is written as YAML writes it (`port: 8124`) or comes from a
`${VAR}` substitution; a quoted literal (`port: "8124"`) is an error, so that what
`check` accepts stays what the JSON Schema describes (runner/manifest/schema.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StringConstraints

from runner.manifest.envsubst import Substituted

# RFC 6749 §3.3 scope-token: printable ASCII except space, '"' and '\\'.
Scope = Annotated[str, StringConstraints(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]+$")]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Claim = Annotated[str, StringConstraints(min_length=1)]
# RFC 9110 §5.6.2 token: what may follow `Mcp-Param-` in a routing header's name (SEP-2243).
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _header_name(value: Any) -> Any:
    if isinstance(value, str) and not _TOKEN.match(value):
        raise ValueError(
            f"{value!r} is not an HTTP header name: letters, digits and !#$%&'*+-.^_`|~ only, no spaces "
            "(it follows Mcp-Param-)"
        )
    return value


HeaderName = Annotated[str, BeforeValidator(_header_name), Field(json_schema_extra={"pattern": _TOKEN.pattern})]


def _typed(kind: str) -> BeforeValidator:
    """A number or boolean: as YAML writes it, or from `${VAR}`, never a literal string (see Substituted)."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and not isinstance(value, Substituted):
            hint = " (write it without quotes)" if _looks_typed(value) else ""
            raise ValueError(f"Input should be a valid {kind}, not the string {value!r}{hint}")
        return value

    return BeforeValidator(check)


def _looks_typed(text: str) -> bool:
    """A quoted number or boolean (`"8124"`, `"true"`), as opposed to a wrong value (`eighty`)."""
    if text.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


Int = Annotated[int, _typed("integer")]
Number = Annotated[float, _typed("number")]
Bool = Annotated[bool, _typed("boolean")]
