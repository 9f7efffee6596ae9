"""The notes server's tools, its resource, a completion function and a prompt.

Plain functions: the type hints become each tool's input schema and the docstrings their
descriptions. The notes live in notes/store.py, so a reload of this file keeps them.
"""

from mcp.server.mcpserver.exceptions import ToolError

from notes import store


def add_note(text: str) -> str:
    """Store a note and return its id."""
    if not text.strip():
        raise ValueError("the note is empty: pass its text in 'text'")  # the client sees this message
    note_id = store.new_id()
    store.NOTES[note_id] = text
    return note_id


def get_note(note_id: str) -> str:
    """Return the text of the note `note_id`."""
    if note_id not in store.NOTES:
        known = ", ".join(store.NOTES) or "none yet"
        raise ToolError(f"no note {note_id!r}; the ids are: {known}")  # the client sees this message
    return store.NOTES[note_id]


def remove_note(note_id: str) -> str:
    """Delete the note `note_id`."""
    if store.NOTES.pop(note_id, None) is None:
        raise ToolError(f"no note {note_id!r}")
    return f"removed {note_id}"


def note_text(note_id: str) -> str:
    """A note, as a resource: note://n1."""
    return store.NOTES.get(note_id, "")


def complete_note_id(value: str, context: dict[str, str]) -> list[str]:
    """Completions for note://{note_id}: the ids that start with what the user typed."""
    return [note_id for note_id in store.NOTES if note_id.startswith(value)]


def summarize(style: str = "short") -> str:
    """Ask the model to summarize every note."""
    body = "\n".join(f"- {note_id}: {text}" for note_id, text in store.NOTES.items()) or "(no notes)"
    return f"Summarize these notes, {style}:\n\n{body}"
