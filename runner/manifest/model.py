"""The manifest's schema: pydantic models, and validation that reports located errors.

The models are the public contract (every key is on docs/manifest.md; tests/test_docs.py holds
the page to the schema) and the source of `mcp-runner schema`. Unknown keys are errors everywhere:
a typo must never be silently ignored. The `server:` block's model lives in
runner/manifest/settings.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, StringConstraints, ValidationError, field_validator

from runner.auth.defaults import DEFAULT_BASE_URL, DEFAULT_MAX_LIFETIME
from runner.manifest.client import withheld
from runner.manifest.errors import ManifestError, Problem
from runner.manifest.located import located, unknown_hint
from runner.manifest.scalars import Bool, Claim, HeaderName, Identifier, Int, Number, Scope
from runner.manifest.settings import ServerSettings
from runner.manifest.settings import Strict as _Strict
from runner.manifest.source import Path, Source, manifest_folder, parse
from runner.manifest.uris import check_uri, template_variables
from runner.surface.checks import surface_problems
from runner.surface.models import OBJECT_SCHEMA, Icon, Meta

FUNCTION_REF = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
LOCAL_APP_ID = "local"
MIN_LIFETIME = 300  # any shorter and clients would fetch a new token every few calls
MAX_LIFETIME = 7 * 86_400  # a bearer token that lives longer than a week is a credential, not an access token


class SignIn(_Strict):
    """MCP SignIn, the OAuth issuer. Omit the whole block to serve without auth (loopback only)."""

    app_id: str = Field(min_length=1, description='MCP SignIn app id; "local" uses the built-in local issuer')
    resource: str | None = Field(
        default=None,
        description="This server's resource URL: the tokens' audience. Required unless app_id is local, "
        "where it defaults to the served URL.",
    )
    base_url: str | None = Field(
        default=None,
        description=f"Token issuer. JWKS = {{base_url}}/apps/{{app_id}}/discovery/v2.0/keys. "
        f"Default {DEFAULT_BASE_URL}; for the local issuer, urn:mcp-runner:local:<key id>, the same on every port.",
    )

    scopes: list[Scope] = Field(default_factory=list, description="scopes every request needs")
    clock_skew: Number = Field(
        default=30, ge=0, le=300, description="seconds of clock skew allowed when checking exp/nbf/iat"
    )
    max_token_lifetime: Int = Field(
        default=DEFAULT_MAX_LIFETIME,
        ge=MIN_LIFETIME,
        le=MAX_LIFETIME,
        description="the longest token lifetime (exp - iat, seconds) accepted, and the longest "
        "`mcp-runner token --ttl`. Default 86400 (24 h); 300 to 604800 (7 days).",
    )

    @field_validator("resource", "base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value


class Annotations(_Strict):
    """MCP tool annotations (hints for clients; never security boundaries)."""

    title: str | None = None
    readOnlyHint: Bool | None = None
    destructiveHint: Bool | None = None
    idempotentHint: Bool | None = None
    openWorldHint: Bool | None = None


def _completion_source(value: Any) -> Any:
    """A static list of strings, or a `module:function` reference: said in words, not as a union's two errors."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"a completion list holds strings; item {i + 1} is {item!r}")
        return value
    if isinstance(value, str) and re.match(FUNCTION_REF, value):
        return value
    raise ValueError(f'expected a list of strings or a "module:function" reference, got {value!r}')


CompletionSource = Annotated[
    list[str] | Annotated[str, StringConstraints(pattern=FUNCTION_REF)], BeforeValidator(_completion_source)
]
COMPLETIONS_HELP = (
    "argument -> a list of values (filtered by the typed prefix) or a module:function called with "
    "(value, context) that returns the values; see docs/manifest.md 'Completions'"
)


class _Entry(_Strict):
    function: str = Field(pattern=FUNCTION_REF, description='"module:attribute", relative to the manifest folder')
    name: str | None = None
    title: str | None = None
    description: str | None = None
    scopes: list[Scope] = Field(
        default_factory=list, description="scopes a caller needs to see and use this entry (on top of signin.scopes)"
    )
    icons: list[Icon] | None = Field(default=None, description="icons a client may show for this entry")
    meta: Meta | None = None
    requires_client: list[Literal["sampling", "elicitation", "roots"]] = Field(
        default_factory=list,
        description="client capabilities this entry needs (added to what its resolvers show); a client that "
        "did not declare one is refused with -32021 before the function runs",
    )


