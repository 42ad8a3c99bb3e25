"""The worker's step environment: only the variables an allow-list names reach a step."""

from __future__ import annotations

import pytest

from services.worker.step_env import DEFAULT_ALLOW, EnvAllowList

WORKER_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/worker",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "BATON_SQL_CONNECTIONS": '{"wh": "postgresql://reader:s3cret@db/wh"}',
    "AWS_SECRET_ACCESS_KEY": "abc",
    "DATABASE_URL": "postgresql://postgres:pw@db/baton",
    "PYTHONPATH": "/srv/app",
    "LD_PRELOAD": "/tmp/x.so",
}


def test_the_default_passes_the_safe_set_and_no_secret() -> None:
    env = EnvAllowList.parse(None).select(WORKER_ENV)
    assert env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/worker",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }
    assert EnvAllowList.parse("") == EnvAllowList.parse(DEFAULT_ALLOW)


def test_names_and_prefix_patterns_replace_the_default() -> None:
    allow = EnvAllowList.parse(" PATH , AWS_* ,")
    assert allow.select(WORKER_ENV) == {"PATH": "/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY": "abc"}
    assert not allow.allows("HOME")


@pytest.mark.parametrize("entry", ["*", "A-B", "1X", "PA*TH", "$PATH"])
def test_an_entry_that_is_no_name_or_pattern_is_refused_naming_it(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a variable name nor NAME"):
        EnvAllowList.parse(f"PATH,{entry}")


@pytest.mark.parametrize("entry", ["BATON_SQL_CONNECTIONS", "BATON_*", "BAT*", "B*"])
def test_the_workers_own_settings_can_never_be_allowed(entry: str) -> None:
    with pytest.raises(ValueError, match="BATON_"):
        EnvAllowList.parse(entry)


def test_a_name_that_merely_starts_like_baton_is_a_name() -> None:
    assert EnvAllowList.parse("B,BAT").select({"B": "1", "BAT": "2", "BATON_X": "3"}) == {
        "B": "1",
        "BAT": "2",
    }
