"""Completions declared in the manifest (`completions:` on prompts and resource templates).

`table` holds what a build produces (one `Completions` per definition, swapped with
the catalog on reload); `answer` serves `completion/complete` from the live one.
"""

from runner.completions.answer import MAX_VALUES, complete
from runner.completions.table import Completer, Completions, FunctionCompleter, StaticCompleter, completer_problem

__all__ = [
    "MAX_VALUES",
    "Completer",
    "Completions",
    "FunctionCompleter",
    "StaticCompleter",
    "complete",
    "completer_problem",
]
