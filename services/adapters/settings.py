"""Process settings, read once from the environment.

Every process builds one ``Settings`` in its composition root (``__main__``) and passes it
down; nothing else reads the environment. When ``KAFKA_BOOTSTRAP_SERVERS`` or ``DATABASE_URL``
is unset, Baton runs (and owns) the embedded Kafka / PostgreSQL from ``infra/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Below Linux's ephemeral range (32768-60999): an outgoing connection can never hold them.
DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_PG_PORT = 15432
DEFAULT_API_PORT = 8080
DEFAULT_PARTITIONS = 8


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ValueError(f"{name} must be 1 or 0 (true or false), got {raw!r}")


_ORIGIN = re.compile(r"https?://[^/\s,]+")


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    out = []
    for raw in env.get(name, "").split(","):
        origin = raw.strip().rstrip("/").lower()
        if not origin:
            continue
        if not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"{name}: {raw.strip()!r} is not an origin such as https://ui.example.com"
            )
        out.append(origin)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    kafka_bootstrap: str
    database_url: str
    partitions: int = DEFAULT_PARTITIONS
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    kafka_managed: bool = True
    postgres_managed: bool = True
    kafka_port: int = DEFAULT_KAFKA_PORT
    kafka_controller_port: int = DEFAULT_KAFKA_CONTROLLER_PORT
    pg_port: int = DEFAULT_PG_PORT
    # API: web origins (besides its own) whose pages may write and read through CORS.
    api_allowed_origins: tuple[str, ...] = ()
    # API: accept definitions sent as text/plain (a browser sends those cross-site unasked).
    api_text_plain_definitions: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("BATON_HOME") or REPO_ROOT / ".baton").resolve()
        kafka_port = _int(env, "KAFKA_PORT", DEFAULT_KAFKA_PORT)
        pg_port = _int(env, "BATON_PG_PORT", DEFAULT_PG_PORT)
        external_kafka = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        external_db = env.get("DATABASE_URL", "").strip()
        partitions = _int(env, "BATON_PARTITIONS", DEFAULT_PARTITIONS)
        if partitions < 1:
            raise ValueError(f"BATON_PARTITIONS must be >= 1, got {partitions}")
        return cls(
            home=home,
            kafka_bootstrap=external_kafka or f"127.0.0.1:{kafka_port}",
            database_url=external_db or f"postgresql://postgres@127.0.0.1:{pg_port}/baton",
            partitions=partitions,
            api_host=env.get("BATON_API_HOST") or "127.0.0.1",
            api_port=_int(env, "BATON_API_PORT", DEFAULT_API_PORT),
            kafka_managed=not external_kafka,
            postgres_managed=not external_db,
            kafka_port=kafka_port,
            kafka_controller_port=_int(env, "KAFKA_CONTROLLER_PORT", DEFAULT_KAFKA_CONTROLLER_PORT),
            pg_port=pg_port,
            api_allowed_origins=_origins(env, "BATON_API_ALLOWED_ORIGINS"),
            api_text_plain_definitions=_bool(env, "BATON_API_TEXT_PLAIN_DEFINITIONS"),
        )

    def subprocess_env(self) -> dict[str, str]:
        """The environment for infra scripts, so they agree with these settings."""
        env = dict(os.environ)
        env["BATON_HOME"] = str(self.home)
        env["KAFKA_PORT"] = str(self.kafka_port)
        env["KAFKA_CONTROLLER_PORT"] = str(self.kafka_controller_port)
        env["BATON_PG_PORT"] = str(self.pg_port)
        if self.kafka_managed:
            env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        else:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.kafka_bootstrap
        if self.postgres_managed:
            env.pop("DATABASE_URL", None)
        else:
            env["DATABASE_URL"] = self.database_url
        return env
