"""HTTP APIs described by OpenAPI 3.x, served as tools: one per operation (docs/openapi.md).

spec.py reads and checks the document, operations.py turns each operation into an input schema and
a request plan, call.py sends the request (the only code that talks to the API), mount.py builds
the tools for the `openapi:` entries and keeps each API's HTTP client across reloads.
"""
