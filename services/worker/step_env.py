"""The environment a step's process starts with: an allow-list of the worker's own variables.

A worker holds secrets in its environment (`BATON_SQL_CONNECTIONS` carries DSNs with their
passwords, and whatever else it was started with), and what a step prints is kept for ever
in `baton.events` and served by the API as the attempt's output tail. So a step never
inherits the worker's environment: it gets only the variables this allow-list names,
then its params and Baton's own variables (runtimes.py). The list is
`BATON_STEP_ENV_ALLOW`, read once by the worker's composition root: comma-separated names
(`PATH`) and prefix patterns (`LC_*`); unset or empty means `DEFAULT_ALLOW`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Enough for commands to be found and for text, time and temporary files to behave: nothing
# here is a credential on any usual system.
DEFAULT_ALLOW = "PATH,HOME,USER,LOGNAME,LANG,LANGUAGE,LC_*,TZ,TMPDIR"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The worker's own settings are never a step's (they hold the DSNs); no pattern may pass them.
_NEVER_PREFIX = "BATON_"


@dataclass(frozen=True, slots=True)
class EnvAllowList:
    """Which of the worker's environment variables a step's process sees."""

    names: frozenset[str]
    prefixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str | None) -> EnvAllowList:
        """`BATON_STEP_ENV_ALLOW`'s value; ValueError naming the entry at fault."""
        text = (value or "").strip() or DEFAULT_ALLOW
        names: set[str] = set()
        prefixes: list[str] = []
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            stem = entry.removesuffix("*")
            if not _NAME.match(stem):
                raise ValueError(
                    f"BATON_STEP_ENV_ALLOW: {entry!r} is neither a variable name nor NAME*"
                )
            pattern = entry.endswith("*")
            if stem.startswith(_NEVER_PREFIX) or (pattern and _NEVER_PREFIX.startswith(stem)):
                raise ValueError(
                    f"BATON_STEP_ENV_ALLOW: {entry!r} would pass the worker's own BATON_*"
                    " settings to steps"
                )
            if pattern:
                prefixes.append(stem)
            else:
                names.add(entry)
        return cls(frozenset(names), tuple(prefixes))

    def allows(self, name: str) -> bool:
        return name in self.names or name.startswith(self.prefixes)

    def select(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The allowed variables of `environ`, and nothing else."""
        return {k: v for k, v in environ.items() if self.allows(k)}
