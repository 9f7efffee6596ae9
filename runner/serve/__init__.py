"""Stage 3 of the pipeline: a built server -> a served ASGI app (`run.serve`), re-running stages 1-2 on reload.

`app` assembles the HTTP app around the SDK's, `config` merges the `server:` block with flags, `live` and
`state` record where a manifest is served, `progress` draws start-up progress on a terminal."""
