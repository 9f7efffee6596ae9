"""FastMCPSignInWrapper: an MCPServer preconfigured for MCP SignIn.

Usable by hand exactly like the reference `main.py` (decorators, then
`.run(transport="streamable-http")`), and what the runner builds from a
manifest. The auth it serves with lives in one `Guard` attribute so the
runner can swap it on reload.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceNotFoundError,
    ToolError,
    UnexpectedResourceError,
    UnexpectedToolError,
)
from mcp.server.mcpserver.resources.templates import ResourceSecurityError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolResult,
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
    SetLevelRequestParams,
    TextContent,
)
from mcp_types import Prompt as MCPPrompt
from mcp_types import Resource as MCPResource
from mcp_types import ResourceTemplate as MCPResourceTemplate
from mcp_types import Tool as MCPTool
from pydantic import ValidationError
from starlette.applications import Starlette

from runner.auth.defaults import DEFAULT_BASE_URL
from runner.auth.gate import Guard
from runner.auth.policy import Policy, missing
from runner.build.arguments import check_prompt_arguments, check_template_arguments
from runner.build.inband import answered, needs_asking
from runner.build.needs import refuse_undeclared
from runner.build.pool import PoolFull
from runner.build.raised import ErrorPolicy, answering, refused_if_busy
from runner.build.rounds import RoundPins, fingerprint
from runner.build.sealing import Sealing, swap_boundary
from runner.completions import Completions, complete
from runner.events.handlers import install as serve_subscriptions
from runner.events.hub import EventHub
from runner.http.busy import Busy, caller
from runner.http.busy import slot as busy_slot
from runner.http.security import HostRules
from runner.loglevel import LevelFilter, set_level
from runner.manifest.settings import MAX_UPSTREAM_CALLS_PER_CLIENT, ErrorDetails
from runner.observe.calls import refused
from runner.speed.lists import ListCache
from runner.surface import stamp
from runner.surface.pages import serve_pages
from runner.surface.prompt import prompt_meta
from runner.tasks import TasksExtension
from runner.tasks.notify import install as serve_task_notifications
from runner.upstreams.forms import restore as restore_form_annotations
from runner.upstreams.pool import Upstreams
from runner.upstreams.served import Mounted
from runner.upstreams.served import call_tool as call_upstream_tool
from runner.upstreams.served import get_prompt as get_upstream_prompt
from runner.upstreams.served import read_resource as read_upstream_resource


class _Catalog:
    """The tool, resource and prompt managers and the completions, held together so one assignment swaps them."""

    def __init__(self) -> None:
        self.tools: Any = None
        self.resources: Any = None
        self.prompts: Any = None
        self.completions = Completions()
        # ("tool" | "prompt" | "resource", name or URI/template) -> client capabilities it needs (build/needs.py)
        self.needs: dict[tuple[str, str], frozenset[str]] = {}
        self.functions: dict[tuple[str, str], Any] = {}  # the same keys -> the user's function (build/rounds.py)
        self.mounts: list[Any] = []  # the manifest's `upstreams:` entries (runner/upstreams)
        self.upstream_calls_per_client = MAX_UPSTREAM_CALLS_PER_CLIENT  # server.max_upstream_calls_per_client


def _in_catalog(name: str) -> Any:
    """An attribute that lives on the server's current `_Catalog`."""
    return property(
        lambda self: getattr(self._catalog, name),
        lambda self, value: setattr(self._catalog, name, value),
    )


def _changing(kind: str) -> Callable[[Callable[..., Any]], Any]:
    """`method` of MCPServer, which changes the `kind` list, then that change made known.

    The kept list answers are forgotten, and every client listening hears it: 2026-07-28
    `subscriptions/listen` streams and handshake-era sessions alike, on every replica with
    `server.bus`, as for `ctx.notify_tools_changed()`. Before the server serves (a build),
    there is nobody to tell and nothing is sent.
    """

    def wrap(method: Callable[..., Any]) -> Any:
        @functools.wraps(method)
        def changing(self: FastMCPSignInWrapper, *args: Any, **kwargs: Any) -> Any:
            result = method(self, *args, **kwargs)
            self.list_changed(kind)
            return result

        return changing

    return wrap


