"""A tool whose input and/or output schema the manifest declares.

`input_schema` replaces the schema derived from the signature: clients see it in
`tools/list`, and every call is validated against it before the function runs. A
call that breaks it is a tool error (`isError: true`), as the SDK answers any bad
arguments. The arguments that pass are then handed to the function by name, and
the function's own annotations still apply (pydantic converts, as for any tool).

Which declared properties may a function take? Decided at load time (`declare`):
- every declared property must be a parameter of the function (a property the
  function cannot receive is a located error, not an argument silently dropped);
- every parameter without a default must be declared and listed in `required`
  (a call could never succeed otherwise);
- a parameter filled from the token (`bind:`) or the SDK context must not be declared;
- a parameter with a default may be left out: clients cannot set it, and it keeps its default.
Arguments the schema allows but no parameter takes (`additionalProperties`) are not passed on.

`output_schema` is published as the tool's `outputSchema`. The function's result
becomes `structuredContent` as JSON (a dict, a pydantic model, a dataclass...), with
the same JSON as text content for clients that read only text, and is validated
against the declared schema first: a result that breaks it is the server's bug, so
the client gets a generic tool error and the log says where the result broke it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pydantic_core
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.shared.inbound import find_invalid_x_mcp_header
from mcp_types import CallToolResult, InputRequiredResult, TextContent
from pydantic import Field

from runner.surface.headers import with_headers
from runner.surface.schemas import SchemaProblem, compile_schema, declared, violation

logger = logging.getLogger("runner")


class DeclaredTool(Tool):
    """A Tool that holds calls to a declared input schema and results to a declared output schema."""

    declared_input: Any = Field(default=None, exclude=True)  # a compiled jsonschema validator, or None
    declared_output: Any = Field(default=None, exclude=True)
    passed: frozenset[str] | None = Field(default=None, exclude=True)  # argument names handed to the function

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        if self.declared_input is not None:
            problem = violation(self.declared_input, arguments)
            if problem is not None:
                raise ToolError(f"Error executing tool {self.name}: arguments do not match input_schema {problem}")
            assert self.passed is not None
            arguments = {name: value for name, value in arguments.items() if name in self.passed}
        if self.declared_output is None:
            return await super().run(arguments, context, convert_result)
        result = await super().run(arguments, context, convert_result=False)
        return self._structured(result) if convert_result else result

    def _structured(self, result: Any) -> CallToolResult | InputRequiredResult:
        if isinstance(result, InputRequiredResult):
            return result
        if isinstance(result, CallToolResult):
            if not result.is_error:
                self._check_output(result.structured_content)
            return result
        try:
            data = pydantic_core.to_jsonable_python(result)
        except pydantic_core.PydanticSerializationError as exc:
            raise UnexpectedToolError(f"Error executing tool {self.name}") from exc
        self._check_output(data)
        text = json.dumps(data, ensure_ascii=False, indent=2)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)

    def _check_output(self, data: Any) -> None:
        problem = violation(self.declared_output, data)
        if problem is not None:
            # The server's bug, not the caller's: logged as an error, where it broke the schema; the client gets
            # a tool error that names no value (a ToolError, so the SDK adds no traceback to this line).
            logger.error("tool %r returned a result that does not match its output_schema %s", self.name, problem)
            raise ToolError(f"Error executing tool {self.name}: its result does not match its output_schema")


def declare(
    make: Callable[..., Tool],
    called: Callable[..., Any],
    *,
    input_schema: dict[str, Any] | None,
    output_schema: dict[str, Any] | None,
    bound: frozenset[str] = frozenset(),
    headers: dict[str, str] | None = None,
    **options: Any,
) -> Tool:
    """`make(called, **options)`, with the declared schemas and routing headers in place.

    SchemaProblem when a declared schema does not fit `called`; HeaderProblem when a `headers:` entry does not.
    """
    if input_schema is None and output_schema is None:
        tool = make(called, **options)
        if not headers:
            return tool
        function = getattr(tool.fn, "__name__", tool.name)
        return tool.model_copy(update={"parameters": with_headers(tool.parameters, headers, function)})
    if output_schema is not None:
        options["structured_output"] = False  # the declared schema is the output contract, not the annotation
    tool = make(called, **options)
    update: dict[str, Any] = {}
    if input_schema is not None:
        schema = _plain(input_schema)
        if (reason := find_invalid_x_mcp_header(schema)) is not None:
            raise SchemaProblem((), f"input_schema has an invalid x-mcp-header annotation: {reason}")
        update.update(declared_input=compile_schema(schema), parameters=schema, passed=_fit(tool, schema, bound))
        if headers:
            update["parameters"] = with_headers(schema, headers, getattr(tool.fn, "__name__", tool.name))
    elif headers:
        update["parameters"] = with_headers(tool.parameters, headers, getattr(tool.fn, "__name__", tool.name))
    if output_schema is not None:
        schema = _plain(output_schema)
        update.update(
            declared_output=compile_schema(schema),
            fn_metadata=tool.fn_metadata.model_copy(update={"output_schema": schema, "output_model": None}),
        )
    return DeclaredTool.model_construct(**{**dict(tool), **update})


def _fit(tool: Tool, schema: dict[str, Any], bound: frozenset[str]) -> frozenset[str]:
    """The declared properties, checked against the function's parameters (the rules in the module docstring)."""
    fields = tool.fn_metadata.arg_model.model_fields
    parameters = {field.alias or name: field for name, field in fields.items()}
    found = declared(schema)
    required = found.required
    function = getattr(tool.fn, "__name__", tool.name)
    hidden = bound | ({tool.context_kwarg} if tool.context_kwarg else set())
    for name, path in found.properties.items():
        if name in hidden:
            source = "bind:" if name in bound else "the SDK (its Context)"
            message = f"input_schema declares {name!r}, which {source} fills: a client can never supply it"
            raise SchemaProblem(path, message)
        if name not in parameters:
            takes = ", ".join(repr(p) for p in parameters) or "no parameters"
            message = f"input_schema declares {name!r}, but {function}() has no such parameter (it takes {takes})"
            raise SchemaProblem(path, message)
    for name, field in parameters.items():
        if field.is_required() and name not in required:
            known = name in found.properties
            where = "add it to required" if known else "declare it under properties and list it in required"
            raise SchemaProblem(
                found.properties[name] if known else ("required",) if "required" in schema else (),
                f"input_schema leaves out {name!r}, which {function}() needs (it has no default): {where}",
            )
    return frozenset(found.properties)


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as plain JSON data (substituted strings are a str subclass)."""
    return json.loads(json.dumps(schema))  # type: ignore[no-any-return]
