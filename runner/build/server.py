"""Validated manifest -> a ready FastMCPSignInWrapper (and, for `app_id: local`, its issuer).

This is the one pipeline that `check`, `serve` and every reload run. It never
mutates a live server: it builds a new one off to the side, collecting every
located problem before giving up.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations

from runner.auth.claims import BindError, bind_claims
from runner.auth.defaults import DEFAULT_BASE_URL, jwks_url
from runner.auth.policy import Policy
from runner.build.asking import asking
from runner.build.failures import ResolveFailures
from runner.build.needs import inferred
from runner.build.pool import ToolPool
from runner.build.resolve import ResolveError, resolve
from runner.build.reuse import Reusable, reuse_or_build
from runner.build.rounds import fingerprint
from runner.build.sealing import sealing
from runner.build.signature import registration_error
from runner.build.wrapper import FastMCPSignInWrapper
from runner.completions import Completer, Completions, FunctionCompleter, StaticCompleter, completer_problem
from runner.http.security import is_loopback_address
from runner.manifest.config import Binding
from runner.manifest.errors import Location, ManifestError, Problem
from runner.manifest.model import LOCAL_APP_ID, Manifest, ToolEntry, all_scopes, entry_name, unknown_hint
from runner.manifest.source import Source, manifest_folder
from runner.manifest.uris import template_variables
from runner.openapi.mount import mount_apis, mount_scopes
from runner.surface.headers import HeaderProblem
from runner.surface.models import mcp_icons
from runner.surface.prompt import MetaPrompt
from runner.surface.schemas import SchemaProblem
from runner.surface.tool import declare
from runner.tasks import as_task
from runner.upstreams.rounds import HeldBounds
from runner.version import server_version

if TYPE_CHECKING:
    from runner.auth.local_issuer import LocalIssuer


@dataclass
class Built:
    server: FastMCPSignInWrapper
    issuer: LocalIssuer | None  # the local issuer, when app_id is local
    issuer_url: str | None  # the token issuer (`iss`) the server accepts
    cache: Cache = field(default_factory=dict)  # built Tool/Prompt objects, for the next reload

    @property
    def token_ttl(self) -> int:
        """The local issuer's default token lifetime: an hour, or the manifest's maximum if that is shorter."""
        verifier = self.server.guard.verifier if self.server.guard is not None else None
        limit = getattr(verifier, "max_lifetime", DEFAULT_TTL)  # a JWKSTokenVerifier's; any other: an hour
        return int(min(DEFAULT_TTL, limit))

    def mint(self, **kwargs: Any) -> str:
        """A token for this server from the local issuer, with the scopes every request needs."""
        assert self.issuer is not None and self.server.guard is not None and self.issuer_url is not None
        kwargs.setdefault("ttl", self.token_ttl)
        kwargs.setdefault("scopes", list(self.server.guard.required_scopes))
        return self.issuer.mint(issuer=self.issuer_url, audience=self.server.guard.resource, **kwargs)


Cache = dict[tuple[Any, ...], Any]
DEFAULT_TTL = 3600  # seconds: the local issuer's tokens, unless signin.max_token_lifetime is shorter


def build(
    manifest: Manifest,
    source: Source,
    binding: Binding,
    *,
    root: Path | None = None,
    cache: Cache | None = None,
    pool: ToolPool | None = None,
    progress: Callable[[int, int], None] | None = None,
    online: bool = True,
) -> Built:
    """Build a server from a validated manifest; raise ManifestError listing every problem.

    `cache` holds the previous build's tools (keyed by reference and the entry's settings,
    reused while the function's interface is unchanged: runner/build/reuse.py) and prompts (keyed
    by the very function object). Turning a function into a Tool builds two pydantic models
    (about 1.3 ms a tool): a reload of a 10,000-tool manifest pays that only for the tools
    whose interface changed.
    """
    root = root or manifest_folder(source.file)
    pool = pool or ToolPool(manifest.server.tool_threads)
    previous = cache or {}
    used: Cache = {}
    problems: list[Problem] = []
    unresolved = ResolveFailures(source, root)
    total = len(manifest.tools) + len(manifest.resources) + len(manifest.prompts)
    started = 0

    def tick() -> None:
        """One more entry under way: `progress` (runner/serve/progress.py) draws it on a terminal."""
        nonlocal started
        started += 1
        if progress is not None:
            progress(started, total)

    def resolved(section: str, index: int, ref: str, key: tuple[str, ...] = ("function",)) -> Callable[..., Any] | None:
        entry = getattr(manifest, section)[index]
        what = f"{section[:-1]} {entry.uri if section == 'resources' else entry_name(entry)!r}"
        if key != ("function",):
            what = f"completion {key[-1]!r} of {what}"
        try:
            earlier = unresolved.known(ref.partition(":")[0])
            if earlier is not None:
                raise earlier
            return resolve(ref, root)
        except ResolveError as exc:
            unresolved.add(section, index, what, exc, key)
            return None

    def completers(section: str, index: int, names: list[str] | None) -> dict[str, Completer]:
        """The entry's `completions:`, each key checked against `names` (None: checked by the manifest)."""
        table: dict[str, Completer] = {}
        for arg, spec in getattr(manifest, section)[index].completions.items():
            path = (section, index, "completions", arg)
            if names is not None and arg not in names:
                noun = "an argument" if names else "any argument: it takes none"
                hint = unknown_hint(arg, names).replace("parameters", "arguments")
                problems.append(Problem(source.locate(path, key=True), f"completions: {arg!r} is not {noun}{hint}"))
            elif isinstance(spec, list):
                table[arg] = StaticCompleter(tuple(spec))
            elif (fn := resolved(section, index, spec, ("completions", arg))) is not None:
                if (reason := completer_problem(fn)) is not None:
                    problems.append(Problem(source.locate(path), f"cannot use {spec!r}: {reason}"))
                else:
                    table[arg] = FunctionCompleter(spec, pool.offload(fn))
        return table

    def failed(section: str, index: int, key: str, ref: str, fn: Callable[..., Any], exc: Exception) -> None:
        reason = registration_error(fn, exc)
        problems.append(Problem(source.locate((section, index, key)), f"cannot register {ref!r}: {reason}"))

    tools: list[Tool] = []
    needs: dict[tuple[str, str], frozenset[str]] = {}
    functions: dict[tuple[str, str], Callable[..., Any]] = {}

    def note_needs(kind: str, key: str, entry: Any, fn: Callable[..., Any]) -> None:
        """What the entry needs from the client (its `requires_client:` and what its resolvers show), and
        its function, whose code a multi-round call checks between rounds (runner/build/rounds.py)."""
        wanted = frozenset(entry.requires_client) | inferred(fn)
        if wanted:
            needs[(kind, key)] = wanted
        functions[(kind, key)] = fn
        fingerprint(fn)  # now, right after the import: the source it reads is the source just imported

    for i, tool_entry in enumerate(manifest.tools):
        tick()
        fn = resolved("tools", i, tool_entry.function)
        if fn is None:
            continue
        # Keyed by the reference, not the function object: a re-imported module's unchanged
        # functions are new objects whose tools can still be reused (runner/build/reuse.py).
        key: tuple[Any, ...] = ("tool", tool_entry.function, tool_entry.model_dump_json(exclude={"function"}))
        try:
            used[key] = _tool(fn, tool_entry, previous.get(key), pool.offload)
        except BindError as exc:
            problems.append(Problem(source.locate(("tools", i, "bind")), str(exc)))
            continue
        except SchemaProblem as exc:
            problems.append(Problem(source.locate(("tools", i, "input_schema", *exc.path)), str(exc)))
            continue
        except HeaderProblem as exc:
            problems.append(Problem(source.locate(("tools", i, "headers", exc.name)), str(exc)))
            continue
        except Exception as exc:
            failed("tools", i, "function", tool_entry.function, fn, exc)
            continue
        tools.append(used[key].tool)
        note_needs("tool", entry_name(tool_entry), tool_entry, fn)

    # `openapi:` APIs (runner/openapi); online=False: check --offline
    taken = {entry_name(t): "the manifest's tools" for t in manifest.tools}
    apis = mount_apis(manifest, source, root, previous, used, problems, taken, online=online)
    tools.extend(tool for api in apis for tool in api.tools)
    server, issuer, issuer_url = _server(manifest, source, binding, root, problems, tools)
    if server is None:
        raise ManifestError(unresolved.problems() + problems)
    if server.guard is not None:
        server.guard = dataclasses.replace(
            server.guard,
            policy=Policy.build(
                tools=[(entry_name(t), t.scopes) for t in manifest.tools]
                + [(name, scopes) for api in apis for name, scopes in api.scopes.items()],
                prompts=[(entry_name(p), p.scopes) for p in manifest.prompts],
                resources=[(r.uri, r.scopes) for r in manifest.resources],
            ),
            scopes_supported=tuple(dict.fromkeys([*all_scopes(manifest), *mount_scopes(manifest)])),
        )

    completions = Completions()
    for i, res in enumerate(manifest.resources):
        tick()
        fn = resolved("resources", i, res.function)
        if fn is None:
            continue
        try:
            register = server.resource(
                res.uri,
                name=res.name,
                title=res.title,
                description=res.description,
                mime_type=res.mime_type,
                icons=mcp_icons(res.icons),
                meta=res.meta,
            )
            static = not template_variables(res.uri)
            register(asking(pool.offload(fn), static=static))  # asking: resolvers, as the SDK has them for tools
            note_needs("resource", res.uri, res, fn)
        except Exception as exc:
            failed("resources", i, "uri", res.function, fn, exc)
            continue
        if res.completions:
            completions.templates[res.uri] = completers("resources", i, None)
    for i, prompt_entry in enumerate(manifest.prompts):
        tick()
        fn = resolved("prompts", i, prompt_entry.function)
        if fn is None:
            continue
        key = ("prompt", fn, prompt_entry.model_dump_json(exclude={"function"}))
        try:
            used[key] = (
                previous[key]
                if key in previous
                else MetaPrompt.from_function(
                    asking(pool.offload(fn)),  # resolvers, as the SDK has them for tools
                    name=entry_name(prompt_entry),
                    title=prompt_entry.title,
                    description=prompt_entry.description,
                    icons=mcp_icons(prompt_entry.icons),
                ).model_copy(update={"meta": prompt_entry.meta})
            )
        except Exception as exc:
            failed("prompts", i, "function", prompt_entry.function, fn, exc)
            continue
        server.add_prompt(used[key])
        note_needs("prompt", entry_name(prompt_entry), prompt_entry, fn)
        if prompt_entry.completions:
            arguments = [a.name for a in used[key].arguments or []]
            completions.prompts[entry_name(prompt_entry)] = completers("prompts", i, arguments)
    server.completions = completions
    server.needs, server.functions = needs, functions
    server.mounts = list(manifest.upstreams)  # served once the live server connects to them (runner/upstreams)
    server.upstream_calls_per_client = manifest.server.max_upstream_calls_per_client
    problems = unresolved.problems() + problems
    if problems:
        raise ManifestError(problems)
    return Built(server=server, issuer=issuer, issuer_url=issuer_url, cache=used)


