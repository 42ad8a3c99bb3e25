"""The one shape every aggregate has (instance, workflow, signal), so the engine drives them
all through one function and a new aggregate needs no change in it.

An aggregate is decided and folded as Temporal's history service and Restate's partition
processor do: `decide(state, command, now, caused_at) -> Decision` holds the events (already
folded into the state they lead to, with the same `evolve` replay uses), the commands they
send to other aggregates, and the tasks they hand to workers; `evolve(state, event) -> state`
is the fold. Both are pure: time and ids come in as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from services.domain.kernel.documents import NUL_MESSAGE
from services.domain.kernel.errors import Rejected
from services.domain.protocol.commands import Command, nul_field
from services.domain.protocol.events import Event, EventPayload
from services.domain.protocol.tasks import Task


class Sequenced(Protocol):
    """A folded state: the sequence number of its last event (gapless from 1)."""

    @property
    def seq(self) -> int: ...


S = TypeVar("S", bound=Sequenced)


@dataclass(frozen=True, slots=True)
class Decision(Generic[S]):
    """What one command decided: effects as values, applied by the engine in one transaction.

    `state` is the state after `events` (None: the aggregate still does not exist); `sent`
    are commands for other aggregates, delivered exactly once with the events; `tasks` go to
    workers; `cancellations` are those of `events` that end an attempt a worker may still be
    running (workers receive them on the control topic)."""

    state: S | None
    events: list[Event]
    sent: list[Command]
    tasks: list[Task] = field(default_factory=list)
    cancellations: list[Event] = field(default_factory=list)


class Draft(Generic[S]):
    """The unit of work of one decision: each emitted event is folded at once (so later rules
    see the state it leads to), and each sent command is kept for the decision."""

    def __init__(self, state: S | None, key: str, now: int, caused_at: int | None) -> None:
        self.state = state
        self.key = key
        self.now = now
        self.caused_at = caused_at
        self.events: list[Event] = []
        self.sent: list[Command] = []

    @property
    def s(self) -> S:
        assert self.state is not None
        return self.state

    def emit(self, payload: EventPayload) -> S:
        """Record the event; the state after it."""
        seq = (self.state.seq if self.state is not None else 0) + 1
        event = self.envelope(payload, seq)
        self.state = self.evolve(self.state, event)  # the fold replay uses
        self.events.append(event)
        return self.state

    def send(self, command: Command) -> None:
        """Decided with the events: the engine delivers it exactly once, in their transaction."""
        self.sent.append(command)

    def decision(self) -> Decision[S]:
        return Decision(self.state, self.events, self.sent)

    # --- what each aggregate's draft says ------------------------------------------------

    def envelope(self, payload: EventPayload, seq: int) -> Event:
        raise NotImplementedError

    def evolve(self, state: S | None, event: Event) -> S:
        raise NotImplementedError


D = TypeVar("D", bound=Draft[Any])


def apply_rule(
    rules: Mapping[type, Callable[[D, Any], None]],
    draft: D,
    command: Command,
    exempt: frozenset[str] = frozenset(),
) -> D:
    """What every aggregate's decide does first: find its rule for the command (a command
    without one is a bug: TypeError), refuse a field PostgreSQL could not hold (a NUL, except
    in the `exempt` fields, which their rule makes storable itself), then apply the rule."""
    rule = rules.get(type(command))
    if rule is None:
        raise TypeError(f"no rule for {type(command).__name__}")
    nul = nul_field(command, exempt)
    if nul is not None:
        raise Rejected(f"{nul}: {NUL_MESSAGE}")
    rule(draft, command)
    return draft


@dataclass(frozen=True, slots=True)
class Aggregate(Generic[S]):
    """An aggregate type, as the engine sees it: which commands and events are its, the key
    of its state in memory, its rules and its fold, and its timers.

    `deadline(state)` is the earliest time at which `timer(key)` (a command for it) has
    something to do; None: no timer (and then `timer` may be None too). `snapshot` and
    `restore` carry the state to and from the engine's snapshots (a cache of the fold)."""

    name: str
    command_types: tuple[type, ...]
    event_types: tuple[type, ...]
    command_key: Callable[[Any], str]
    event_key: Callable[[Event], str]
    decide: Callable[[S | None, Any, int, int | None], Decision[S]]
    evolve: Callable[[S | None, Event], S]
    deadline: Callable[[S], int | None]
    # The state as a plain snapshot record and back: restore(snapshot(s)) == s.
    snapshot: Callable[[S], dict[str, Any]]
    restore: Callable[[Mapping[str, Any]], S]
    timer: Callable[[str], Command] | None = None
    # Only a restart can still change this state (None: the type is never evicted): the
    # engine may then keep it out of memory and load it back for any command that names it.
    evictable: Callable[[S], bool] | None = None
