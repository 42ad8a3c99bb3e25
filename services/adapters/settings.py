"""Process settings: the environment read once, typed, by pydantic-settings.

Every process builds its settings in its composition root (``__main__``) and passes them
down; nothing else reads the environment for configuration, and no module reads it at import.
``Settings`` is what every process shares (where Kafka and PostgreSQL are, the API, the log
level); ``EngineSettings`` and ``WorkerSettings`` are read only by their own process, so a bad
worker variable never stops the API. When ``KAFKA_BOOTSTRAP_SERVERS`` or ``DATABASE_URL`` is
unset, Baton runs (and owns) the embedded Kafka / PostgreSQL from ``infra/``.

Not configuration, and so not here: the environment a step runs in (the worker's
``step_env.py`` selects it from an allow-list) and the environment the CLI hands its children
(`Settings.subprocess_env`).

A bad value is a ``ValueError`` naming the variable (the first bad one, in field order), with
the same words as before these models; an empty or blank variable means its default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]

# Below Linux's ephemeral range (32768-60999): an outgoing connection can never hold them.
DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_PG_PORT = 15432
DEFAULT_API_PORT = 8080
DEFAULT_PARTITIONS = 8

_ORIGIN = re.compile(r"https?://[^/\s,]+")


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of os.environ,
    so that `from_env(env)` reads `env` and nothing else."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return dict(self._env)


class _FromEnvironment(BaseSettings):
    """A frozen settings model whose fields are named by their variables (`validation_alias`)."""

    # Variables are case-sensitive, as they always were; no .env file, no secrets directory.
    model_config = SettingsConfigDict(frozen=True, case_sensitive=True, extra="ignore")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings of `env` (default: os.environ); ValueError naming a bad variable."""
        values = _Environment(cls, os.environ if env is None else env)()
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            # The validators' own error, as it was raised before these were models.
            first = err.errors()[0]
            cause = first.get("ctx", {}).get("error")
            if isinstance(cause, ValueError):
                raise cause from None
            raise ValueError(f"{first['loc'][0]}: {first['msg']}") from None

    @classmethod
    def _variable(cls, info: ValidationInfo) -> str:
        assert info.field_name is not None
        return str(cls.model_fields[info.field_name].validation_alias)

    @classmethod
    def _default(cls, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        return cls.model_fields[info.field_name].get_default(call_default_factory=True)


def _integer(raw: Any, name: str, default: int) -> int:
    text = str(raw).strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def _positive_number(raw: Any, name: str, default: float) -> float:
    text = str(raw).strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {text!r}")
    return value


class Settings(_FromEnvironment):
    """What every process reads: where the backing services are, the API, the log level."""

    home: Path = Field(
        default_factory=lambda: (REPO_ROOT / ".baton").resolve(), validation_alias="BATON_HOME"
    )
    kafka_port: int = Field(DEFAULT_KAFKA_PORT, validation_alias="KAFKA_PORT")
    pg_port: int = Field(DEFAULT_PG_PORT, validation_alias="BATON_PG_PORT")
    # An external cluster / database; empty: the managed one on the ports above.
    external_kafka: str = Field("", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    external_database: str = Field("", validation_alias="DATABASE_URL")
    partitions: int = Field(DEFAULT_PARTITIONS, validation_alias="BATON_PARTITIONS")
    api_host: str = Field("127.0.0.1", validation_alias="BATON_API_HOST")
    api_port: int = Field(DEFAULT_API_PORT, validation_alias="BATON_API_PORT")
    kafka_controller_port: int = Field(
        DEFAULT_KAFKA_CONTROLLER_PORT, validation_alias="KAFKA_CONTROLLER_PORT"
    )
    # API: web origins (besides its own) whose pages may write and read through CORS.
    # NoDecode: a comma-separated list, not the JSON pydantic-settings expects of a tuple.
    api_allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias="BATON_API_ALLOWED_ORIGINS"
    )
    # API: accept definitions sent as text/plain (a browser sends those cross-site unasked).
    api_text_plain_definitions: bool = Field(
        False, validation_alias="BATON_API_TEXT_PLAIN_DEFINITIONS"
    )
    # Handed to `logs.setup_logging` as given (it knows the level names).
    log_level: str = Field("INFO", validation_alias="BATON_LOG_LEVEL")

    @field_validator("home", mode="before")
    @classmethod
    def _home(cls, raw: Any) -> Path:
        return Path(raw or REPO_ROOT / ".baton").resolve()

    @field_validator(
        "kafka_port", "pg_port", "partitions", "api_port", "kafka_controller_port", mode="before"
    )
    @classmethod
    def _integers(cls, raw: Any, info: ValidationInfo) -> int:
        name = cls._variable(info)
        value = _integer(raw, name, cls._default(info))
        if info.field_name == "partitions" and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
        return value

    @field_validator("external_kafka", "external_database", mode="before")
    @classmethod
    def _stripped(cls, raw: Any) -> str:
        return str(raw).strip()

    @field_validator("api_host", mode="before")
    @classmethod
    def _host(cls, raw: Any) -> str:
        return str(raw) or "127.0.0.1"

    @field_validator("api_allowed_origins", mode="before")
    @classmethod
    def _origins(cls, raw: Any, info: ValidationInfo) -> tuple[str, ...]:
        if isinstance(raw, tuple):
            return raw
        out = []
        for part in str(raw).split(","):
            origin = part.strip().rstrip("/").lower()
            if not origin:
                continue
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{cls._variable(info)}: {part.strip()!r} is not an origin such as "
                    "https://ui.example.com"
                )
            out.append(origin)
        return tuple(out)

    @field_validator("api_text_plain_definitions", mode="before")
    @classmethod
    def _flag(cls, raw: Any, info: ValidationInfo) -> bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("", "0", "false", "no"):
            return False
        if text in ("1", "true", "yes"):
            return True
        raise ValueError(f"{cls._variable(info)} must be 1 or 0 (true or false), got {text!r}")

    @property
    def kafka_managed(self) -> bool:
        """Baton runs the broker itself (no KAFKA_BOOTSTRAP_SERVERS)."""
        return not self.external_kafka

    @property
    def postgres_managed(self) -> bool:
        """Baton runs the database itself (no DATABASE_URL)."""
        return not self.external_database

    @property
    def kafka_bootstrap(self) -> str:
        return self.external_kafka or f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        return self.external_database or f"postgresql://postgres@127.0.0.1:{self.pg_port}/baton"

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


