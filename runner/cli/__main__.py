"""`python -m runner.cli`: the `mcp-runner` command, started as the script starts it (runner/cli/launch.py).

Client configurations written by `install` on machines without the script on PATH name this module,
so it keeps its name whatever moves inside the package."""

import sys

from runner.cli.launch import main

sys.exit(main())
