"""Long-running tools as tasks: the `io.modelcontextprotocol/tasks` extension (SEP-2663), docs/tasks.md.

`mark.py` the manifest's `task:` on the registered function; `extension.py` the SDK `Extension`
(`tools/call` as a task, `tasks/get`, `tasks/update`, `tasks/cancel`); `session.py` the questions a
running task asks; `notify.py` `notifications/tasks` on listen streams; `records.py` a task and its
wire shapes; `store.py` the in-process store and its bounds; `redis_store.py` the store across
replicas (`server.bus`); `owner.py` who may read a task; `attach.py` the settings at start-up.
"""

from runner.tasks.extension import TASKS, TasksExtension
from runner.tasks.mark import as_task

__all__ = ["TASKS", "TasksExtension", "as_task"]
