"""The conformance suite's server fixtures (@modelcontextprotocol/conformance 0.2.0-alpha.12) as plain functions.

Ported from the suite's own `examples/servers/typescript/everything-server.ts`:
the names, arguments and contents are what its scenarios ask for. Served by
`everything.yaml`; run by tests/test_conformance.py.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, Elicit, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.server.mcpserver.resolve import ListRoots, Sample
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    AudioContent,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    ImageContent,
    InputRequiredResult,
    ListRootsResult,
    SamplingMessage,
    TextContent,
    TextResourceContents,
)
from pydantic import BaseModel

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="


# -- tools --------------------------------------------------------------------------------------


def test_simple_text() -> str:
    """Tests simple text content response"""
    return "This is a simple text response for testing."


def test_image_content() -> list[Any]:
    """Tests image content response"""
    return [ImageContent(type="image", data=PNG, mime_type="image/png")]


def test_audio_content() -> list[Any]:
    """Tests audio content response"""
    return [AudioContent(type="audio", data=WAV, mime_type="audio/wav")]


def _embedded(uri: str, mime_type: str, text: str) -> EmbeddedResource:
    return EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mime_type=mime_type, text=text))


def test_embedded_resource() -> list[Any]:
    """Tests embedded resource content response"""
    return [_embedded("test://embedded-resource", "text/plain", "This is an embedded resource content.")]


def test_multiple_content_types() -> list[Any]:
    """Tests response with multiple content types (text, image, resource)"""
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG, mime_type="image/png"),
        _embedded("test://mixed-content-resource", "application/json", json.dumps({"test": "data", "value": 123})),
    ]


async def test_tool_with_logging(ctx: Context) -> str:
    """Tests tool that emits log messages during execution"""
    for message in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(message)
        await anyio.sleep(0.05)
    return "Tool with logging executed successfully"


async def test_tool_with_progress(ctx: Context) -> str:
    """Tests tool that reports progress notifications"""
    for step in (0, 50, 100):
        await ctx.report_progress(step, 100, f"Completed step {step} of 100")
        await anyio.sleep(0.05)
    return "Progress reported"


def test_error_handling() -> str:
    """Tests error response handling"""
    raise ToolError("This tool intentionally returns an error for testing")


async def test_sampling(prompt: str, ctx: Context) -> str:
    """Tests server-initiated sampling (LLM completion request)"""
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    result = await ctx.session.create_message(
        messages=[message], max_tokens=100, related_request_id=ctx.request_context.request_id
    )
    text = getattr(result.content, "text", "No response")
    return f"LLM response: {text}"


async def _elicit(ctx: Context, message: str, schema: dict[str, Any]) -> str:
    result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_context.request_id)
    return f"Elicitation completed: action={result.action}, content={json.dumps(result.content or {})}"


async def test_elicitation(message: str, ctx: Context) -> str:
    """Tests server-initiated elicitation (user input request)"""
    schema = {
        "type": "object",
        "properties": {"response": {"type": "string", "description": "User's response"}},
        "required": ["response"],
    }
    return await _elicit(ctx, message, schema)


async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Tests elicitation with default values per SEP-1034"""
    properties = {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    }
    message = "Please review and update the form fields with defaults"
    return await _elicit(ctx, message, {"type": "object", "properties": properties, "required": []})


def _titled(prefix: str, word: str) -> list[dict[str, str]]:
    return [{"const": f"{prefix}{i}", "title": f"{n} {word}"} for i, n in ((1, "First"), (2, "Second"), (3, "Third"))]


