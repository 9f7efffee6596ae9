"""The `mcp-runner` script: the cyclic garbage collector paused while the runner starts.

Importing the runner and the SDK leaves about 90,000 container objects that all live on
(pydantic's schemas and validators, the SDK's types, the manifest models). With the collector on,
every 700 new ones start a young collection and every tenth of those walks the older ones too:
about 70 ms of CPU of a one-second start, for a few hundred objects freed. So the collector is
off from the first import: `serve` turns it back on once the first definition is built and frozen
out of its way (`freeze_first`, runner/reload/memory.py), every other command as soon as its
arguments are parsed. `python -m runner.cli` does the same (see the top of runner/cli/main.py).
"""

from __future__ import annotations

import gc


def main() -> int:
    gc.disable()
    from runner.cli.main import main as cli

    return cli()
