"""Stage 2 of the pipeline: a validated manifest -> a built server (`server.build`).

`resolve` imports the `module:function` references, `signature` and `failures` say why one cannot be
served, `reuse` keeps a previous build's unchanged tools, `wrapper` is the SDK server class the build
fills (FastMCPSignInWrapper), `pool` runs sync tools, `version` names what is served."""
