"""mcp-runner: a YAML manifest becomes an MCP server protected by MCP SignIn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.auth.verifier import JWKSTokenVerifier
    from runner.build.wrapper import FastMCPSignInWrapper

__all__ = ["FastMCPSignInWrapper", "JWKSTokenVerifier"]


def __getattr__(name: str) -> Any:
    """Imported on first use: every `runner.*` import runs this package first, and the CLI needs neither
    (a server without auth never loads PyJWT)."""
    if name == "FastMCPSignInWrapper":
        from runner.build.wrapper import FastMCPSignInWrapper

        return FastMCPSignInWrapper
    if name == "JWKSTokenVerifier":
        from runner.auth.verifier import JWKSTokenVerifier

        return JWKSTokenVerifier
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
