"""One task as the store keeps it, and its wire shapes (SEP-2663).

A task is a plain record: who created it, where it stands, and, once it is over, the
tool's result or the JSON-RPC error. The same record is what the in-memory store
holds and what the Redis store writes as JSON, so both serve the same `tasks/get`.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
STATUSES: frozenset[str] = TERMINAL | {"working", "input_required"}
POLL_INTERVAL_MS = 500  # what a client is told to wait between two tasks/get


def new_id() -> str:
    """Unguessable: with no tasks/list, the id is the handle, and the owner check is the lock."""
    return secrets.token_urlsafe(18)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Task:
    task_id: str
    owner: str  # the principal that created it (runner/tasks/owner.py), as a string both stores can keep
    tool: str
    ttl_ms: int
    created: float = field(default_factory=time.time)
    updated: float = 0.0
    status: Status = "working"
    status_message: str | None = None
    result: dict[str, Any] | None = None  # the tool's result, when completed
    error: dict[str, Any] | None = None  # the JSON-RPC error, when failed
    input_requests: dict[str, Any] = field(default_factory=dict)  # key -> wire request, when input_required
    replica: str | None = None  # the replica that runs it (with a bus): a restart of that replica settles it

    def __post_init__(self) -> None:
        self.updated = self.updated or self.created

    @property
    def expires(self) -> float:
        return self.created + self.ttl_ms / 1000

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def _base(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status,
            "createdAt": _iso(self.created),
            "lastUpdatedAt": _iso(self.updated),
            "ttlMs": self.ttl_ms,
            "pollIntervalMs": POLL_INTERVAL_MS,
        }
        if self.status_message is not None:
            shape["statusMessage"] = self.status_message
        return shape

    def created_result(self) -> dict[str, Any]:
        """The `CreateTaskResult` a `tools/call` answers with: the task's fields at the top level."""
        return {"resultType": "task", **self._base()}

    def detailed(self) -> dict[str, Any]:
        """What `tasks/get` answers and `notifications/tasks` carries: the task and its status's payload."""
        shape = self._base()
        if self.status == "completed" and self.result is not None:
            shape["result"] = self.result
        elif self.status == "failed" and self.error is not None:
            shape["error"] = self.error
        elif self.status == "input_required":
            shape["inputRequests"] = dict(self.input_requests)
        return shape

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | bytes) -> Task:
        """A record as a store keeps it. Fields this version does not know are ignored (a newer runner may
        write more during a rolling upgrade); a record that is not one raises `UnreadableTask`."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise UnreadableTask("not a JSON object")
            known = {f.name for f in fields(cls)}
            task = cls(**{k: v for k, v in data.items() if k in known})
        except (ValueError, TypeError) as exc:  # not JSON, a field missing
            raise UnreadableTask(type(exc).__name__) from None
        shapes = (
            (task.task_id, str),
            (task.owner, str),
            (task.tool, str),
            (task.ttl_ms, int),
            (task.created, (int, float)),
            (task.updated, (int, float)),
            (task.input_requests, dict),
        )
        if not all(isinstance(value, kind) for value, kind in shapes) or task.status not in STATUSES:
            raise UnreadableTask("a field of the wrong type")
        return task


class UnreadableTask(ValueError):
    """A stored record this version cannot read (forged, or corrupt): the store treats it as absent."""
