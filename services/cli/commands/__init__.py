"""The `baton` commands that talk to the API, one module per resource they act on.

Each `cmd_*` takes the API `Client` and the parsed arguments and returns the exit code;
an `ApiError` or `Unreachable` it lets through is turned into one by `__main__.main`."""