class EngineSettings(_FromEnvironment):
    """What only the engine reads."""

    # This engine's static group member id; a restart with the same id takes its partitions
    # back at once. `--id` overrides it.
    engine_id: str = Field("engine-1", validation_alias="BATON_ENGINE_ID")
    heartbeat_timeout_s: float = Field(30.0, validation_alias="BATON_HEARTBEAT_TIMEOUT")
    # Under sustained load only, how long a shard's committer waits to gather a larger
    # transaction (0: never).
    transaction_linger_ms: float = Field(5.0, validation_alias="BATON_TRANSACTION_LINGER_MS")
    # How often, at most, a busy shard snapshots the states it changed (0: no snapshots,
    # recovery folds the whole log). Recovery folds at most about this much history.
    snapshot_interval_ms: float = Field(5000.0, ge=0, validation_alias="BATON_SNAPSHOT_INTERVAL_MS")

    @field_validator(
        "heartbeat_timeout_s", "transaction_linger_ms", "snapshot_interval_ms", mode="before"
    )
    @classmethod
    def _numbers(cls, raw: Any, info: ValidationInfo) -> float:
        text = str(raw).strip()
        if not text:
            return float(cls._default(info))
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{cls._variable(info)} must be a number, got {text!r}") from None


class WorkerSettings(_FromEnvironment):
    """What only the worker reads; the step types' variables stay text here and are parsed
    by their runtimes (step_env.py, http_allow.py, sql_runtime.py), which own their rules."""

    # Empty: the worker names itself <hostname>-<pid>.
    worker_id: str = Field("", validation_alias="BATON_WORKER_ID")
    heartbeat_seconds: float = Field(5.0, validation_alias="BATON_HEARTBEAT_SECONDS")
    shutdown_grace_seconds: float = Field(30.0, validation_alias="BATON_SHUTDOWN_GRACE_SECONDS")
    step_user: str | None = Field(None, validation_alias="BATON_STEP_USER")
    http_allowed_hosts: str | None = Field(None, validation_alias="BATON_HTTP_ALLOWED_HOSTS")
    sql_connections: str | None = Field(None, validation_alias="BATON_SQL_CONNECTIONS")
    sql_allow_superuser: str | None = Field(None, validation_alias="BATON_SQL_ALLOW_SUPERUSER")

    @field_validator("heartbeat_seconds", "shutdown_grace_seconds", mode="before")
    @classmethod
    def _seconds(cls, raw: Any, info: ValidationInfo) -> float:
        return _positive_number(raw, cls._variable(info), cls._default(info))
