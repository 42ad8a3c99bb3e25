"""Triggers in a definition: what starts the workflow's active version without a request.

- `time_triggers`: standard five-field cron (or `@hourly`, `@daily`, `@weekly`, `@monthly`,
  `@yearly`) in a time zone, with an optional jitter that delays each firing by a fixed
  pseudo-random part of it (derived from the workflow, the trigger and the time, so replay
  and every engine compute the same delay).
- `signal_triggers`: a signal of a name, meeting conditions, starts an instance; its params
  become the start's params where the workflow declares them (`trigger_params`: a long
  fills a string param as its digits). `dedup` names signal params: a second signal with
  the same values starts nothing.

Cron times are computed by `cronsim` (pure arithmetic over zone-aware datetimes); each time
the engine schedules or fires is recorded in an event, so a replay never computes it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from pydantic import BeforeValidator, Field, field_validator

from services.domain.language.fields import ID_PATTERN, Duration, Model, Param, check_zone
from services.domain.language.params import ParamType, check_value
from services.domain.language.signal_specs import (
    MAX_MATCH_CONDITIONS,
    SIGNAL_PARAM_PATTERN,
    Condition,
    Match,
    SignalCondition,
)

MAX_TIME_TRIGGERS = 16


MAX_SIGNAL_TRIGGERS = 16


MAX_JITTER_S = 86_400.0


PREDEFINED = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _expand(cron: str) -> str:
    return PREDEFINED.get(cron.strip().lower(), cron.strip())


class TimeTrigger(Model):
    """Start the active version at each time of `cron` in `time_zone` (default: the
    workflow's), `jitter` later at most."""

    cron: str = Field(min_length=1, max_length=256)
    time_zone: str | None = Field(None, max_length=64)
    jitter: Duration = 0.0

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronSim(_expand(value), datetime(2025, 1, 1, tzinfo=UTC))
        except CronSimError as err:
            raise ValueError(
                f"invalid cron {value!r}: {err}; use five fields (minute hour day-of-month"
                " month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly"
            ) from None
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_zone(value)

    @field_validator("jitter")
    @classmethod
    def _jitter(cls, value: float) -> float:
        if value > MAX_JITTER_S:
            raise ValueError("a jitter is at most one day")
        return value


def _signal_trigger_shorthand(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class SignalTrigger(Model):
    """Start the active version when a signal `name` arrives whose params meet `match`."""

    name: str = Field(pattern=ID_PATTERN)
    match: dict[Annotated[str, Field(pattern=SIGNAL_PARAM_PATTERN)], Condition] = Field(
        default_factory=dict, max_length=MAX_MATCH_CONDITIONS
    )
    # Signal params whose values identify a start: a later signal with the same ones starts
    # nothing. Empty: every matching signal starts one (a resent request id never does).
    dedup: list[Annotated[str, Field(pattern=SIGNAL_PARAM_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_MATCH_CONDITIONS
    )

    @field_validator("match")
    @classmethod
    def _literal(cls, match: dict[str, SignalCondition]) -> dict[str, SignalCondition]:
        for name, cond in match.items():
            if cond.value.dynamic:
                raise ValueError(
                    f"{name}: a signal trigger matches literal values (no run exists yet to"
                    " evaluate an expression in)"
                )
        return match

    def evaluated(self) -> Match:
        return tuple((name, cond.op, cond.value.value) for name, cond in sorted(self.match.items()))


SignalTriggerSpec = Annotated[SignalTrigger, BeforeValidator(_signal_trigger_shorthand)]


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


def next_time(trigger: TimeTrigger, default_zone: str, after: int) -> int:
    """The first time of the trigger strictly after `after` (UTC micros)."""
    zone = ZoneInfo(trigger.time_zone or default_zone)
    start = (_EPOCH + timedelta(microseconds=after)).astimezone(zone)
    return _micros(next(CronSim(_expand(trigger.cron), start)))


def jitter_of(trigger: TimeTrigger, workflow_id: str, index: int, scheduled_for: int) -> int:
    """The delay of one firing (micros in [0, jitter]): the same for every engine and replay."""
    span = round(trigger.jitter * 1_000_000)
    if span == 0:
        return 0
    digest = hashlib.sha256(f"{workflow_id}\0{index}\0{scheduled_for}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (span + 1)


def trigger_params(declared: Mapping[str, Param], signal: Mapping[str, Any]) -> dict[str, Any]:
    """The start overrides a signal trigger takes from a signal: the params the workflow
    declares. A signal param is a string or a long, and a long given for a string param
    becomes its decimal text: `baton signal table_ready -p day=20251121` sends a long (the
    CLI reads digits as a number), and the one exact conversion beats a dead-lettered start.
    Every other value is passed as it is, for the start's own check to accept or reject."""
    out: dict[str, Any] = {}
    for name, value in signal.items():
        param = declared.get(name)
        if param is None:
            continue
        if (
            param.type is ParamType.STRING
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            value = str(value)
        out[name] = value
    return out


def signal_trigger_faults(
    declared: Mapping[str, Param], triggers: list[SignalTrigger]
) -> list[tuple[str, str]]:
    """A trigger whose `match` names a declared param with a value that param cannot take
    (after `trigger_params`) could only start with params the start rejects: a push fault.
    Any operator counts, since a signal meets a condition only with a value of its type."""
    faults: list[tuple[str, str]] = []
    for i, trigger in enumerate(triggers):
        for name, cond in trigger.match.items():
            param = declared.get(name)
            if param is None:
                continue
            value = trigger_params(declared, {name: cond.value.value})[name]
            fault = check_value(param.type, value)
            if fault:
                faults.append(
                    (
                        f"signal_triggers[{i}].match.{name}",
                        f"the param {name} is a {param.type.value}: a signal that meets"
                        f" {cond.value.value!r} would start with a value it refuses ({fault})",
                    )
                )
    return faults