def _tool(
    fn: Callable[..., Any],
    entry: ToolEntry,
    previous: Reusable | None,
    offload: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> Reusable:
    annotations = (
        ToolAnnotations.model_validate(entry.annotations.model_dump(exclude_none=True)) if entry.annotations else None
    )

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        # Sync code runs on the tool pool; `task:` marks the function and tells when its body starts (runner/tasks).
        return as_task(offload(bind_claims(fn, entry.bind) if entry.bind else fn), entry.task)

    def make(called: Callable[..., Any]) -> Tool:
        return declare(
            Tool.from_function,
            called,
            input_schema=entry.input_schema,
            output_schema=entry.output_schema,
            bound=frozenset(entry.bind),
            headers=entry.headers,
            name=entry_name(entry),
            title=entry.title,
            description=entry.description,
            annotations=annotations,
            icons=mcp_icons(entry.icons),
            meta=entry.meta,
            structured_output=entry.structured_output,
        )

    return reuse_or_build(fn, previous, wrap, make)


def exposure_problems(manifest: Manifest, source: Source, binding: Binding) -> list[Problem]:
    """Fail closed: no auth, and the local issuer, are for loopback binds only."""
    if is_loopback_address(binding.host) or (manifest.signin is not None and manifest.signin.app_id != LOCAL_APP_ID):
        return []
    where = Location.flag("--host", binding.host) if binding.host_flag else source.locate(("server", "host"))
    if manifest.signin is None:
        message = f"refusing to serve without auth on {binding.host!r}: add a signin block, or bind to 127.0.0.1"
    else:
        message = (
            f"the local issuer only serves on loopback, not on {binding.host!r}: "
            "set signin.app_id to your MCP SignIn app, or bind to 127.0.0.1"
        )
    return [Problem(where, message)]


def local_issuer_id(manifest: Manifest, issuer: LocalIssuer) -> str:
    """The local issuer's `iss`: `signin.base_url` if set, else its key's URN, the same on every port."""
    assert manifest.signin is not None
    return manifest.signin.base_url or issuer.issuer


def local_audience(manifest: Manifest, binding: Binding) -> str:
    """The local issuer's audience: `signin.resource` if set, else the served URL.

    Only this depends on where the server listens, and only when `signin.resource`
    is unset: `mcp-runner token` then aims at the live server (runner/cli/tokens.py).
    """
    assert manifest.signin is not None
    return manifest.signin.resource or binding.url


def _server(
    manifest: Manifest, source: Source, binding: Binding, root: Path, problems: list[Problem], tools: list[Tool]
) -> tuple[FastMCPSignInWrapper | None, LocalIssuer | None, str | None]:
    signin = manifest.signin
    security, sealed = sealing(manifest.server)  # replicas with the same keys and name continue each other's calls
    common: dict[str, Any] = {
        "request_state_security": security,
        "instructions": manifest.instructions,
        "version": server_version(manifest.version, source.digest),
        "title": manifest.title,
        "description": manifest.description,
        "website_url": manifest.website_url,
        "icons": mcp_icons(manifest.icons),
        "log_level": "WARNING",
        "page_size": manifest.server.page_size,
        "allowed_hosts": manifest.server.allowed_hosts,
        "allowed_origins": manifest.server.allowed_origins,
        "error_details": manifest.server.error_details,
        "code_root": root,
        "tools": tools,
    }
    exposure = exposure_problems(manifest, source, binding)
    if exposure:
        problems.extend(exposure)
        return None, None, None
    if signin is None:
        server = FastMCPSignInWrapper(manifest.name, allow_no_auth=True, **common)
        server.sealing = sealed
        server.upstreams.held.bounds = HeldBounds.of(manifest.server)
        return server, None, None
    # Here, not at the top: a server without auth never loads PyJWT (issue 12: start-up cost).
    from runner.auth.jwks import waiting_bound
    from runner.auth.local_issuer import LocalIssuer
    from runner.auth.verifier import JWKSTokenVerifier

    issuer: LocalIssuer | None = None
    if signin.app_id == LOCAL_APP_ID:
        # The local issuer serves its key set from this very server.
        issuer = LocalIssuer.open(root)
        issuer_url, resource = local_issuer_id(manifest, issuer), local_audience(manifest, binding)
        keys = jwks_url(binding.self_origin, LOCAL_APP_ID)
    else:
        issuer_url = signin.base_url or DEFAULT_BASE_URL
        assert signin.resource is not None  # enforced by manifest validation
        resource = signin.resource
        keys = jwks_url(issuer_url, signin.app_id)
    verifier = JWKSTokenVerifier(
        issuer=issuer_url,
        audience=resource,
        jwks_url=keys,
        leeway=signin.clock_skew,
        max_lifetime=signin.max_token_lifetime,
    )
    # A request waiting on a key fetch holds its connection: at most a tenth of them may (runner/auth/jwks.py).
    verifier.jwks.max_waiting = waiting_bound(manifest.server.max_connections)
    if issuer is not None:  # the key set this server serves at `keys`: no fetch from itself on the first token
        verifier.jwks.seed(json.dumps(issuer.jwks()).encode())
    server = FastMCPSignInWrapper(
        manifest.name,
        app_id=signin.app_id,
        resource=resource,
        base_url=issuer_url,
        token_verifier=verifier,
        required_scopes=signin.scopes,
        # The local issuer has no authorize or token endpoint: advertising it would send an
        # OAuth client to a dead end (docs/auth.md).
        advertise_authorization_server=issuer is None,
        **common,
    )
    server.sealing = sealed
    server.upstreams.held.bounds = HeldBounds.of(manifest.server)  # upstream calls across rounds (upstreams/rounds.py)
    return server, issuer, issuer_url
