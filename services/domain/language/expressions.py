"""Expressions: CEL (the `common-expression-language` package, bindings to the Rust `cel`
crate), bounded, plus `${...}` interpolation in strings.

The workflow language's params, conditions and loops use it. What it guarantees:

- **Bounded.** A source is at most MAX_SOURCE_CHARS, nests brackets at most MAX_NESTING deep and
  uses at most MAX_COMPREHENSIONS comprehension macros (`map`, `filter`, `all`, `exists`,
  `exists_one`), none inside another, so a pushed definition cannot ask for unbounded work:
  CEL has no loops, the inputs an expression sees (params, step outputs) are bounded
  records, and without nesting the work is linear in them. A result larger than
  MAX_RESULT_BYTES as JSON is refused. The library has no wall-clock limit: these bounds are
  what keep evaluation short (docs/dsl.md gives the worst case measured).
- **Never a crash.** Every failure (syntax, an unknown name, a type error, division by zero,
  overflow, an oversized result) is an ExpressionError with a message that says which
  expression and why; the caller turns it into a failed step or a rejected definition.
- **Checkable at push time.** `references` are the names an expression reads (comprehension
  variables excluded), so a definition can be rejected for a name no param or step provides.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import cel

from services.domain.kernel.errors import ExpressionError

MAX_SOURCE_CHARS = 2048


MAX_NESTING = 32


MAX_COMPREHENSIONS = 3


MAX_RESULT_BYTES = 64 * 1024


# CEL's `map` and `filter` macros build their result by concatenation: their cost grows with
# the square of the list's length (measured: ~46 ms for 1,000 longs, ~100 ms for 1,000
# strings). Before evaluating, the items an expression could feed them (every list item in
# the values it reads, times the list concatenations in its source) are counted, and
# (map and filter calls) x items^2 may be at most MAX_MAPPED_ITEMS^2.
MAX_MAPPED_ITEMS = 500


# Likewise a chain of `+` copies its growing result at each step: (1 + concatenations)^2 x the
# characters of the strings it reads may be at most this.
MAX_CONCATENATED_CHARS = 16 * 1024 * 1024


_COMPREHENSION = re.compile(r"\.\s*(?:map|filter|all|exists_one|exists)\s*\(\s*([A-Za-z_]\w*)\s*,")


# `${ ... }` in a string; `$${` is a literal `${`.
_INTERPOLATION = re.compile(r"\$\$\{|\$\{([^{}]*)\}")


# A rough CEL lexer: enough to find member paths and brackets outside string literals.
_TOKEN = re.compile(
    r"(?P<str>[rRbB]{0,2}(?:\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''"
    r"|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'))"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*)|(?P<ws>\s+)|(?P<op>.)",
    re.S,
)


@dataclass(frozen=True)
class Expression:
    source: str
    references: frozenset[str]
    _program: Any
    mappers: int = 0  # `map` and `filter` calls
    concatenations: int = 0  # `+` operators: each may join lists

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The value, as plain Python (str, int, float, bool, None, list, dict, datetime)."""
        missing = sorted(self.references - context.keys())
        if missing:
            raise ExpressionError(f"{self.source!r}: unknown name {', '.join(missing)}")
        if self.mappers or self.concatenations:
            self._check_work(context)
        try:
            value = self._program.execute(dict(context))
        except KeyError as err:
            raise ExpressionError(f"{self.source!r}: no such key: {err.args[0]}") from None
        except Exception as err:
            # Whatever the library raises (it maps CEL errors onto several Python types): an
            # expression's failure is its step's, never the engine's.
            raise ExpressionError(f"{self.source!r}: {_first_line(err)}") from None
        size = len(json.dumps(value, default=str, separators=(",", ":")).encode())
        if size > MAX_RESULT_BYTES:
            raise ExpressionError(
                f"{self.source!r}: the result is {size} bytes as JSON; at most {MAX_RESULT_BYTES}"
            )
        return value

    def _check_work(self, context: Mapping[str, Any]) -> None:
        """Refuse, before running it, an expression whose work would grow with the square of
        its inputs (see MAX_MAPPED_ITEMS and MAX_CONCATENATED_CHARS)."""
        paths = member_paths(self.source)
        items = chars = 0
        for name in self.references:
            value = context[name]
            read = [value]
            # Only the named params and steps, when the expression names them.
            if name == "params" and not paths.params_dynamic and isinstance(value, Mapping):
                read = [value.get(k) for k in paths.params]
            elif name == "steps" and not paths.steps_dynamic and isinstance(value, Mapping):
                read = [value.get(k) for k in paths.steps]
            for part in read:
                n, c = _size(part)
                items, chars = items + n, chars + c
        joins = 1 + self.concatenations
        if self.mappers and self.mappers * (items * joins) ** 2 > MAX_MAPPED_ITEMS**2:
            raise ExpressionError(
                f"{self.source!r}: map and filter may go over at most {MAX_MAPPED_ITEMS} items,"
                f" and this one's inputs hold {items} list items (x{joins} with the `+` in it);"
                " use exists, all or size, or pass a shorter list"
            )
        if joins * joins * chars > MAX_CONCATENATED_CHARS:
            raise ExpressionError(
                f"{self.source!r}: {self.concatenations} concatenations over inputs of {chars}"
                f" characters could build strings of up to {joins * chars}; keep"
                f" (1 + concatenations)^2 x input characters within {MAX_CONCATENATED_CHARS}"
            )


