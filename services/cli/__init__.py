"""The `baton` command: a thin HTTP client of the API, plus `baton run` for a local stack."""
