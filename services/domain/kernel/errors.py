"""One root for every error the domain raises on purpose (BatonError), and its branches."""

from __future__ import annotations


class Rejected(ValueError):
    """The command can never apply; the reason is recorded with the dead-lettered command."""


class DefinitionError(ValueError):
    """A definition or request is invalid; `faults` lists (path, message) pairs."""

    def __init__(self, faults: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in faults))
        self.faults = faults


class ExpressionError(ValueError):
    """An expression that cannot be compiled or evaluated; the message says which and why."""


class CorruptLog(RuntimeError):
    """An event that cannot follow the state it is applied to: the log itself is wrong."""
