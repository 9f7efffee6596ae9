"""The manifest's `server:` block: where and how to serve, the limits, reload, replicas, observability.

Split from runner/manifest/model.py, which holds the rest of the schema; `Strict` is the base of
every manifest model there and here: unknown keys are errors, a typo is never ignored.
Command-line flags override these (runner/manifest/config.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from runner.deploy.identity import REPLICA_ID
from runner.http.limits import Limits
from runner.http.proxies import trusted_proxy
from runner.http.security import AllowedHost, AllowedOrigin
from runner.http.sessions import MAX_SESSIONS, MAX_SESSIONS_PER_CLIENT, MAX_SESSIONS_PER_SUBJECT, SESSION_IDLE_TIMEOUT
from runner.http.streams import MAX_STREAMS_PER_CLIENT, MAX_STREAMS_PER_SUBJECT
from runner.manifest.scalars import Bool, Int, Number


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)


class MetricsSettings(Strict):
    """Where Prometheus scrapes: a separate address, never the MCP port (docs/observability.md)."""

    host: str = Field(default="127.0.0.1", min_length=1, description="bind address; loopback unless you say so")
    port: Int = Field(default=9464, ge=0, le=65535, description="port (0 = any free port)")


# What a client sees of an unexpected exception in a tool, resource or prompt (runner/build/raised.py).
ErrorDetails = Literal["safe", "full", "none"]

# Defaults of server.max_tasks, server.max_tasks_per_client, server.task_ttl (runner/tasks).
MAX_TASKS = 1000
MAX_TASKS_PER_CLIENT = 32
MAX_TASKS_PER_SUBJECT = 128
MAX_TASK_RESULT_BYTES = 1024 * 1024
MAX_UPSTREAM_CALLS_PER_CLIENT = 16  # server.max_upstream_calls_per_client (runner/http/busy.py)
TASK_TTL = 3600.0

BUS_SCHEMES = ("redis://", "rediss://", "unix://")  # server.bus (runner/events/bus.py)
MIN_STATE_KEY_BYTES = 32  # the SDK's floor for a request-state key (mcp/server/request_state.py)


def _state_key(key: SecretStr) -> SecretStr:
    """A `server.request_state_keys` item: long enough for the SDK; the message never echoes it."""
    size = len(key.get_secret_value().encode())
    if size < MIN_STATE_KEY_BYTES:
        raise ValueError(
            f"a key of {size} bytes: each key needs at least {MIN_STATE_KEY_BYTES} bytes of secret randomness "
            '(python -c "import secrets; print(secrets.token_hex(32))")'
        )
    return key


StateKey = Annotated[SecretStr, AfterValidator(_state_key)]


class ServerSettings(Strict):
    """Where to serve. Command-line flags override these."""

    host: str = "127.0.0.1"
    port: Int = Field(default=8000, ge=0, le=65535)
    path: str = Field(default="/mcp", pattern=r"^/")
    # Limits (docs/security.md); they take effect at start-up.
    header_timeout: Number = Field(
        default=Limits.header_timeout, gt=0, le=300, description="seconds a connection has to send its request head"
    )
    body_timeout: Number = Field(
        default=Limits.body_timeout, gt=0, le=3600, description="seconds to send a request body once its head arrived"
    )
    max_connections: Int = Field(
        default=Limits.max_connections, ge=1, description="open HTTP connections at most (idle ones make room)"
    )
    max_head_size: Int = Field(
        default=Limits.max_head_size,
        ge=1024,
        le=1024 * 1024,
        description="bytes a request head (request line and headers) may take; a larger one gets 431",
    )
    session_idle_timeout: Number = Field(
        default=SESSION_IDLE_TIMEOUT, gt=0, le=604800, description="seconds a session may go unused before it is closed"
    )
    max_sessions: Int = Field(default=MAX_SESSIONS, ge=1, description="open MCP sessions at most, all clients")
    max_sessions_per_client: Int = Field(
        default=MAX_SESSIONS_PER_CLIENT,
        ge=1,
        description="open MCP sessions at most per token (issuer, subject, "
        "client id), or per client address without auth",
    )
    max_sessions_per_subject: Int = Field(
        default=MAX_SESSIONS_PER_SUBJECT,
        ge=1,
        description="open MCP sessions at most per token subject (issuer, subject), over all its client ids",
    )
    max_streams: Int | None = Field(
        default=None,
        ge=1,
        description="open standing streams (handshake-era GET, 2026-07-28 subscriptions/listen) at most, all "
        "clients; default: three quarters of max_connections, so plain requests always find a connection",
    )
    max_streams_per_client: Int = Field(
        default=MAX_STREAMS_PER_CLIENT,
        ge=1,
        description="open standing streams at most per token (issuer, subject, client id), or per client address",
    )
    max_streams_per_subject: Int = Field(
        default=MAX_STREAMS_PER_SUBJECT,
        ge=1,
        description="open standing streams at most per token subject (issuer, subject), over all its client ids",
    )
    # Reload and the tool pool (docs/reload.md); a reload applies them.
    reload_timeout: Number = Field(
        default=30,
        gt=0,
        le=3600,
        description="seconds a reload may take (imports included) before it is abandoned and reported failed",
    )
    tool_threads: Int = Field(
        default=40,
        ge=1,
        le=1024,
        description="threads for sync tools, resources and prompts; as many calls again may wait, more are refused",
    )
    max_upstream_calls_per_client: Int = Field(
        default=MAX_UPSTREAM_CALLS_PER_CLIENT,
        ge=1,
        le=32,  # runner/http/busy.py MAX_CALLS_PER_SUBJECT: above it, one no-auth client could take all 64
        description="calls in flight at most per client (token issuer, subject, client id; the address without auth) "
        "to one upstream of `upstreams:` or API of `openapi:`: tool calls, prompt gets and resource reads alike; "
        "more are refused at once. A reload applies a new value",
    )
    page_size: Int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="items per page of tools/list, resources/list, resources/templates/list and prompts/list "
        "(cursor pages); default: everything in one page",
    )
    allowed_hosts: list[AllowedHost] = Field(
        default_factory=list,
        description="Host header values accepted besides this machine's own names: name (any port), name:port, "
        "name:* (e.g. the public name a reverse proxy forwards); on a non-loopback bind, turns the Host check on",
    )
    allowed_origins: list[AllowedOrigin] = Field(
        default_factory=list,
        description="Origin header values accepted from browsers: https://name, https://name:port, "
        "https://name:*, or * for any origin",
    )
    poll_interval: Number | None = Field(
        default=None,
        gt=0,
        le=60,
        description="watch files by polling every this many seconds instead of file-system events "
        "(network filesystems, some containers); default: events",
    )
    # Several replicas (docs/deployment.md); they take effect at start-up.
    stateless: Bool = Field(
        default=False,
        description="serve handshake-era clients without server-side sessions (no server-to-client requests, "
        "no GET stream); any replica can answer any request",
    )
    replica_id: str | None = Field(
        default=None,
        pattern=REPLICA_ID,
        description="this replica's name, carried in its session ids for the load balancer "
        "(letters, digits, '-', '_'); default: <hostname>-<port>",
    )
    drain_timeout: Number = Field(
        default=10,
        gt=0,
        le=3600,
        description="seconds in-flight calls get to finish after SIGTERM or Ctrl-C before they are cancelled",
    )
    bus: str | None = Field(
        default=None,
        description="redis://[user:password@]host:port/db (or rediss://, unix://): events reach the clients "
        "of every replica that uses the same bus; fixed at start-up",
    )

    forwarded_allow_ips: list[Annotated[str, AfterValidator(trusted_proxy)]] = Field(
        default_factory=list,
        description="the proxies (IP addresses, networks such as 10.0.0.0/8, or '*') whose X-Forwarded-For and "
        "X-Forwarded-Proto the server believes; default: none, every client is its connection's address; "
        "fixed at start-up",
    )

    @field_validator("bus")
    @classmethod
    def _bus_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(BUS_SCHEMES):
            # The value is not echoed: it may hold a password.
            raise ValueError(f"must be a Redis URL starting with {', '.join(BUS_SCHEMES)}")
        return value

    # Multi-round calls across replicas (docs/deployment.md); a reload applies them.
    request_state_keys: list[StateKey] | None = Field(
        default=None,
        min_length=1,
        description="secrets (each at least 32 bytes, e.g. ${MCP_STATE_KEY}) that seal the requestState of "
        "multi-round calls (tools that ask the user), so that any replica with the same keys and name can "
        "continue a call another began; the first seals, all unseal (rotate: [old, new], [new, old], [new]); "
        "default: a key of this process only",
    )
    request_state_ttl: Number = Field(
        default=600,
        gt=0,
        le=86400,
        description="seconds a multi-round call's requestState stays valid between its rounds",
    )
    # Upstream calls held open across a 2026-07-28 client's rounds (docs/upstreams.md); a reload applies them.
    max_held_calls: Int = Field(
        default=256, ge=1, description="upstream calls waiting for a 2026-07-28 client's next round, all clients"
    )
    max_held_calls_per_client: Int = Field(
        default=16,
        ge=1,
        description="upstream calls waiting for a client's next round at most per token (issuer, subject, client "
        "id), or per client address without auth",
    )
    max_held_calls_per_subject: Int = Field(
        default=64,
        ge=1,
        description="upstream calls waiting for a next round at most per token subject, over all its client ids",
    )

    @field_validator("request_state_keys")
    @classmethod
    def _distinct_state_keys(cls, keys: list[SecretStr] | None) -> list[SecretStr] | None:
        for i, key in enumerate(keys or ()):
            if key in (keys or [])[:i]:
                raise ValueError(f"key {i} repeats an earlier key")  # by position: never the key
        return keys

    # Tasks (docs/tasks.md); they take effect at start-up.
    max_tasks: Int = Field(
        default=MAX_TASKS, ge=1, description="tasks kept at most (running or finished, not yet expired), all clients"
    )
    max_tasks_per_client: Int = Field(
        default=MAX_TASKS_PER_CLIENT,
        ge=1,
        description="tasks kept at most per token (issuer, subject, client id), or per client address without auth",
    )
    max_tasks_per_subject: Int = Field(
        default=MAX_TASKS_PER_SUBJECT,
        ge=1,
        description="tasks kept at most per token subject (issuer, subject), over all its client ids",
    )
    max_task_result_bytes: Int = Field(
        default=MAX_TASK_RESULT_BYTES,
        ge=1,
        description="bytes a finished task's result may take (as JSON) to be kept; a larger one settles the task "
        "failed",
    )
    task_ttl: Number = Field(
        default=TASK_TTL,
        gt=0,
        le=604800,
        description="seconds a task and its result are kept after it was created; then it is forgotten",
    )
    # Observability (docs/observability.md); they take effect at start-up.
    metrics: MetricsSettings | None = Field(
        default=None, description="serve Prometheus metrics on this separate address (default: off)"
    )
    log_format: Literal["text", "json"] | None = Field(
        default=None, description="text (default) or json: one JSON object per log line (--log-format)"
    )
    log_arguments: Bool = Field(
        default=False, description="put tool and prompt arguments (credentials redacted) in the audit lines"
    )
    # What a client is told when a tool, resource or prompt raises (runner/build/raised.py); a reload applies it.
    error_details: ErrorDetails = Field(
        default="safe",
        description="what a client sees of an unexpected exception in your code: safe (a message with a reference "
        "id that is in the log), full (also the exception's type and message: for development), none (a generic "
        "message only); ToolError, ResourceError and ValueError messages reach the client in every mode",
    )


STARTUP_LIMITS = (
    "header_timeout",
    "body_timeout",
    "max_connections",
    "max_head_size",
    "session_idle_timeout",
    "max_sessions",
    "max_sessions_per_client",
    "max_sessions_per_subject",
    "max_streams",
    "max_streams_per_client",
    "max_streams_per_subject",
    "metrics",
    "log_format",
    "log_arguments",
    "stateless",
    "replica_id",
    "drain_timeout",
    "max_tasks",
    "max_tasks_per_client",
    "max_tasks_per_subject",
    "max_task_result_bytes",
    "task_ttl",
    "forwarded_allow_ips",
)
