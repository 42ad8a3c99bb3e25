"""The environment a step's process starts with: an allow-list of the worker's own variables.

A worker holds secrets in its environment (`BATON_SQL_CONNECTIONS` carries DSNs with their
passwords, and whatever else it was started with), and what a step prints is kept for ever
in `baton.events` and served by the API as the attempt's output tail. So a step never
inherits the worker's environment: it gets only the variables this allow-list names,
then its params and Baton's own variables (runtimes/shell.py). The list is
`BATON_STEP_ENV_ALLOW`, read once by the worker's composition root: comma-separated names
(`PATH`) and prefix patterns (`LC_*`); unset or empty means `DEFAULT_ALLOW`.

The allow-list keeps secrets out of what a step prints by habit (`env`, a debug dump). It
does not stop a hostile step that runs as the worker's OS user: that one could read the
worker's environment from `/proc/<worker pid>/environ`. So the worker hides its process
from its own user (`hide_worker_process`), which holds unless steps run as root; and steps
can run as another user (`BATON_STEP_USER`, `StepUser`), who cannot read the worker's
processes or files either way.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import re
import shutil
import subprocess
import sys
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


_PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def hide_worker_process() -> bool:
    """Make this process's /proc entries (`environ`, `mem`, `maps` …) and ptrace closed to
    processes of its own user, its steps among them, unless they hold CAP_SYS_PTRACE (root
    does). Linux's `prctl(PR_SET_DUMPABLE, 0)`: a step's exec resets the flag for itself, so
    steps are unaffected; the worker then leaves no core dump. False where it is not
    available (not Linux). A ctypes call: the one prctl this needs is not worth a package."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0


@dataclass(frozen=True, slots=True)
class StepUser:
    """The OS user a step's processes run as (`BATON_STEP_USER`), other than the worker's.

    The switch is made by util-linux's `setpriv` in front of the step's command (the worker
    may run under uvloop, whose subprocesses take no `user`/`group`, and a `preexec_fn` is
    unsafe next to threads): real and effective ids, no supplementary groups, and
    `no_new_privs`, so a setuid program cannot take the privileges back. Only a worker
    running as root can do it.
    """

    name: str
    uid: int
    gid: int
    home: str
    setpriv: str

    @classmethod
    def parse(cls, value: str | None) -> StepUser | None:
        """`BATON_STEP_USER`'s value (a user name or uid); None when unset or empty;
        ValueError saying why it cannot be used."""
        text = (value or "").strip()
        if not text:
            return None
        try:
            entry = pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
        except KeyError:
            raise ValueError(f"BATON_STEP_USER: no such user {text!r}") from None
        if entry.pw_uid == 0:
            raise ValueError("BATON_STEP_USER: steps may not run as root")
        if os.geteuid() != 0:
            raise ValueError(
                "BATON_STEP_USER: only a worker running as root can run steps as another user"
            )
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise ValueError("BATON_STEP_USER: needs util-linux's setpriv on the PATH")
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, setpriv)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run as this user."""
        return [
            self.setpriv,
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
            *argv,
        ]

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """`env` with this user's identity: the worker's HOME is not theirs to use."""
        return {**env, "HOME": self.home, "USER": self.name, "LOGNAME": self.name}

    def give(self, path: str) -> None:
        """Hand a step's working directory to this user."""
        os.chown(path, self.uid, self.gid)

    def python_fault(self, python: str, cwd: str, env: Mapping[str, str]) -> str | None:
        """Why this user cannot run python steps with the worker's interpreter `python` in
        `cwd` and `env` (it must read the interpreter, the virtualenv and the project), or
        None. Run once at start, so the operator learns it before the first python step."""
        probe = self.command([python, "-c", "import services.worker.pycall"])
        try:
            done = subprocess.run(
                probe, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"{type(err).__name__}: {err}"
        if done.returncode == 0:
            return None
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"exit code {done.returncode}"
