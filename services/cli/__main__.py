"""`baton`: run a local stack, push workflows, start and watch instances.

    baton run                          the whole stack, a sample workflow, until Ctrl-C
    baton push FILE...                 push definitions, wait until each version is visible
    baton activate WF [--version N] | baton deactivate WF   choose the active version
    baton validate FILE...             check definitions, push nothing
    baton start WORKFLOW [-p k=v]...   start an instance; prints its id
    baton status|watch|events ID       read an instance
    baton stop|kill|restart|pause|resume|unblock ID   act on an instance (restart: -p k=v, --step S)
    baton step skip|stop|restart|pause|resume|bypass-signals ID STEP   act on one step
    baton breakpoint set|clear WF STEP | baton breakpoints WF   breakpoints for all instances
    baton signal NAME [-p k=v]... [--payload JSON] [--request-id R]   send a signal
    baton workflows | instances | signals   list

Every command but `run` talks HTTP to the API (`--api`, default from the settings).

This module is the composition root: it reads the settings, parses the arguments
(`parser.py`), builds the one API client and maps what escapes a command to an exit code.
The commands live in `commands/` by resource, `baton run` in `run.py`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from services.adapters.settings import Settings
from services.cli.client import ApiError, Client, Unreachable, print_problem
from services.cli.parser import build_parser
from services.cli.run import cmd_run
from services.cli.stack import api_url


def main(argv: Sequence[str] | None = None) -> int:
    """The exit code: the command's own, 1 for an API error, 2 for a usage error (argparse
    exits) or an unreachable API, 130 for Ctrl-C."""
    settings = Settings.from_env()
    args = build_parser(api_url(settings)).parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(settings, args)
        with Client(args.api) as client:
            code: int = args.func(client, args)
            return code
    except ApiError as err:
        print_problem(err, prefix="error: ")
        return 1
    except Unreachable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `baton events ID | head`: stop quietly, flush nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
