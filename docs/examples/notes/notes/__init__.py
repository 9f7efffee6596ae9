"""The notes server of docs/tutorial.md: `store` holds the notes, `tools` serves them."""
