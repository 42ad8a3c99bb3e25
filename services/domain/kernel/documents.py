"""Decoding a definition's text (JSON or YAML) into plain data, bounded before any deep work.

Everything after decoding (pydantic, the DAG, the analysis of expressions, canonical JSON)
walks the data recursively and costs in proportion to its size. So the text is decoded only
into data whose shape is bounded: no YAML anchors or aliases (a 400-byte "billion laughs"
document expands to hundreds of millions of nodes), at most `MAX_DEPTH` levels of nesting
(Python's recursion limit, 1,000, would otherwise turn deep input into a RecursionError) and
at most `MAX_NODES` values. With those bounds and the byte limit, every later walk is finite
and small, which is what lets the API run validation in a thread it cannot kill.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import yaml
from yaml.events import AliasEvent, ScalarEvent
from yaml.nodes import Node, ScalarNode

from services.domain.kernel.errors import DefinitionError

# Above everything the language itself allows: loops ten deep (two levels each: `steps`, the
# step), the step's params, and a `map` value sixteen deep come to about 45.
MAX_DEPTH = 64


# Real definitions hold a few thousand values (a long_array param of 10,000 items is 10,000).
# A megabyte of "[1,1,1,…]" would hold 500,000; PyYAML composes about 30,000 a second, so this
# bound also caps the time a YAML document can take to load at a few seconds.
MAX_NODES = 100_000


PathPart = int | str


# PostgreSQL's text and jsonb cannot hold U+0000, and every string of a definition or a
# command reaches them through the log: one such string stopped the projector. Nor is a lone
# surrogate (U+D800 to U+DFFF outside a pair) text: jsonb refuses its escape, and UTF-8
# cannot encode it. Pydantic refuses one in a string field; a map param or a payload took it.
NUL_MESSAGE = "a string may not hold a NUL character"


SURROGATE_MESSAGE = "a string may not hold a lone surrogate"


# A NUL in JSON text: the character itself, or the escape `\u0000` whose backslash is not
# itself escaped (an even number of backslashes before it; `\\u0000` is text).
_JSON_NUL = re.compile(r"\x00|(?<!\\)(?:\\\\)*\\u0000")


# A surrogate's escape in JSON text (a pair's halves too: the decoded text tells them apart).
_JSON_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_holds_nul(text: str) -> bool:
    """True when the JSON `text` holds a NUL character in a string or a key, without decoding
    it (for a stored definition, decoded by a cached loader)."""
    if "\\u0000" not in text and "\x00" not in text:
        return False  # the common case: 1.8 µs for a 4 KB definition, the pattern 140 µs
    return _JSON_NUL.search(text) is not None


def json_may_hold_unstorable(text: str) -> bool:
    """False when the JSON `text` surely holds no string `text_fault` refuses (a NUL, a lone
    surrogate); True when it may, and decoding it tells."""
    return json_holds_nul(text) or _JSON_SURROGATE.search(text) is not None


def text_fault(value: str) -> str | None:
    """Why the string `value` cannot be stored as text (NUL_MESSAGE, SURROGATE_MESSAGE), or
    None."""
    if "\x00" in value:
        return NUL_MESSAGE
    if not value.isascii() and _SURROGATE.search(value):
        return SURROGATE_MESSAGE
    return None


def _shown(key: str) -> str:
    # A key as a fault's path shows it, as the API's own body checks do (a NUL included: a
    # JSON response escapes it), but for a lone surrogate, written as its JSON escape: no
    # UTF-8 response, log line or dead letter could carry the character itself.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", key)


def render_path(parts: Sequence[PathPart]) -> str:
    """`("steps", 3, "params")` -> `steps[3].params`, the path users see in faults."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _too_deep(parts: Sequence[PathPart]) -> DefinitionError:
    return DefinitionError([(render_path(parts), f"nested more than {MAX_DEPTH} levels deep")])


