"""The reference `main.py`, written against runner's Python API (with the reference's bugs fixed)."""

from os import environ

from runner import FastMCPSignInWrapper

mcp = FastMCPSignInWrapper(
    "Redmine MCP server",
    app_id=environ.get("MCP_APP_ID"),
    resource=environ.get("MCP_APP_RESOURCE"),
    base_url=environ.get("MCP_BASE_URL", "https://mcpsignin.com"),
    port=int(environ.get("PORT", "8000")),
)


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two numbers"""
    return a + b


@mcp.resource("greeting://{name}")
def get_greeting(name: str) -> str:
    """Get a personalized greeting"""
    return f"Hello, {name}!"


@mcp.prompt()
def greet_user(name: str, style: str = "friendly") -> str:
    """Generate a greeting prompt"""
    return f"Please write a {style} greeting for someone named {name}."


if __name__ == "__main__":
    mcp.run(transport="streamable-http")
