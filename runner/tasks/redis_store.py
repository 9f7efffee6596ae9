"""Tasks in Redis, for replicas that share `server.bus`: any replica answers `tasks/get` and `tasks/cancel`.

A task's body runs on the replica that took its `tools/call`: it holds that request's identity,
the bound token claims and the function object it started with (a reload elsewhere must not change
what it runs), so it is never queued for another process. What Redis holds is the record and the
way to reach the body:

- `<prefix>:task:<id>`: the record (runner/tasks/records.py) as JSON, expiring with the task's TTL;
  written when the task is created, before the `CreateTaskResult` goes out, and on every change;
- `<prefix>:all`, `<prefix>:owner:<owner>` and `<prefix>:subject:<subject>`: sorted sets of task ids
  by expiry, for the bounds, checked and added to in one Lua script, so two replicas cannot both take
  the last place;
- `<prefix>:replica:<id>`: the ids of the tasks a replica runs. A replica that restarts (same
  `replica_id`) settles every task still listed there as `failed`: after a crash, a record says so
  instead of reading `working` until it expires;
- `<prefix>:signals`: a pub/sub channel; `tasks/cancel` and `tasks/update` are published there and
  the replica that runs the task acts on them; every change of a record is announced there too, for
  `notifications/tasks` listeners on any replica (runner/tasks/notify.py).

Nothing read from Redis is trusted to be well formed: a record this version cannot read is treated
as absent, and a signal it cannot act on is dropped (runner/tasks/records.py `Task.loads`); either is
logged, without its content.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time

import anyio
import redis.asyncio as redis
from redis.exceptions import RedisError

from runner.tasks.owner import subject_of_owner
from runner.tasks.records import Task, UnreadableTask
from runner.tasks.store import Bounds, Signal, SignalHandler, TaskLimit

logger = logging.getLogger("runner.tasks")
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0

# KEYS: all, owner set, record, subject set; ARGV: now, expires, per_client, total, record, ttl_ms, id,
# per_subject (0: the owner has no token subject, so no subject count)
_CREATE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
local per_subject = tonumber(ARGV[8])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 1 end
if per_subject > 0 and redis.call('ZCARD', KEYS[4]) >= per_subject then return 3 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 2 end
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
if per_subject > 0 then
  redis.call('ZADD', KEYS[4], ARGV[2], ARGV[7])
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
end
return 0
"""


class TaskStoreUnavailable(TaskLimit):
    """Redis cannot be reached: no task is created that could not be read back (fail closed)."""


