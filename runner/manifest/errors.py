"""Located problems: every complaint about a manifest points at `file:line:col`.

One type for every stage (YAML syntax, schema, imports, building) so that
`check`, `serve` and a failed reload all print the same words.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based, as editors show it
    col: int  # 1-based

    def __str__(self) -> str:
        return self.file if self.line == 0 else f"{self.file}:{self.line}:{self.col}"

    @classmethod
    def flag(cls, name: str, value: object) -> Location:
        """A command-line flag as the place a problem comes from (`--host 0.0.0.0`), not the manifest."""
        return cls(f"{name} {value}", 0, 0)


@dataclass(frozen=True)
class Problem:
    location: Location
    message: str
    detail: str = ""  # e.g. the user's own traceback frames, printed indented under the message

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        if self.detail:
            text += "\n" + "\n".join("    " + line for line in self.detail.rstrip().splitlines())
        return text


@dataclass
class ManifestError(Exception):
    """Raised with every problem found, so a user fixes them all in one pass."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