def _size(value: Any, depth: int = 0) -> tuple[int, int]:
    """(list items, string characters) in a value, nested ones included."""
    if depth > 32:
        return 0, 0
    if isinstance(value, str):
        return 0, len(value)
    if isinstance(value, list | tuple):
        items, chars = len(value), 0
        for v in value:
            n, c = _size(v, depth + 1)
            items, chars = items + n, chars + c
        return items, chars
    if isinstance(value, Mapping):
        items = chars = 0
        for k, v in value.items():
            n, c = _size(v, depth + 1)
            items, chars = items + n, chars + c + len(str(k))
        return items, chars
    return 0, 0


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _nesting(source: str) -> int:
    """The deepest bracket nesting outside string literals."""
    depth = deepest = 0
    quote: str | None = None
    escaped = False
    for ch in source:
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


@dataclass(frozen=True)
class Paths:
    """The params and steps an expression names through `params.x` / `steps.x` (or
    `steps["x"]`); `*_dynamic` when it indexes them with a computed key or uses the whole map."""

    params: frozenset[str]
    steps: frozenset[str]
    params_dynamic: bool
    steps_dynamic: bool


def _tokens(source: str) -> list[tuple[str, str]]:
    return [
        (m.lastgroup or "op", m.group()) for m in _TOKEN.finditer(source) if m.lastgroup != "ws"
    ]


@lru_cache(maxsize=4096)
def member_paths(source: str) -> Paths:
    """Which params and steps `source` reads (for checks at push time, and to build only the
    part of the context an expression needs)."""
    toks = _tokens(source)
    found: dict[str, set[str]] = {"params": set(), "steps": set()}
    dynamic = {"params": False, "steps": False}
    for i, (kind, text) in enumerate(toks):
        if kind != "id" or text not in found or (i and toks[i - 1][1] == "."):
            continue
        nxt = toks[i + 1 : i + 4]
        if len(nxt) >= 2 and nxt[0][1] == "." and nxt[1][0] == "id":
            found[text].add(nxt[1][1])
        elif len(nxt) == 3 and nxt[0][1] == "[" and nxt[1][0] == "str" and nxt[2][1] == "]":
            found[text].add(str(ast.literal_eval(nxt[1][1].lstrip("rRbB"))))
        else:
            dynamic[text] = True
    return Paths(
        frozenset(found["params"]), frozenset(found["steps"]), dynamic["params"], dynamic["steps"]
    )


def _top_level(source: str) -> str:
    """`source` with string literals and everything inside brackets blanked out."""
    out = []
    depth = 0
    for kind, text in _tokens(source):
        if kind == "op" and text in "([{":
            if depth == 0:
                out.append(text)
            depth += 1
        elif kind == "op" and text in ")]}":
            depth -= 1
            if depth == 0:
                out.append(text)
        elif depth == 0:
            out.append('""' if kind == "str" else text)
    return " ".join(out)


def boolean_shape(source: str) -> bool | None:
    """Whether `source` can only yield a boolean (True), can never yield one (False), or
    cannot be told without its inputs (None), judged by its outermost operator."""
    top = _top_level(source).strip()
    if "?" in top:
        return None
    if re.search(r"\|\s*\||&\s*&|=\s*=|!\s*=|<|>|\bin\b", top):
        return True
    if re.search(r".\s*[-+*/%]", top):
        return False
    if top.startswith("!") or top in ("true", "false"):
        return True
    if top == "null" or top.startswith(('"', "[", "{", "-")) or top[:1].isdigit():
        return False
    return None


