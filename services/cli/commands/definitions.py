"""`baton push` and `baton validate`: definition files sent as they are (JSON or YAML)."""

from __future__ import annotations

import argparse

from services.cli.client import ApiError, Client, print_problem
from services.cli.push import media_type, push_files


def cmd_push(client: Client, args: argparse.Namespace) -> int:
    return 1 if push_files(client, args.files, args.timeout) else 0


def cmd_validate(client: Client, args: argparse.Namespace) -> int:
    """Every file is checked, the failures reported; exit 1 if any failed."""
    failed = 0
    for path in args.files:
        headers = {"content-type": media_type(path)}
        try:
            client.post("/workflows/validate", content=path.read_bytes(), headers=headers)
            print(f"{path}: valid")
        except ApiError as err:
            print_problem(err, prefix=f"{path}: ")
            failed += 1
    return 1 if failed else 0