async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Tests elicitation with enum schema improvements per SEP-1330"""
    options = ["option1", "option2", "option3"]
    properties = {
        "untitledSingle": {"type": "string", "description": "Select one option", "enum": options},
        "titledSingle": {
            "type": "string",
            "description": "Select one option with titles",
            "oneOf": _titled("value", "Option"),
        },
        "legacyEnum": {
            "type": "string",
            "description": "Select one option (legacy)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Select multiple options",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": options},
        },
        "titledMulti": {
            "type": "array",
            "description": "Select multiple options with titles",
            "minItems": 1,
            "maxItems": 3,
            "items": {"anyOf": _titled("value", "Choice")},
        },
    }
    message = "Please select options from the enum fields"
    return await _elicit(ctx, message, {"type": "object", "properties": properties, "required": []})


def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, str] | None = None,
    contactMethod: str | None = None,  # noqa: N803 (the suite's property name)
    phone: str | None = None,
    email: str | None = None,
) -> str:
    """Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613, SEP-2106)"""
    values = {"name": name, "address": address, "contactMethod": contactMethod, "phone": phone, "email": email}
    given = {k: v for k, v in values.items() if v is not None}
    return f"JSON Schema 2020-12 tool called with: {json.dumps(given)}"


async def test_reconnection(ctx: Context) -> str:
    """Tests SSE stream disconnection and client reconnection (SEP-1699)"""
    await ctx.close_sse_stream()
    await anyio.sleep(0.1)
    return "Reconnection test completed successfully."


# -- resources ----------------------------------------------------------------------------------


def static_text() -> str:
    """A static text resource for testing"""
    return "This is the content of the static text resource."


def static_binary() -> bytes:
    """A static binary resource (image) for testing"""
    import base64

    return base64.b64decode(PNG)


def template(id: str) -> str:
    """A resource template with parameter substitution"""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


def watched_resource() -> str:
    """A resource a client can subscribe to"""
    return "Watched resource content"


# -- prompts ------------------------------------------------------------------------------------


def test_simple_prompt() -> str:
    """A simple prompt without arguments"""
    return "This is a simple prompt for testing."


def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with required arguments"""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
    """A prompt that includes an embedded resource"""
    return [
        UserMessage(content=_embedded(resourceUri, "text/plain", "Embedded resource content for testing.")),
        UserMessage(content="Please process the embedded resource above."),
    ]


def test_prompt_with_image() -> list[Message]:
    """A prompt that includes image content"""
    return [
        UserMessage(content=ImageContent(type="image", data=PNG, mime_type="image/png")),
        UserMessage(content="Please analyze the image above."),
    ]


# -- tasks (the io.modelcontextprotocol/tasks extension; `task:` in everything.yaml, docs/tasks.md) ---------


class Confirmation(BaseModel):
    confirm: bool


class Detail(BaseModel):
    name: str = ""
    confirm: bool = False


class UserName(BaseModel):
    name: str


def greet(name: str) -> str:
    """Greets someone (never a task)"""
    return f"Hello, {name}!"


async def slow_compute(seconds: float, label: str = "") -> str:
    """Works for `seconds` seconds, then answers (a task for clients that declare the extension)"""
    await anyio.sleep(seconds)
    return f"{label or 'compute'}: done after {seconds:g} s"


async def failing_job() -> str:
    """Works for a second, then fails as a tool error (always a task)"""
    await anyio.sleep(1)
    raise ToolError("the job failed")


async def protocol_error_job() -> str:
    """Fails with a JSON-RPC error: the task ends failed"""
    await anyio.sleep(0.2)
    raise MCPError(code=INTERNAL_ERROR, message="the job broke")


async def confirm_delete(filename: str, ctx: Context) -> str:
    """Asks for confirmation while it runs as a task, then deletes (pretends to)"""
    answer = await ctx.elicit(f"Delete {filename}?", Confirmation)
    if answer.action == "accept" and answer.data.confirm:
        return f"deleted {filename}"
    return f"kept {filename}"


async def multi_input(ctx: Context) -> str:
    """Asks two questions at once while it runs as a task"""
    names: list[str] = []

    async def ask(question: str) -> None:
        answer = await ctx.elicit(question, Detail)
        names.append(answer.data.name if answer.action == "accept" else "-")

    async with anyio.create_task_group() as group:
        group.start_soon(ask, "First name?")
        group.start_soon(ask, "Second name?")
    return "got " + ", ".join(sorted(names))


def ask_user_name() -> Elicit[UserName]:
    return Elicit("What is your name?", UserName)


async def test_tool_with_task(user: Annotated[UserName, Resolve(ask_user_name)]) -> str:
    """Asks for a name first (a multi-round call), then runs as a task"""
    await anyio.sleep(0.5)
    return f"Hello, {user.name}, from a task!"


# --- Routing headers (SEP-2243): a parameter mirrored into an Mcp-Param-* header (everything.yaml: headers:) ---


def test_routing_header(region: str, note: str = "") -> str:
    """Echoes the region a load balancer could route on, from the Mcp-Param-Region header"""
    return f"routed to {region}" + (f" ({note})" if note else "")


# -- tools and prompts that ask the user (issue 20 items 2 and 4; docs/asking.md) ----------------
# 0.2.0-alpha.12's input-required-result-* scenarios and server-stateless's test_missing_capability.
# Written with the SDK's resolver API, as docs/asking.md teaches: the same functions send real
# server-to-client requests to handshake-era clients and answer `input_required` to 2026-07-28 ones.