def _too_many() -> DefinitionError:
    return DefinitionError([("", f"the document has more than {MAX_NODES} values")])


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors and aliases and bounding depth and node count as
    it composes, before any node is constructed (so nothing is ever expanded). It keeps the
    path of the node being composed, so a fault names where it is."""

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._parts: list[PathPart | None] = []
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if parent is None:
            part: PathPart | None = None  # the document itself
        elif isinstance(index, int):
            part = index  # an item of a sequence
        elif isinstance(index, ScalarNode):
            part = str(index.value)  # the value of a mapping's key
        else:
            part = None  # a mapping's key (or the value of a complex key)
        self._parts.append(part)
        try:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if isinstance(event, AliasEvent) or event.anchor is not None:
                mark = event.start_mark
                raise DefinitionError(
                    [
                        (
                            self._path(),
                            f"YAML anchors and aliases (&{event.anchor}, *{event.anchor}) are "
                            f"not allowed in a definition (line {mark.line + 1}, column "
                            f"{mark.column + 1}); write the value out",
                        )
                    ]
                )
            self._nodes += 1
            if self._nodes > MAX_NODES:
                raise _too_many()
            if len(self._parts) - 1 > MAX_DEPTH and not isinstance(event, ScalarEvent):
                raise _too_deep(self._named_parts())
            return super().compose_node(parent, index)
        finally:
            self._parts.pop()

    def _named_parts(self) -> list[PathPart]:
        return [p for p in self._parts if p is not None]

    def _path(self) -> str:
        return render_path(self._named_parts())


def load_yaml(text: str | bytes) -> Any:
    """YAML text as data, through `StrictLoader`; DefinitionError for bad or refused text."""
    try:
        # The reader judges the characters as it is made (a NUL is a ReaderError there).
        loader = StrictLoader(text)
    except yaml.YAMLError as err:
        raise DefinitionError([("", f"not valid JSON or YAML: {err}")]) from None
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise DefinitionError([("", f"not valid JSON or YAML: {err}")]) from None
    except DefinitionError:
        raise
    except ValueError as err:  # an integer past Python's digit limit, as the constructor reads it
        raise DefinitionError([("", f"not valid JSON or YAML: {err}")]) from None
    finally:
        loader.dispose()


def load_text(text: str | bytes) -> Any:
    """JSON or YAML text (YAML is a superset of JSON) as data, checked by `check_shape`.

    JSON first: YAML 1.1 would read some valid JSON differently (1e300 is a string there)."""
    try:
        data = load_json(text)
    except ValueError as err:
        if isinstance(err, DefinitionError):
            raise
        data = load_yaml(text)
    check_shape(data)
    return data


def load_json(text: str | bytes) -> Any:
    """JSON text as data, checked by `check_shape`; ValueError if it is not JSON.

    JSON nested deeper than Python's recursion limit raises RecursionError in `json.loads`
    (without saying where); the YAML loader, which reads JSON too, then finds the path of
    the first value nested too deep, and stops there."""
    try:
        data = json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        load_yaml(text)  # raises DefinitionError with the path, or for not being YAML
        raise _too_deep([]) from None  # not reached: YAML composes JSON as deep as JSON
    check_shape(data)
    return data


# Python's own limit on converting digits to an int (sys.int_info.default_max_str_digits):
# past it `int()` raises a bare ValueError, which JSON's decoder lets through.
MAX_INT_DIGITS = 4300


def _bounded_int(digits: str) -> int:
    if len(digits) - digits.startswith("-") > MAX_INT_DIGITS:
        raise DefinitionError([("", f"a number may have at most {MAX_INT_DIGITS} digits")])
    return int(digits)


def check_shape(data: Any) -> None:
    """DefinitionError unless `data` nests at most `MAX_DEPTH` levels, holds at most
    `MAX_NODES` values and no NUL character in any string or key (`NUL_MESSAGE`). One walk
    without recursion, stopping at the first fault."""
    for nodes, (parts, value) in enumerate(_walk(data), start=1):
        if nodes > MAX_NODES:
            raise _too_many()
        if len(parts) > MAX_DEPTH and isinstance(value, dict | list):
            raise _too_deep(parts)
        found = _unstorable(parts, value)
        if found is not None:
            raise DefinitionError([found])


def unstorable_path(data: Any, root: Sequence[PathPart] = ()) -> tuple[str, str] | None:
    """The path (below `root`) of the first string or key in `data` that cannot be stored as
    text, and why (`text_fault`); None if there is none. Without recursion, at any depth."""
    for parts, value in _walk(data):
        found = _unstorable((*root, *parts), value)
        if found is not None:
            return found
    return None


def _unstorable(parts: Sequence[PathPart], value: Any) -> tuple[str, str] | None:
    if isinstance(value, str):
        fault = text_fault(value)
        if fault is not None:
            return render_path(parts), fault
    elif isinstance(value, dict):
        for key in value:
            fault = text_fault(str(key))
            if fault is not None:
                return render_path((*parts, _shown(str(key)))), fault
    return None


def _walk(data: Any) -> Iterator[tuple[tuple[PathPart, ...], Any]]:
    # Depth first with an explicit stack; a container's items are pushed only after its own
    # depth was checked by the caller, so the stack holds at most MAX_DEPTH levels of items.
    stack: list[tuple[tuple[PathPart, ...], Any]] = [((), data)]
    while stack:
        parts, value = stack.pop()
        yield parts, value
        if isinstance(value, dict):
            stack.extend(((*parts, str(k)), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*parts, i), v) for i, v in reversed(list(enumerate(value))))


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