class ToolEntry(_Entry):
    annotations: Annotations | None = None
    structured_output: Bool | None = Field(
        default=None,
        description="true: structured results (needs a return annotation); false: text only; "
        "default: decided by the return annotation",
    )
    input_schema: dict[str, Any] | None = Field(
        default=None,
        description="a JSON Schema (Draft 2020-12 unless $schema says otherwise) that replaces the one "
        "derived from the signature; calls are validated against it before the function runs",
        json_schema_extra=OBJECT_SCHEMA,
    )
    output_schema: dict[str, Any] | None = Field(
        default=None,
        description="a JSON Schema for the tool's structured result; results are validated against it",
        json_schema_extra=OBJECT_SCHEMA,
    )
    bind: dict[Identifier, Claim] = Field(
        default_factory=dict,
        description="parameter -> token claim: the value comes from the verified token, "
        "is hidden from the input schema and can never be supplied by the model",
    )
    task: Literal["never", "optional", "required"] = Field(
        default="never",
        description="run as a task (the io.modelcontextprotocol/tasks extension): optional = a task for a client "
        "that declares the extension, a plain call otherwise; required = a task, and a client that does not "
        "declare the extension gets -32021; never (default) = always a plain call",
    )
    headers: dict[Identifier, HeaderName] = Field(
        default_factory=dict,
        description="parameter -> routing header name (SEP-2243): 2026-07-28 clients also send the argument as "
        "the HTTP header Mcp-Param-<name>, checked against the body; a string, integer or boolean parameter",
    )


class ResourceEntry(_Entry):
    uri: str = Field(min_length=1, description="a template when it has {params}, else a static resource")
    mime_type: str | None = None
    completions: dict[str, CompletionSource] = Field(
        default_factory=dict, description="for a URI template: " + COMPLETIONS_HELP.replace("argument", "parameter", 1)
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str) -> str:
        check_uri(value)
        return value


class PromptEntry(_Entry):
    completions: dict[str, CompletionSource] = Field(default_factory=dict, description=COMPLETIONS_HELP)


class Override(_Strict):
    """Per-entry settings for a tool or prompt served from an upstream or an OpenAPI operation, by served name."""

    title: str | None = None
    description: str | None = None
    scopes: list[Scope] = Field(
        default_factory=list, description="scopes needed for this entry, on top of signin.scopes and the mount's"
    )
    annotations: Annotations | None = None
    icons: list[Icon] | None = None
    meta: Meta | None = None


class _Mount(_Strict):
    """What upstream MCP servers and OpenAPI APIs share: a name, a prefix, filters, scopes, credentials."""

    name: Identifier = Field(description="names the mount in logs, /healthz and errors; the default prefix")
    prefix: str | None = Field(default=None, description='prepended to served names; default "<name>_", "" for none')
    include: list[str] | None = Field(default=None, description="serve only these names (as the source names them)")
    exclude: list[str] = Field(default_factory=list, description="never serve these names (as the source names them)")
    scopes: list[Scope] = Field(
        default_factory=list, description="scopes needed for everything from this mount, on top of signin.scopes"
    )
    headers: dict[HeaderName, str] = Field(
        default_factory=dict,
        description="static HTTP headers sent with every request to the source (credentials from ${VAR}); "
        "a client's token is never forwarded",
    )
    timeout: Number = Field(default=30, gt=0, le=3600, description="seconds a call to the source may take")
    overrides: dict[str, Override] = Field(
        default_factory=dict, description="served name -> per-entry settings (title, scopes, annotations, icons)"
    )

    @field_validator("headers")
    @classmethod
    def _header_values(cls, value: dict[str, str]) -> dict[str, str]:
        """A value HTTP refuses (a newline from `$(cat token.txt)`) is found here, naming the header, never the value:
        HTTP libraries quote the value in their refusal, which would then be logged."""
        for name, text in value.items():
            if text != text.strip(" \t") or any(not (" " <= c <= "~" or c == "\t") for c in text):
                raise ValueError(
                    f"header {name!r}: the value has a character HTTP does not allow (a newline or another control "
                    "character, a non-ASCII one, or a space at either end); it is not shown"
                )
        return value

    @property
    def served_prefix(self) -> str:
        return f"{self.name}_" if self.prefix is None else self.prefix