class RedisStore:
    def __init__(self, url: str, deployment: str, bounds: Bounds, replica: str) -> None:
        self.bounds = bounds
        self.replica = replica
        self.prefix = f"mcp-runner:tasks:{deployment}"
        self.redis = redis.Redis.from_url(url)
        self._create = self.redis.register_script(_CREATE)
        self._handler: SignalHandler | None = None

    def _key(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def _owner_key(self, owner: str) -> str:
        return f"{self.prefix}:owner:{hashlib.sha256(owner.encode()).hexdigest()[:32]}"

    def _subject_key(self, owner: str) -> str:
        subject = subject_of_owner(owner) or owner  # without a subject the set stays empty (per_subject 0)
        return f"{self.prefix}:subject:{hashlib.sha256(subject.encode()).hexdigest()[:32]}"

    @property
    def _running_key(self) -> str:
        return f"{self.prefix}:replica:{self.replica}"

    async def create(self, task: Task) -> None:
        task.replica = self.replica
        keys = [f"{self.prefix}:all", self._owner_key(task.owner), self._key(task.task_id)]
        keys.append(self._subject_key(task.owner))
        per_subject = self.bounds.per_subject if subject_of_owner(task.owner) is not None else 0
        args: list[str | int | float] = [time.time(), task.expires, self.bounds.per_client, self.bounds.total]
        args += [task.dumps(), task.ttl_ms, task.task_id, per_subject]
        try:
            refused = await self._create(keys=keys, args=args)
            if not refused:
                await self.redis.sadd(self._running_key, task.task_id)
        except RedisError as exc:
            logger.warning("task store unavailable: %s", type(exc).__name__)
            raise TaskStoreUnavailable("The task store (server.bus) is unavailable; retry later") from None
        if refused == 1:
            self.bounds.check(self.bounds.per_client, 0)
        elif refused == 3:
            self.bounds.check(0, 0, self.bounds.per_subject)
        elif refused:
            self.bounds.check(0, self.bounds.total)

    async def get(self, task_id: str) -> Task | None:
        text = await self.redis.get(self._key(task_id))
        if not text:
            return None
        try:
            return Task.loads(text)
        except UnreadableTask as exc:
            logger.warning("task record %r is unreadable (%s): treated as absent", task_id[:64], exc)
            return None

    async def put(self, task: Task) -> None:
        await self.redis.set(self._key(task.task_id), task.dumps(), xx=True, keepttl=True)
        if task.terminal:
            await self.redis.srem(self._running_key, task.task_id)

    async def delete(self, task_id: str) -> None:
        task = await self.get(task_id)
        await self.redis.delete(self._key(task_id))
        await self.redis.srem(self._running_key, task_id)
        if task is not None:
            await self.redis.zrem(f"{self.prefix}:all", task_id)
            await self.redis.zrem(self._owner_key(task.owner), task_id)
            await self.redis.zrem(self._subject_key(task.owner), task_id)

    async def signal(self, task_id: str, signal: Signal) -> None:
        await self.redis.publish(f"{self.prefix}:signals", json.dumps(signal))

    async def changed(self, task: Task) -> None:
        await self.signal(task.task_id, {"taskId": task.task_id, "changed": True})

    def on_signal(self, handler: SignalHandler) -> None:
        self._handler = handler

    async def settle_orphans(self) -> int:
        """Tasks this replica ran before it restarted: their bodies are gone, so their records say failed."""
        settled = 0
        for raw in await self.redis.smembers(self._running_key):
            task = await self.get(raw.decode() if isinstance(raw, bytes) else raw)
            if task is not None and not task.terminal:
                task.status, task.status_message = "failed", "The replica running the task restarted"
                task.error = {"code": -32603, "message": task.status_message}
                task.input_requests, task.updated = {}, time.time()
                await self.put(task)
                settled += 1
        await self.redis.delete(self._running_key)
        return settled

    async def run(self) -> None:
        """Settle this replica's orphans, then act on signals for as long as the server runs (reconnecting)."""
        backoff = BACKOFF_FIRST
        orphans_settled = False
        while True:
            try:
                if not orphans_settled:
                    if settled := await self.settle_orphans():
                        logger.warning("settled %d task(s) of this replica's previous run as failed", settled)
                    orphans_settled = True
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(f"{self.prefix}:signals")
                    backoff = BACKOFF_FIRST
                    async for message in pubsub.listen():
                        if message.get("type") == "message" and self._handler is not None:
                            await self._deliver(message["data"])
            except RedisError as exc:
                logger.warning("task signals: Redis unavailable (%s); retrying", type(exc).__name__)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _deliver(self, data: bytes) -> None:
        """One signal; whatever is wrong with it (or with the record it names) is logged and dropped, never
        raised: the subscription, and the task group it runs in, outlive any message on the channel."""
        try:
            signal = json.loads(data)
            if not isinstance(signal, dict) or not isinstance(signal.get("taskId"), str):
                raise ValueError("not a task signal")
            if self._handler is not None:
                await self._handler(signal)
        except RedisError:
            raise  # the connection: the subscription loop reconnects
        except Exception as exc:  # noqa: BLE001 - a forged or garbled signal must not stop the others
            logger.warning("task signals: dropped a signal of %d bytes (%s)", len(data), type(exc).__name__)
