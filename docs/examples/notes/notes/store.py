"""The notes themselves: a dict that lives as long as the server process.

This module is kept apart from tools.py on purpose. A reload re-imports the modules whose
files changed and the modules that import them, nothing else: an edit of tools.py re-imports
tools.py and leaves this module, and so the notes, as they are.
"""

import itertools

NOTES: dict[str, str] = {}
_ids = itertools.count(1)


def new_id() -> str:
    """The next note id: n1, n2, ..."""
    return f"n{next(_ids)}"
