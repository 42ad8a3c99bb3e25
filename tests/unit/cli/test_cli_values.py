"""The CLI's `-p NAME=VALUE` and `--payload` are JSON read with the same bounds as the API's
bodies: deep nesting is an error message, not a RecursionError traceback (issue 14, item 8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.__main__ import main
from services.cli.parser import parse_param
from services.cli.push import media_type, workflow_id_of

DEEP = "[" * 5_000 + "]" * 5_000


def test_a_deep_param_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--api", "http://127.0.0.1:9", "start", "wf", "-p", f"m={DEEP}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "m: [0][0]" in err
    assert "nested more than 64 levels" in err


def test_a_deep_payload_is_an_error_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 (discard) is never asked: the value is refused first.
    assert main(["--api", "http://127.0.0.1:9", "signal", "s", "--payload", DEEP]) == 2
    assert "nested more than 64 levels" in capsys.readouterr().err


def test_ordinary_values_still_parse() -> None:
    assert parse_param("rows=10") == ("rows", 10)
    assert parse_param('m={"a":[1,2]}') == ("m", {"a": [1, 2]})
    assert parse_param("day=monday") == ("day", "monday")


def test_the_id_of_a_hostile_file_is_unknown_not_a_traceback() -> None:
    assert workflow_id_of(b"id: w\nsteps: []\n") == "w"
    assert workflow_id_of(b"id: w\ntags: " + b"[" * 5_000 + b"]" * 5_000) is None
    assert workflow_id_of(b"id: &a w\nname: *a\n") is None


def test_the_cli_sends_definitions_as_json_or_yaml_never_text_plain() -> None:
    # text/plain is what a browser sends cross-site unasked: the API refuses it by default.
    assert media_type(Path("a.json")) == "application/json"
    assert {media_type(Path(n)) for n in ("a.yaml", "a.yml", "a.txt", "a")} == {"application/yaml"}
