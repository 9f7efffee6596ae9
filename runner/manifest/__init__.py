"""Stage 1 of the pipeline: manifest text -> a validated model, every problem located at `file:line:col`.

`source` parses YAML keeping positions, `envsubst` fills `${VAR}`, `model` (with `settings`, `scalars`,
`uris`) validates, `located` turns pydantic's errors into located problems, `schema` prints the JSON Schema;
`client` leaves out what only the server reads, for the client commands.
Nothing here imports user code or the SDK's server."""
