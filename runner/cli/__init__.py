"""The `mcp-runner` command line: `main` parses and dispatches, `launch` is the installed script,
`tokens` mints local-issuer tokens, `commands/` holds the client-side commands (init, list, call, install)."""