class UpstreamEntry(_Mount):
    """Another MCP server mounted next to the manifest's own entries (runner/upstreams): stdio or streamable HTTP."""

    command: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        description="stdio: the program and its arguments, started and supervised by the runner "
        "(restarted with backoff if it dies; never outlives the runner)",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="stdio: environment variables for the command, on top of a minimal one"
    )
    url: str | None = Field(default=None, description="streamable HTTP: the upstream's MCP endpoint, an http(s) URL")
    # Where the entry is in the manifest (file:line:col), for problems found only once it is connected.
    _location: str | None = PrivateAttr(default=None)
    _folder: str | None = PrivateAttr(default=None)  # the manifest's folder: where a command starts

    @property
    def location(self) -> str | None:
        return self._location

    @property
    def folder(self) -> str | None:
        return self._folder

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value


class OpenAPIEntry(_Mount):
    """An HTTP API described by an OpenAPI 3.0 or 3.1 document: one tool per operation (docs/openapi.md)."""

    spec: str | dict[str, Any] = Field(
        description="the OpenAPI document: a file (YAML or JSON, relative to the manifest folder), an http(s) URL, "
        "or the document itself as a mapping"
    )
    base_url: str | None = Field(
        default=None,
        description="where the API is served, e.g. http://127.0.0.1:9000/v1; default: the document's first "
        "servers URL, when it is absolute",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value


class Manifest(_Strict):
    """An mcp-runner manifest."""

    name: str = Field(min_length=1)
    version: str | None = Field(
        default=None,
        min_length=1,
        description="serverInfo.version, as clients see it. Default: mcp-runner's version plus the manifest's "
        "short sha256, e.g. 0.1.0+3f2a9c1b",
    )
    title: str | None = Field(default=None, description="serverInfo.title: a display name for the server")
    description: str | None = Field(default=None, description="serverInfo.description")
    website_url: str | None = Field(default=None, description="serverInfo.websiteUrl: an http(s) URL")
    icons: list[Icon] | None = Field(default=None, description="serverInfo.icons: icons a client may show")
    instructions: str | None = None
    signin: SignIn | None = None
    server: ServerSettings = Field(default_factory=ServerSettings)
    tools: list[ToolEntry] = Field(default_factory=list)
    resources: list[ResourceEntry] = Field(default_factory=list)
    prompts: list[PromptEntry] = Field(default_factory=list)
    upstreams: list[UpstreamEntry] = Field(
        default_factory=list, description="other MCP servers whose tools, prompts and resources are served here"
    )
    openapi: list[OpenAPIEntry] = Field(
        default_factory=list, description="HTTP APIs described by OpenAPI 3.x, served as tools (docs/openapi.md)"
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f'quote it: version: "{value}" (YAML reads an unquoted 1.10 as the number 1.1)')
        return value

    @field_validator("website_url")
    @classmethod
    def _website(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value


def load(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None, *, client: bool = False
) -> tuple[Manifest, Source]:
    """Read, parse and validate a manifest file; raise ManifestError with located problems.

    `client`: for the client commands, without the parts only the server uses (runner/manifest/client.py):
    never serve or build what this returns.
    """
    file = str(path)
    try:
        text = FsPath(path).read_bytes().decode("utf-8")  # no newline translation: the digest is of the bytes
    except (OSError, UnicodeDecodeError) as exc:
        from runner.manifest.errors import Location

        raise ManifestError([Problem(Location(file, 1, 1), f"cannot read the manifest: {exc}")]) from None
    return validate(parse(text, file, os.environ if env is None else env, withheld if client else None))


def validate(source: Source) -> tuple[Manifest, Source]:
    try:
        manifest = Manifest.model_validate(source.data)
    except ValidationError as exc:
        raise ManifestError([located(source, err, Manifest) for err in exc.errors()]) from None
    problems = [
        *_duplicates(source, manifest),
        *_signin_rules(source, manifest),
        *_template_completions(source, manifest),
        *surface_problems(source, manifest),
        *_upstream_rules(source, manifest),
    ]
    if problems:
        raise ManifestError(problems)
    return manifest, source


def entry_name(entry: ToolEntry | ResourceEntry | PromptEntry) -> str:
    return entry.name or entry.function.rsplit(":", 1)[1].rsplit(".", 1)[-1]


def _duplicates(source: Source, manifest: Manifest) -> list[Problem]:
    problems: list[Problem] = []
    groups: list[tuple[str, list[str]]] = [
        ("tools", [entry_name(t) for t in manifest.tools]),
        ("prompts", [entry_name(p) for p in manifest.prompts]),
        ("resources", [r.uri for r in manifest.resources]),
    ]
    for section, names in groups:
        first: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in first:
                key = "uri" if section == "resources" else "name"
                # A name taken from the function (no `name:` key) points at the function instead.
                path: Path = (section, i, key) if (section, i, key) in source.values else (section, i, "function")
                earlier = source.locate((section, first[name]))
                message = f"duplicate {section[:-1]} {key} {name!r} (first at line {earlier.line})"
                problems.append(Problem(source.locate(path), message))
            else:
                first[name] = i
    return problems


def _upstream_rules(source: Source, manifest: Manifest) -> list[Problem]:
    """Each upstream is either a command (stdio) or a url (HTTP), with the keys that go with it; names are unique."""
    problems: list[Problem] = []
    names: dict[str, int] = {}
    for i, up in enumerate(manifest.upstreams):
        here: Path = ("upstreams", i)
        up._location, up._folder = str(source.locate(here)), str(manifest_folder(source.file))
        if (up.command is None) == (up.url is None):
            said = "both" if up.command is not None else "neither"
            message = f"upstream {up.name!r} needs exactly one of command (stdio) or url (HTTP), not {said}"
            problems.append(Problem(source.locate(here), message))
        elif up.command is not None and up.headers:
            message = "headers are sent to an HTTP upstream (url); a stdio upstream takes env"
            problems.append(Problem(source.locate((*here, "headers"), key=True), message))
        elif up.url is not None and up.env:
            message = "env is for a stdio upstream (command); an HTTP upstream takes headers"
            problems.append(Problem(source.locate((*here, "env"), key=True), message))
        if up.name in names:
            earlier = source.locate(("upstreams", names[up.name]))
            message = f"duplicate upstream name {up.name!r} (first at line {earlier.line})"
            problems.append(Problem(source.locate((*here, "name")), message))
        names.setdefault(up.name, i)
        if manifest.signin is None and (up.scopes or any(o.scopes for o in up.overrides.values())):
            message = "scopes needs a signin block: without auth there is no token to take it from"
            problems.append(Problem(source.locate((*here, "scopes"), key=True), message))
    return problems


def _template_completions(source: Source, manifest: Manifest) -> list[Problem]:
    """A resource's completion keys must be its URI template's parameters (a prompt's are checked at build)."""
    problems = []
    for i, res in enumerate(manifest.resources):
        if not res.completions:
            continue
        params = template_variables(res.uri)
        for key in res.completions:
            if key in params:
                continue
            if not params:
                message = f"completions: {res.uri!r} is not a URI template, so it has no parameters to complete"
            else:
                message = f"completions: {key!r} is not a parameter of {res.uri!r}" + unknown_hint(key, params)
            problems.append(Problem(source.locate(("resources", i, "completions", key), key=True), message))
    return problems


def _signin_rules(source: Source, manifest: Manifest) -> list[Problem]:
    signin = manifest.signin
    problems = []
    if signin is not None and signin.app_id != LOCAL_APP_ID and signin.resource is None:
        problems.append(Problem(source.locate(("signin",)), "signin.resource is required unless app_id is 'local'"))
    if signin is None:
        sections: list[tuple[str, list[Any]]] = [
            ("tools", manifest.tools),
            ("resources", manifest.resources),
            ("prompts", manifest.prompts),
        ]
        for section, entries in sections:
            for i, entry in enumerate(entries):
                for key in ("scopes", "bind"):
                    if getattr(entry, key, None):
                        problems.append(
                            Problem(
                                source.locate((section, i, key), key=True),
                                f"{key} needs a signin block: without auth there is no token to take it from",
                            )
                        )
    return problems


def all_scopes(manifest: Manifest) -> list[str]:
    """Every scope the manifest uses, for the protected-resource metadata's scopes_supported."""
    found: dict[str, None] = {}
    for scope in manifest.signin.scopes if manifest.signin else []:
        found[scope] = None
    entries: list[_Entry | _Mount | Override] = [*manifest.tools, *manifest.resources, *manifest.prompts]
    for mount in [*manifest.upstreams, *manifest.openapi]:  # the CLI's minted token needs them too
        entries += [mount, *mount.overrides.values()]
    for entry in entries:
        for scope in entry.scopes:
            found[scope] = None
    return list(found)
