"""Counts and articles in messages: "1 prompt", "2 prompts", "an int", "a str".

Every message that names a count or a type goes through here, so none says "1 prompts" or "a int".
"""

from __future__ import annotations


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`3 tools`, `1 tool`: the count and the noun that agrees with it."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def article(word: str) -> str:
    """`an int`, `a str`: the vowel-letter rule, which fits the type and key names messages use."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
