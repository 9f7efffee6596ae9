"""What a client sees of a server beyond names and functions: icons, `_meta`, declared schemas, pages.

The manifest keys for these live in `models.py`; `checks.py` finds located problems in
them that the pydantic models cannot place exactly (a bad `_meta` key, a YAML date in
JSON data, an invalid JSON Schema); `schemas.py` and `tool.py` make a declared
`input_schema`/`output_schema` the contract a call is held to; `pages.py` splits the
list methods into cursor pages.
"""
