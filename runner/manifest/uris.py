"""Resource URIs and URI templates, checked when the manifest is read.

A resource's `uri:` is what a client sends back in `resources/read`, so a value
that is not a URI (`not a uri`) or a template the SDK cannot match would only
fail later, or never be readable. Both are manifest errors, located at the value.
"""

from __future__ import annotations

import re

from mcp.shared.uri_template import InvalidUriTemplate, UriTemplate

# RFC 3986: scheme ":" then characters a URI may hold (no spaces, quotes, angle brackets...).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_FORBIDDEN = re.compile(r"[\s\"<>\\^`|]")
_EXPRESSION = re.compile(r"\{[^{}]*\}")
_STRAY = re.compile(r"[{}]")
EXAMPLES = "as in 'greeting://hello', 'file:///notes.txt' or the template 'greeting://{name}'"


def check_uri(uri: str) -> None:
    """Raise ValueError, in words for the manifest's author, unless `uri` is a URI or a URI template."""
    if not _SCHEME.match(uri):
        raise ValueError(f"{uri!r} is not a URI: it needs a scheme followed by ':', {EXAMPLES}")
    bad = _FORBIDDEN.search(uri)
    if bad:
        raise ValueError(f"{uri!r} is not a URI: {bad.group()!r} at character {bad.start() + 1} is not allowed in one")
    if "{" in uri or "}" in uri:
        stray = _STRAY.search(_EXPRESSION.sub(lambda m: " " * len(m.group()), uri))
        if stray:
            raise ValueError(
                f"{uri!r} is not a valid URI template: unmatched {stray.group()!r} at character {stray.start() + 1}"
            )
        try:
            UriTemplate.parse(uri)
        except InvalidUriTemplate as exc:
            raise ValueError(f"{uri!r} is not a valid URI template: {exc}") from None


def template_variables(uri: str) -> list[str]:
    """The variable names of a URI template (none for a plain URI, or one `check_uri` rejects)."""
    if "{" not in uri:
        return []
    try:
        return UriTemplate.parse(uri).variable_names
    except InvalidUriTemplate:
        return []
