"""Hostile definition text: bombs and deep nesting fail fast with a fault that names the path,
never with a hang, a RecursionError or an expansion of the input (issue 14, items 3 and 8)."""

from __future__ import annotations

import json
import time

import pytest

from services.domain.kernel import documents
from services.domain.kernel.documents import MAX_DEPTH, MAX_NODES, check_shape, load_text, load_yaml
from services.domain.kernel.errors import DefinitionError
from services.domain.language.parse import parse_workflow_text

# Nine levels of nine: 9**9 (387 million) strings once expanded, from about 400 bytes.
BILLION_LAUGHS = """\
id: w
params:
  m:
    type: map
    value:
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
      i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
steps: [{id: a, type: noop}]
"""


def faults_of(text: str) -> dict[str, str]:
    with pytest.raises(DefinitionError) as err:
        parse_workflow_text(text)
    return dict(err.value.faults)


def test_a_billion_laughs_is_refused_at_its_first_anchor_without_expanding() -> None:
    assert len(BILLION_LAUGHS) < 800
    started = time.monotonic()
    found = faults_of(BILLION_LAUGHS)
    # Not a timing assertion on speed: a bound that only an expansion of 387 million nodes
    # could cross, so that a regression fails instead of hanging the test run.
    assert time.monotonic() - started < 30
    assert list(found) == ["params.m.value.a"]
    assert "anchors and aliases" in found["params.m.value.a"]
    assert "line 6" in found["params.m.value.a"]


def test_an_alias_without_its_anchor_being_refused_first_is_refused_too() -> None:
    # A merge key is an alias too: `<<: *base` copies a mapping.
    found = faults_of("id: w\nsteps:\n  - {id: a, type: noop}\n  - *x\n")
    assert list(found) == ["steps[1]"]
    assert "anchors and aliases" in found["steps[1]"]


def nested_tags(depth: int) -> str:
    return '{"id":"w","tags":' + "[" * depth + "]" * depth + ',"steps":[{"id":"a","type":"noop"}]}'


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_500, 100_000])
def test_deeply_nested_json_is_a_fault_naming_the_path(depth: int) -> None:
    found = faults_of(nested_tags(depth))
    ((path, message),) = found.items()
    assert path.startswith("tags[0][0]")
    assert f"nested more than {MAX_DEPTH} levels" in message


def test_deeply_nested_yaml_is_a_fault_naming_the_path() -> None:
    text = "id: w\nsteps: [{id: a, type: noop}]\ntags: " + "[" * 5_000 + "]" * 5_000 + "\n"
    ((path, message),) = faults_of(text).items()
    assert path.startswith("tags[0][0]")
    assert f"nested more than {MAX_DEPTH} levels" in message


def test_a_map_param_nested_a_thousand_levels_is_a_fault_naming_its_path() -> None:
    value = '{"a":' * 1_000 + "1" + "}" * 1_000
    text = (
        '{"id":"w","params":{"m":{"type":"map","value":'
        + value
        + '}},"steps":[{"id":"a","type":"noop"}]}'
    )
    ((path, message),) = faults_of(text).items()
    assert path.startswith("params.m.value.a.a")
    assert "nested more than" in message


def foreach_nest(depth: int) -> str:
    step = '{"id":"x","type":"noop"}'
    for i in range(depth):
        step = f'{{"id":"f{i}","type":"foreach","items":"[1]","steps":[{step}]}}'
    return '{"id":"w","steps":[' + step + "]}"


@pytest.mark.parametrize("depth", [500, 5_000])
def test_foreach_nested_hundreds_deep_is_a_fault_naming_the_path(depth: int) -> None:
    ((path, message),) = faults_of(foreach_nest(depth)).items()
    assert path.startswith("steps[0].steps[0].steps[0]")
    assert "nested more than" in message


def test_loops_ten_deep_with_a_map_sixteen_deep_still_parse() -> None:
    """The bound sits above everything the language itself allows."""
    value = '{"k":' * 16 + "1" + "}" * 16
    step = '{"id":"x","type":"noop","params":{"m":{"type":"map","value":' + value + "}}}"
    for i in range(10):
        step = f'{{"id":"f{i}","type":"foreach","items":"[1]","steps":[{step}]}}'
    wf = parse_workflow_text('{"id":"w","steps":[' + step + "]}")
    assert len(wf.nested_step_ids) == 11


def test_node_count_is_bounded_by_one_walk() -> None:
    data = {"id": "w", "tags": [[0] * 1_000 for _ in range(MAX_NODES // 1_000 + 1)]}
    with pytest.raises(DefinitionError) as err:
        check_shape(data)
    ((path, message),) = err.value.faults
    assert path == ""
    assert f"more than {MAX_NODES} values" in message


def test_yaml_node_count_is_bounded_while_composing(monkeypatch: pytest.MonkeyPatch) -> None:
    # The loader reads the bound when it composes; a small one keeps the test fast.
    monkeypatch.setattr(documents, "MAX_NODES", 1_000)
    text = "x: [" + ", ".join(["1"] * 1_000) + "]"  # and x itself, and the mapping
    with pytest.raises(DefinitionError) as err:
        load_yaml(text)
    assert "more than 1000 values" in str(err.value)
    assert load_yaml("x: [" + ", ".join(["1"] * 997) + "]") == {"x": [1] * 997}


def test_json_and_yaml_still_decode_as_before() -> None:
    # JSON first: YAML 1.1 would read 1e300 as a string.
    assert load_text('{"x": 1e300}') == {"x": 1e300}
    assert load_text("x: [1, 2]\ny: {a: b}\n") == {"x": [1, 2], "y": {"a": "b"}}
    assert load_text(json.dumps({"big": 2**70})) == {"big": 2**70}


def test_invalid_text_is_one_fault_at_the_document() -> None:
    with pytest.raises(DefinitionError) as err:
        load_text("x: [1, 2")
    ((path, message),) = err.value.faults
    assert path == ""
    assert message.startswith("not valid JSON or YAML")


@pytest.mark.parametrize("text", [b"\x00", b"id: a\x00b\n", "id: \x07\n"])
def test_characters_yaml_refuses_are_one_fault_at_the_document(text: str | bytes) -> None:
    # YAML's reader refuses these as it is made, before composing: that was a 500 at push.
    with pytest.raises(DefinitionError) as err:
        parse_workflow_text(text)
    ((path, message),) = err.value.faults
    assert path == ""
    assert message.startswith("not valid JSON or YAML")


@pytest.mark.parametrize(
    "text",
    [
        '{"id": "wf", "steps": [{"id": "a", "type": "noop", "timeout": ' + "1" * 5000 + "}]}",
        "id: wf\nsteps:\n- {id: a, type: noop, timeout: " + "1" * 5000 + "}\n",
    ],
)
def test_a_number_past_pythons_digit_limit_is_a_fault_not_a_crash(text: str) -> None:
    # int() raises a bare ValueError past 4,300 digits: that was a 500 at push.
    with pytest.raises(DefinitionError) as err:
        parse_workflow_text(text)
    ((path, message),) = err.value.faults
    assert path == ""
    assert "4300 digits" in message