class FastMCPSignInWrapper(MCPServer):
    """MCPServer protected by MCP SignIn: every MCP request needs a valid RS256 bearer token.

    `app_id` and `resource` are required; a missing one (say, an unset
    environment variable) is an error rather than a silently open server.
    Pass `allow_no_auth=True` with neither to serve without auth.
    `host`/`port`/`streamable_http_path` are defaults for `.run()`.
    `advertise_authorization_server=False` leaves `authorization_servers` out of the
    RFC 9728 metadata, for an issuer that is no OAuth authorization server.
    `page_size` splits the list methods into cursor pages of that many items.
    `allowed_hosts`/`allowed_origins` add Host and Origin values to the DNS-rebinding rule
    (runner/http/security.py).
    `error_details` is what a client sees when a tool, resource or prompt raises, and `code_root`
    the folder whose files are the user's code, for the log's trimmed traceback (runner/build/raised.py).
    """

    def __init__(
        self,
        name: str | None = None,
        *args: Any,
        app_id: str | None = None,
        resource: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        required_scopes: list[str] | None = None,
        token_verifier: TokenVerifier | None = None,
        allow_no_auth: bool = False,
        advertise_authorization_server: bool = True,
        host: str = "127.0.0.1",
        port: int = 8000,
        streamable_http_path: str = "/mcp",
        page_size: int | None = None,
        allowed_hosts: Sequence[str] = (),
        allowed_origins: Sequence[str] = (),
        error_details: ErrorDetails = "safe",
        code_root: Path | None = None,
        **kwargs: Any,
    ) -> None:
        self._catalog = _Catalog()
        self.errors = ErrorPolicy(error_details, code_root or Path.cwd())
        self.guard: Guard | None = None
        self._page_size = page_size  # items per page of the list methods; None: one page (runner/surface/pages.py)
        self.allowed_hosts, self.allowed_origins = tuple(allowed_hosts), tuple(allowed_origins)
        auth: AuthSettings | None = None
        if app_id or resource or not allow_no_auth:
            if not app_id:
                raise ValueError("app_id is required (the MCP SignIn app id, e.g. from MCP_APP_ID)")
            if not resource:
                raise ValueError("resource is required (this server's URL, e.g. from MCP_APP_RESOURCE)")
            from runner.auth.verifier import JWKSTokenVerifier  # here: a server without auth never loads PyJWT

            verifier = token_verifier or JWKSTokenVerifier.for_signin(app_id, resource, base_url)
            self.guard = Guard(
                verifier=verifier,
                resource=resource,
                authorization_server=f"{base_url.rstrip('/')}/{app_id}" if advertise_authorization_server else None,
                required_scopes=tuple(required_scopes or ()),
            )
            # Kept for code that inspects `settings.auth` (and so that the SDK's own SSE app stays
            # closed); the gate does the enforcing. The SDK insists on an issuer URL here.
            auth = AuthSettings(
                issuer_url=self.guard.authorization_server or resource,  # type: ignore[arg-type]
                resource_server_url=resource,  # type: ignore[arg-type]
                required_scopes=list(self.guard.required_scopes),
                validate_token_resource=False,  # the verifier checks the audience itself
            )
            kwargs.update(auth=auth, token_verifier=verifier)
        # What seals multi-round `requestState` (runner/build/sealing.py); set by the manifest's build, else None.
        self.sealing: Sealing | None = None
        self.events = EventHub()  # `ctx.notify_*` publish here; it feeds both protocol generations (runner/events)
        self.changed_lists = 0  # list changes made through the methods below, for a reload's "before" (runner/reload)
        kwargs.setdefault("subscriptions", self.events)
        self.tasks = TasksExtension()  # tools with `task:` run as tasks (runner/tasks)
        # The process's connections to other MCP servers (runner/upstreams): the live server's are kept across reloads.
        self.upstreams = Upstreams(changed=self.list_changed)
        kwargs["extensions"] = [*kwargs.get("extensions", ()), self.tasks]
        super().__init__(name, *args, **kwargs)
        self.tasks.server = self
        # Always served, so always advertised: a reload can add completions to a session
        # that initialized before them (docs/manifest.md, "Completions").
        self.completion()(self._complete)
        # Handshake-era `logging/setLevel`, per session (2026-07-28 opts in per request, in the SDK).
        self._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
        self.middleware.append(LevelFilter())
        self.lists = ListCache(self.middleware)  # innermost middleware: see `add_middleware`
        self.middleware.append(self.lists)
        # A multi-round call that a reload interrupts goes on only if its code did not change (build/rounds.py).
        self.add_middleware(RoundPins(self._pin_of), edits_results=False)
        # An upstream's question asked in rounds keeps its form's title and description (runner/upstreams/forms.py).
        self.add_middleware(restore_form_annotations, edits_results=False)
        serve_subscriptions(self)
        serve_task_notifications(self)  # after it: wraps the listen handler it installed (runner/tasks/notify.py)
        serve_pages(self)
        self.advertise_list_changed()  # a reload, or a tool's `ctx.mcp_server.add_tool`, tells clients
        self.run_defaults = {"host": host, "port": port, "streamable_http_path": streamable_http_path}

    # MCPServer reads these on every request; routing them through `_catalog` makes a
    # reload's swap (see `adopt`) one atomic assignment: a request sees old or new, never both.
    _tool_manager = _in_catalog("tools")
    _resource_manager = _in_catalog("resources")
    _prompt_manager = _in_catalog("prompts")
    completions = _in_catalog("completions")
    needs = _in_catalog("needs")  # what each entry needs from the client (runner/build/needs.py)
    functions = _in_catalog("functions")  # each entry's function, whose code multi-round calls pin (build/rounds.py)
    mounts = _in_catalog("mounts")  # the `upstreams:` entries served (runner/upstreams)
    upstream_calls_per_client = _in_catalog("upstream_calls_per_client")

    def adopt(self, other: FastMCPSignInWrapper) -> None:
        """Serve `other`'s tools, resources, prompts and auth from now on (a reload's swap).

        Sessions, the session manager and the subscription bus stay this server's:
        clients stay connected. Requests already running keep the objects they hold.
        """
        if other.sealing != self.sealing or other.name != self.name:  # keys, TTL or audience changed
            swap_boundary(self._lowlevel_server, other._lowlevel_server)
            self.sealing = other.sealing
        self._catalog = other._catalog
        self.upstreams.want(self._catalog.mounts)  # new and changed upstreams connect, removed ones close
        self.upstreams.held.bounds = other.upstreams.held.bounds  # held calls stay; new bounds apply to new ones
        self.guard = other.guard
        self._lowlevel_server.instructions = other.instructions  # for sessions opened from now on
        self._lowlevel_server.version = other.version
        self.page_size = other.page_size
        self.allowed_hosts, self.allowed_origins = other.allowed_hosts, other.allowed_origins
        self.errors = other.errors
        for attribute in ("name", "title", "description", "website_url", "icons"):  # serverInfo, new sessions
            setattr(self._lowlevel_server, attribute, getattr(other._lowlevel_server, attribute))
        stamp.forget(self._lowlevel_server)  # 2026-07-28 results carry serverInfo: the new one from now on
        self.lists.clear()

    @property
    def page_size(self) -> int | None:
        return self._page_size

    @page_size.setter
    def page_size(self, size: int | None) -> None:
        self._page_size = size
        self.lists.clear()  # the kept answers are pages of the old size

    def add_middleware(self, middleware: Any, *, edits_results: bool = True) -> None:
        """Add server middleware here, not to `self.middleware`: outside the list cache, which answers alone.

        Middleware may edit the result it is given in place (the SDK lets it), so list answers are
        then kept and handed out as whole copies; `edits_results=False` is the promise it never does
        (the runner's own), which keeps them shared.
        """
        self.middleware.insert(self.middleware.index(self.lists), middleware)
        if edits_results:
            self.lists.copy_answers()

    # -- what changes a list forgets the kept list answers (runner/speed/lists.py) -------------

    # -- and tells listening clients: a tool that adds a tool through `ctx.mcp_server` (docs/reload.md) --

    add_tool = _changing("tools")(MCPServer.add_tool)
    remove_tool = _changing("tools")(MCPServer.remove_tool)
    add_resource = _changing("resources")(MCPServer.add_resource)
    add_prompt = _changing("prompts")(MCPServer.add_prompt)
    remove_prompt = _changing("prompts")(MCPServer.remove_prompt)

    def resource(self, *args: Any, **kwargs: Any) -> Any:  # a template is added without add_resource
        register = super().resource(*args, **kwargs)

        def decorator(fn: Any) -> Any:
            before = self.changed_lists
            registered = register(fn)
            if self.changed_lists == before:  # a static resource went through add_resource, which said so
                self.list_changed("resources")
            return registered

        return decorator

    def list_changed(self, kind: str) -> None:
        """The `kind` list ("tools", "resources" or "prompts") changed: forget kept answers, tell listeners."""
        self.lists.clear()
        self.changed_lists += 1
        self.events.list_changed(kind)

    def advertise_list_changed(self) -> None:
        """Tell handshake-era clients (`initialize`) that tool/resource/prompt lists may change.

        On 2026-07-28 the SDK derives `listChanged` from `subscriptions/listen` being served.
        """
        lowlevel = self._lowlevel_server
        create = lowlevel.create_initialization_options
        changes = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)

        def with_list_changed(
            notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any
        ) -> Any:
            return create(notification_options or changes, *args, **kwargs)

        lowlevel.create_initialization_options = with_list_changed  # type: ignore[method-assign]

    # -- per-entry scopes: a caller sees and uses only what its token's scopes allow ------------

    def _allowed(self, needed: tuple[str, ...]) -> bool:
        token = get_access_token()
        # No token means no HTTP auth layer (stdio, or an in-process call such as a reload's
        # snapshot); over HTTP with auth on, the gate guarantees a token before any handler runs.
        return not needed or token is None or not missing(needed, token.scopes)

    def may_read(self, uri: str) -> bool:
        """Whether the current caller's scopes allow reading (and so watching) `uri`."""
        return self._allowed(self._policy().for_resource(uri))

    def _policy(self) -> Policy:
        return self.guard.policy if self.guard else Policy()

    def _mounted(self) -> Mounted:
        return Mounted(self.upstreams, self._catalog.mounts)

    def upstream_label(self, kind: str, asked: str) -> str | None:
        """The metric label of a tool, prompt or resource served from an upstream: its served name or URI, else None."""
        if not self._catalog.mounts:
            return None
        mounted = self._mounted()
        if kind in ("tool", "prompt"):
            return asked if mounted.serves(kind + "s", asked) else None
        return mounted.resource_label(asked)

    async def serve_upstreams(self) -> None:
        """Connect to the manifest's upstreams and keep them connected (in the served app's lifespan)."""
        self.upstreams.want(self._catalog.mounts)
        await self.upstreams.run()

    async def list_tools(self) -> list[MCPTool]:
        policy = self._policy()
        listed = [t for t in await super().list_tools() if self._allowed(policy.tools.get(t.name, ()))]
        if self._catalog.mounts:  # an upstream's tools after the manifest's own; a local name wins (logged once)
            local = {t.name for t in self._tool_manager.list_tools()}
            listed += [t for t, to in self._mounted().tools(local) if self._allowed(to.scopes)]
        return listed

    async def list_prompts(self) -> list[MCPPrompt]:
        policy = self._policy()
        listed = [p for p in await super().list_prompts() if self._allowed(policy.prompts.get(p.name, ()))]
        # The SDK lists prompts without `_meta`; a MetaPrompt carries one (runner/surface/prompt.py).
        listed = [
            p.model_copy(update={"meta": meta}) if (meta := prompt_meta(self._prompt_manager.get_prompt(p.name))) else p
            for p in listed
        ]
        if self._catalog.mounts:  # a local name wins, also over a caller whose scopes hide it (logged once)
            local = {p.name for p in self._prompt_manager.list_prompts()}
            listed += [p for p, to in self._mounted().prompts(local) if self._allowed(to.scopes)]
        return listed

    async def list_resources(self) -> list[MCPResource]:
        policy = self._policy()
        listed = [r for r in await super().list_resources() if self._allowed(policy.for_resource(str(r.uri)))]
        if self._catalog.mounts:  # URIs as the upstream has them; one another entry serves is left out (logged)
            taken = {str(r.uri) for r in self._resource_manager.list_resources()}
            listed += [r for r, to in self._mounted().resources(taken) if self._allowed(to.scopes)]
        return listed

    async def list_resource_templates(self) -> list[MCPResourceTemplate]:
        policy = self._policy()
        scopes = {str(t): s for t, s in policy.templates}
        templates = await super().list_resource_templates()
        listed = [t for t in templates if self._allowed(scopes.get(t.uri_template, ()))]
        if self._catalog.mounts:
            taken = {str(t.uri_template) for t in self._resource_manager.list_templates()}
            listed += [t for t, to in self._mounted().templates(taken) if self._allowed(to.scopes)]
        return listed

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        if self._catalog.mounts and self._tool_manager.get_tool(name) is None:
            target = self._mounted().tool(name)
            if target is not None:
                if not self._allowed(target.scopes):
                    refused()
                    raise ToolError(f"Unknown tool: {name}")
                # The upstream's progress goes to this call's client (when it asked for progress), and
                progress = context.report_progress if context is not None else None
                held = self.upstreams.held  # a 2026-07-28 client's answers come in rounds (runner/upstreams/rounds.py)
                bound = functools.partial(self._upstream_slot, target, context)  # held while the upstream call runs
                return await call_upstream_tool(target, arguments, progress, context, held, bound)  # logs, questions
        if not self._allowed(self._policy().tools.get(name, ())):
            refused()
            raise ToolError(f"Unknown tool: {name}")  # the same answer as for a tool that does not exist
        self._refuse_undeclared("tool", name, name, context)
        try:
            result = await super().call_tool(name, arguments, context)
            if needs_asking(result, context):  # its own input_required, to a handshake-era client (build/inband.py)
                again = functools.partial(super().call_tool, name, arguments)
                return await answered(name, arguments, result, context, again, self.events)
            return result
        except ToolError as exc:
            if not isinstance(exc, UnexpectedToolError) and isinstance(exc.__cause__, PoolFull | ValidationError):
                refused()  # for metrics and the audit line: the tool never ran
                raise  # answered as before, by the SDK: `Error executing tool <name>: <why>`
            if exc.__cause__ is None or not answering(context, "tool", name):
                raise  # the runner's own (unknown tool, input/output schema), or a nested call
            text = self.errors.answer("tool", name, exc)
            return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None, context: Any = None) -> Any:
        prompt = self._prompt_manager.get_prompt(name)
        if prompt is None and self._catalog.mounts and (target := self._mounted().prompt(name)) is not None:
            if not self._allowed(target.scopes):
                refused()
                raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name}")
            with self._upstream_slot(target, context, rpc=True):
                return await get_upstream_prompt(target, arguments)
        if prompt is None or not self._allowed(self._policy().prompts.get(name, ())):
            refused()
            raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name}")
        check_prompt_arguments(prompt, arguments)
        self._refuse_undeclared("prompt", name, name, context)
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:  # the SDK's wrapper of whatever the prompt raised
            if not answering(context, "prompt", name):
                raise
            refused_if_busy(exc)
            raise MCPError(code=INTERNAL_ERROR, message=self.errors.answer("prompt", name, exc)) from exc

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        if self._catalog.mounts and not self._serves_locally(str(uri)):
            target = self._mounted().resource(str(uri))
            if target is not None:
                if not self._allowed(target.scopes):
                    refused()
                    raise ResourceNotFoundError(f"Unknown resource: {uri}")
                with self._upstream_slot(target, context, rpc=True):
                    return await read_upstream_resource(target, str(uri))
        if not self._allowed(self._policy().for_resource(str(uri))):
            refused()
            raise ResourceNotFoundError(f"Unknown resource: {uri}")
        template = self._check_template_arguments(str(uri))
        self._refuse_undeclared("resource", template or str(uri), str(uri), context)
        try:
            return await super().read_resource(uri, context)
        except UnexpectedResourceError as exc:  # a deliberate ResourceError is the SDK's to answer, as before
            if not answering(context, "resource", str(uri)):
                raise
            refused_if_busy(exc)
            text = self.errors.answer("resource", str(uri), exc)
            raise MCPError(code=INTERNAL_ERROR, message=text, data={"uri": str(uri)}) from exc

    @contextlib.contextmanager
    def _upstream_slot(self, target: Any, context: Any, *, rpc: bool = False) -> Iterator[None]:
        """One request in flight to `target`'s upstream for the calling client (runner/http/busy.py): tool calls,
        prompt gets and resource reads count alike. Beyond the bound, refused at once: a tool error (Busy), or
        with `rpc` a JSON-RPC error, with the same text."""
        try:
            per_client, entry = self._catalog.upstream_calls_per_client, target.entry
            reach = entry.url or " ".join(entry.command or ())  # counted by the server it reaches, not by name
            with busy_slot("upstream", entry.name, caller(context), per_client, entry.timeout, reach):
                yield
        except Busy as exc:
            refused()  # for metrics and the audit line: the upstream never heard of it
            if not rpc:
                raise
            raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from None

    def _serves_locally(self, uri: str) -> bool:
        """Whether one of the manifest's own resources or templates answers `uri` (it wins over an upstream's)."""
        manager = self._resource_manager
        if any(str(r.uri) == uri for r in manager.list_resources()):
            return True
        for template in manager.list_templates():
            try:
                if template.matches(uri) is not None:
                    return True
            except ResourceSecurityError:
                return True  # the SDK answers it, as an unknown resource
        return False

    def _check_template_arguments(self, uri: str) -> str | None:
        """The template the SDK will pick for `uri` (a static resource wins), checked against the URI's parts.

        Returns that template's URI template, or None for a static resource (or no match).
        """
        manager = self._resource_manager
        if any(str(r.uri) == uri for r in manager.list_resources()):
            return None
        for template in manager.list_templates():
            try:
                params = template.matches(uri)
            except ResourceSecurityError:
                return None  # the SDK answers this one itself, as an unknown resource
            if params is not None:
                check_template_arguments(template, params)
                return str(template.uri_template)
        return None

    def _pin_of(self, kind: str, target: str) -> str | None:
        """The served fingerprint of the tool or prompt named `target`, or of the resource at URI `target`."""
        functions = self._catalog.functions
        fn = functions.get((kind, target))
        if fn is None and kind == "resource":
            for template in self._resource_manager.list_templates():
                try:
                    if template.matches(target) is not None:
                        fn = functions.get((kind, str(template.uri_template)))
                        break
                except ResourceSecurityError:
                    return None
        return None if fn is None else fingerprint(fn)

    def _refuse_undeclared(self, kind: str, key: str, name: str, context: Any) -> None:
        """-32021 before the function runs when the client did not declare what the entry needs."""
        needs = self._catalog.needs.get((kind, key))
        if needs and answering(context, kind, name):  # the client's own request, not a nested in-process call
            try:
                refuse_undeclared(needs, context.client_capabilities, f"{kind} {name!r}")
            except MCPError:
                refused()  # for metrics and the audit line: the function never ran
                raise

    async def _complete(
        self,
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        catalog = self._catalog  # one definition for the whole answer, even if a reload swaps it meanwhile
        policy = self._policy()

        def known(ref: PromptReference | ResourceTemplateReference) -> bool:
            if isinstance(ref, PromptReference):
                found = catalog.prompts.get_prompt(ref.name) is not None
                return found and self._allowed(policy.prompts.get(ref.name, ()))
            found = any(t.uri_template == ref.uri for t in catalog.resources.list_templates())
            return found and self._allowed(dict((str(t), s) for t, s in policy.templates).get(ref.uri, ()))

        given = context.arguments if context is not None else None
        return await complete(catalog.completions, ref, argument.name, argument.value, given, known=known)

    async def run_stdio_async(self) -> None:
        """Over stdio too, events reach the client (list changes, resource updates)."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self.events.run)
            tasks.start_soon(self.tasks.run)  # the tasks' own task group (runner/tasks)
            tasks.start_soon(self.serve_upstreams)  # other MCP servers' connections (runner/upstreams)
            await super().run_stdio_async()
            tasks.cancel_scope.cancel()

    def host_rules(self, loopback: bool) -> Callable[[], HostRules]:
        """The Host/Origin rule of a server bound to loopback or not, with the allowed lists current at each call."""
        return lambda: HostRules(loopback, self.allowed_hosts, self.allowed_origins)

    def run(self, transport: Any = "stdio", **kwargs: Any) -> None:  # type: ignore[override]
        if transport == "streamable-http":
            kwargs = {**self.run_defaults, **kwargs}
        super().run(transport, **kwargs)

    def streamable_http_app(self, *, streamable_http_path: str = "/mcp", **kwargs: Any) -> Starlette:  # type: ignore[override]
        """The served app, with the runner's bearer gate and RFC 9728 metadata (same options as MCPServer's)."""
        from runner.serve.app import build_app

        stateless = kwargs.pop("stateless_http", False)
        return build_app(self, path=streamable_http_path, stateless=stateless, **kwargs)