def is_template(text: str) -> bool:
    """Whether a string holds `${...}` parts (or a `$${` escape) to interpolate."""
    return "${" in text and _INTERPOLATION.search(text) is not None


def strings_in(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON-like value, with its path below `where` (`x[2]`, `x.key`)."""
    if isinstance(value, str):
        yield value, where
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings_in(v, f"{where}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(v, f"{where}.{k}")


def value_templates(value: Any, where: str) -> list[tuple[str, str]]:
    """(expression, path) of every `${...}` in the strings of a value."""
    return [
        (src, path) for text, path in strings_in(value, where) for src in template_sources(text)
    ]


def template_sources(template: str) -> list[str]:
    """The expression inside each `${...}` of `template`."""
    return [m.group(1).strip() for m in _INTERPOLATION.finditer(template) if m.group(1) is not None]


_MACROS = frozenset({"map", "filter", "all", "exists", "exists_one"})


@dataclass(frozen=True)
class _Shape:
    """What one walk over an expression's tokens finds about its comprehensions."""

    nested: bool  # a comprehension inside another one's arguments
    mappers: int  # `map` and `filter` calls
    # `+` outside comprehension bodies (inside one, `+` works on one item at a time:
    # `files.map(f, f + '.gz')` joins no lists)
    outer_pluses: int


def _shape(source: str) -> _Shape:
    toks = _tokens(source)
    depth = mappers = pluses = 0
    nested = False
    open_at: list[int] = []  # depths at which a comprehension's arguments are open
    for i, (kind, text) in enumerate(toks):
        if kind != "op":
            continue
        if text in "([{":
            depth += 1
            if text == "(" and i >= 2 and toks[i - 2][1] == "." and toks[i - 1][1] in _MACROS:
                nested = nested or bool(open_at)
                mappers += toks[i - 1][1] in ("map", "filter")
                open_at.append(depth)
        elif text in ")]}":
            if open_at and open_at[-1] == depth:
                open_at.pop()
            depth -= 1
        elif text == "+" and not open_at:
            pluses += 1
    return _Shape(nested, mappers, pluses)


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    """Parse and check `source`; cached, since definitions repeat their expressions."""
    if not source.strip():
        raise ExpressionError("an expression may not be empty")
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(
            f"an expression may be at most {MAX_SOURCE_CHARS} characters, not {len(source)}"
        )
    if _nesting(source) > MAX_NESTING:
        raise ExpressionError(f"{source[:60]!r}…: nested deeper than {MAX_NESTING} brackets")
    bound = _COMPREHENSION.findall(source)
    if len(bound) > MAX_COMPREHENSIONS:
        raise ExpressionError(
            f"{source[:60]!r}: at most {MAX_COMPREHENSIONS} comprehensions (map, filter, all,"
            f" exists, exists_one), not {len(bound)}"
        )
    shape = _shape(source)
    if shape.nested:
        raise ExpressionError(
            f"{source[:60]!r}: a comprehension (map, filter, all, exists, exists_one) may not"
            " contain another one"
        )
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as err:
        raise ExpressionError(f"{source!r} is not a valid expression: {_first_line(err)}") from None
    return Expression(
        source,
        frozenset(program.variables()) - set(bound),
        program,
        shape.mappers,
        shape.outer_pluses,
    )


def template_references(template: str) -> frozenset[str]:
    """Every name the `${...}` parts of `template` read (for checks at push time)."""
    names: set[str] = set()
    for match in _INTERPOLATION.finditer(template):
        if match.group(1) is not None:
            names |= compile_expression(match.group(1).strip()).references
    return frozenset(names)


def interpolate(template: str, context: Mapping[str, Any]) -> str:
    """`template` with each `${expr}` replaced by its value: strings as they are, anything
    else as JSON (`true`, `3`, `[1,2]`). `$${` stands for a literal `${`."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) is None:
            return "${"
        result = compile_expression(match.group(1).strip()).evaluate(context)
        if isinstance(result, str):
            return result
        if isinstance(result, datetime):
            return result.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return json.dumps(result, default=str, separators=(",", ":"))

    return _INTERPOLATION.sub(value, template)
