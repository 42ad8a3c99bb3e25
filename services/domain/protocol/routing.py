"""Aggregate ids and how they route: which partition decides a command, and the ids the
domain derives (never random, so a replayed decision derives the same ids)."""

from __future__ import annotations

import hashlib

from services.domain.protocol.commands import Command, is_signal_command, is_workflow_command

# Instance ids are `<route>~<rest>`: every id with the same route lives on one partition, with
# the aggregate whose id is the route. A top-level instance is routed by its workflow id (its
# run strategy is decided right beside it, as Maestro groups flows by workflow); a child
# instance by its root's route. An id without the separator routes by itself.
ROUTE_SEPARATOR = "~"


def route_key(key: str) -> str:
    """What decides the partition of an aggregate id (see ROUTE_SEPARATOR)."""
    return key.split(ROUTE_SEPARATOR, 1)[0]


def signal_key(name: str) -> str:
    """A signal's aggregate id: its own key space (a workflow may share the name)."""
    return f"signal:{name}"


def command_key(cmd: Command) -> str:
    """The aggregate a command addresses (the record key; its route picks the partition)."""
    if is_workflow_command(cmd):
        return cmd.workflow_id
    if is_signal_command(cmd):
        return signal_key(cmd.signal_name)
    return cmd.instance_id


def child_id(instance_id: str, step_id: str, attempt: int) -> str:
    """A child instance's id: routed with its parent (ROUTE_SEPARATOR), unique per attempt."""
    return f"{instance_id}{ROUTE_SEPARATOR}{step_id}{ROUTE_SEPARATOR}{attempt}"


def iteration_id(instance_id: str, step_id: str, attempt: int, index: int) -> str:
    """A loop iteration's instance id: routed with its parent, unique per attempt and index."""
    return f"{child_id(instance_id, step_id, attempt)}{ROUTE_SEPARATOR}{index}"


def derived_instance_id(workflow_id: str, cause: str) -> str:
    """A top-level instance id (`<workflow id>~<32 hex>`, see ROUTE_SEPARATOR) derived from
    what started it: a decision replayed names the same instance, which starts once."""
    digest = hashlib.sha256(f"{workflow_id}\0{cause}".encode()).hexdigest()[:32]
    return f"{workflow_id}{ROUTE_SEPARATOR}{digest}"
