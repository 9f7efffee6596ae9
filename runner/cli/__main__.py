"""`python -m runner.cli`: the `mcp-runner` command, started as the script starts it (runner/cli/launch.py).

Client configurations written by `install` on machines without the script on PATH name this module,
so it keeps its name whatever moves inside the package."""

import os
import sys

# `python -m` puts the working directory first on `sys.path`, the installed script does not: run from the
# manifest's folder, a `yaml.py` there would replace PyYAML in the runner's own first imports. The folder goes
# on the path when the manifest is built, after the runner's dependencies are protected (runner/build/shadows.py).
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from runner.cli.launch import main  # noqa: E402

sys.exit(main())