class Approval(BaseModel):
    ok: bool


class Color(BaseModel):
    color: str


class PromptContext(BaseModel):
    context: str


def ask_name() -> Elicit[UserName]:
    return Elicit("What is your name?", UserName)


def ask_capital() -> Sample:
    question = SamplingMessage(role="user", content=TextContent(type="text", text="What is the capital of France?"))
    return Sample([question], max_tokens=100)


def client_roots() -> ListRoots:
    return ListRoots()


def sampled_text(result: CreateMessageResult) -> str:
    return getattr(result.content, "text", "")


def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    """Asks the user's name under the key `user_name` (named by hand: the scenario checks the key)"""
    answer = (ctx.input_responses or {}).get("user_name")
    if not isinstance(answer, ElicitResult) or answer.action != "accept" or not answer.content:
        question = ElicitRequest(
            params=ElicitRequestFormParams(
                message="What is your name?",
                requested_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            )
        )
        return InputRequiredResult(input_requests={"user_name": question})
    return f"Hello, {answer.content.get('name')}!"


def test_input_required_result_sampling(answer: Annotated[CreateMessageResult, Resolve(ask_capital)]) -> str:
    """Asks the client's LLM a question"""
    return f"The model said: {sampled_text(answer)}"


def test_input_required_result_list_roots(roots: Annotated[ListRootsResult, Resolve(client_roots)]) -> str:
    """Asks the client for its roots"""
    return "Roots: " + ", ".join(str(root.uri) for root in roots.roots)


def ask_confirmation() -> Elicit[Approval]:
    return Elicit("Please confirm", Approval)


def test_input_required_result_request_state(confirmed: Annotated[Approval, Resolve(ask_confirmation)]) -> str:
    """Asks for a confirmation; the answer comes back with the sealed requestState"""
    return f"state-ok: confirmed={confirmed.ok}"


def ask_greeting() -> Sample:
    prompt = SamplingMessage(role="user", content=TextContent(type="text", text="Generate a greeting"))
    return Sample([prompt], max_tokens=50)


def test_input_required_result_multiple_inputs(
    user: Annotated[UserName, Resolve(ask_name)],
    greeting: Annotated[CreateMessageResult, Resolve(ask_greeting)],
    roots: Annotated[ListRootsResult, Resolve(client_roots)],
) -> str:
    """Asks three things in one round: a name, a sampled greeting and the roots"""
    return f"{sampled_text(greeting)} {user.name} ({len(roots.roots)} roots)"


def ask_step1() -> Elicit[UserName]:
    return Elicit("Step 1: What is your name?", UserName)


def ask_step2(user: Annotated[UserName, Resolve(ask_step1)]) -> Elicit[Color]:
    return Elicit(f"Step 2: What is your favorite color, {user.name}?", Color)


def test_input_required_result_multi_round(
    user: Annotated[UserName, Resolve(ask_step1)], color: Annotated[Color, Resolve(ask_step2)]
) -> str:
    """Asks two questions, the second after the first is answered"""
    return f"{user.name} likes {color.color}"


def test_input_required_result_tampered_state(confirmed: Annotated[Approval, Resolve(ask_confirmation)]) -> str:
    """Asks for a confirmation; a tampered requestState is refused by the SDK"""
    return f"confirmed={confirmed.ok}"


def name_if_the_client_can(ctx: Context) -> Elicit[UserName] | UserName:
    """Asks only a client that declared elicitation; any other gets a default"""
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        return UserName(name="friend")
    return Elicit("What is your name?", UserName)


def test_input_required_result_capabilities(
    user: Annotated[UserName, Resolve(name_if_the_client_can)],
    greeting: Annotated[CreateMessageResult, Resolve(ask_greeting)],
) -> str:
    """Asks only for what the client declared it can answer"""
    return f"{sampled_text(greeting)} {user.name}"


async def test_missing_capability(ctx: Context) -> str:
    """Needs sampling (`requires_client: [sampling]` in the manifest): refused for a client without it"""
    message = SamplingMessage(role="user", content=TextContent(type="text", text="Say hi"))
    result = await ctx.session.create_message(messages=[message], max_tokens=10, related_request_id=ctx.request_id)
    return sampled_text(result)


def ask_prompt_context() -> Elicit[PromptContext]:
    return Elicit("What context should the prompt use?", PromptContext)


def test_input_required_result_prompt(given: Annotated[PromptContext, Resolve(ask_prompt_context)]) -> str:
    """A prompt that asks the user for its context first"""
    return f"Answer with this context in mind: {given.context}"
