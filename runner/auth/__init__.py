"""Who may call: bearer tokens checked against a JWKS, per-entry scopes, claims bound to parameters,
and the local issuer."""
