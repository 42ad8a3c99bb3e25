"""Expressions: CEL (the `common-expression-language` package, bindings to the Rust `cel`
crate), bounded, plus `${...}` interpolation in strings.

Groundwork for the workflow language's params, conditions and loops (issue 4); nothing in the
DSL uses it yet. What it guarantees:

- **Bounded.** A source is at most MAX_SOURCE_CHARS, nests brackets at most MAX_NESTING deep and
  uses at most MAX_COMPREHENSIONS comprehension macros (`map`, `filter`, `all`, `exists`,
  `exists_one`), so a pushed definition cannot ask for unbounded work: CEL has no loops, and
  the inputs an expression sees (params, step outputs) are bounded records. A result larger
  than MAX_RESULT_BYTES as JSON is refused. There is no wall-clock limit: the library has none.
- **Never a crash.** Every failure (syntax, an unknown name, a type error, division by zero,
  overflow, an oversized result) is an ExpressionError with a message that says which
  expression and why; the caller turns it into a failed step or a rejected definition.
- **Checkable at push time.** `references` are the names an expression reads (comprehension
  variables excluded), so a definition can be rejected for a name no param or step provides.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel

MAX_SOURCE_CHARS = 2048
MAX_NESTING = 32
MAX_COMPREHENSIONS = 3
MAX_RESULT_BYTES = 64 * 1024

_COMPREHENSION = re.compile(r"\.\s*(?:map|filter|all|exists_one|exists)\s*\(\s*([A-Za-z_]\w*)\s*,")
# `${ ... }` in a string; `$${` is a literal `${`.
_INTERPOLATION = re.compile(r"\$\$\{|\$\{([^{}]*)\}")


class ExpressionError(ValueError):
    """An expression that cannot be compiled or evaluated; the message says which and why."""


@dataclass(frozen=True)
class Expression:
    source: str
    references: frozenset[str]
    _program: Any

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The value, as plain Python (str, int, float, bool, None, list, dict, datetime)."""
        missing = sorted(self.references - context.keys())
        if missing:
            raise ExpressionError(f"{self.source!r}: unknown name {', '.join(missing)}")
        try:
            value = self._program.execute(dict(context))
        except (RuntimeError, ValueError, TypeError, ArithmeticError) as err:
            raise ExpressionError(f"{self.source!r}: {_first_line(err)}") from None
        size = len(json.dumps(value, default=str, separators=(",", ":")).encode())
        if size > MAX_RESULT_BYTES:
            raise ExpressionError(
                f"{self.source!r}: the result is {size} bytes as JSON; at most {MAX_RESULT_BYTES}"
            )
        return value


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
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as err:
        raise ExpressionError(f"{source!r} is not a valid expression: {_first_line(err)}") from None
    return Expression(source, frozenset(program.variables()) - set(bound), program)


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
        return json.dumps(result, default=str, separators=(",", ":"))

    return _INTERPOLATION.sub(value, template)
