"""mcp-runner: a YAML manifest becomes an MCP server protected by MCP SignIn."""

from runner.auth.verifier import JWKSTokenVerifier
from runner.wrapper import FastMCPSignInWrapper

__all__ = ["FastMCPSignInWrapper", "JWKSTokenVerifier"]
