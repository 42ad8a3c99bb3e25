"""What the Kafka cluster knows about Baton's processes: group members and topic ends.

Liveness comes from the consumer groups rather than from heartbeat rows of our own: every
engine, worker and projector is already a member of its group for as long as it heartbeats
the coordinator (a killed process leaves after the group's session timeout, 10 s), so the
broker holds an honest, free liveness record, and the engine and workers need no database.
The price: a process that is alive but not (yet) in its group — starting, or between a
broker outage and its rejoin — reads as not live, which is what a caller should see anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.protocol.admin import (
    DescribeGroupsRequest_v0,
    DescribeGroupsRequest_v1,
    DescribeGroupsRequest_v2,
)
from aiokafka.protocol.api import Request

from services.adapters.kafka import new_admin, new_consumer

# The group of each process kind. The processes own these names (engine.GROUP_ID,
# projector.consumer.GROUP_ID, worker.runner.group_id); tests/unit pins that they agree.
ENGINE_GROUP = "baton-engine"
PROJECTOR_GROUP = "baton-projector"
WORKER_GROUP_PREFIX = "baton-worker-"

# States in which a group's listed members are current (Empty and Dead have none).
_LIVE_STATES = frozenset({"Stable", "PreparingRebalance", "CompletingRebalance"})


@dataclass(frozen=True, slots=True)
class GroupMembers:
    group: str
    state: str  # the coordinator's word: Stable, PreparingRebalance, Empty, Dead, ...
    members: int  # members heartbeating now (0 unless the state is a live one)


_UpToV2: TypeAlias = DescribeGroupsRequest_v0 | DescribeGroupsRequest_v1 | DescribeGroupsRequest_v2


class DescribeGroupsUpToV2(Request[_UpToV2]):  # type: ignore[misc]  # aiokafka's is untyped
    """DescribeGroups, never v3: aiokafka 0.14 parses a v3 answer with v2's schema
    (`DescribeGroupsRequest_v3.RESPONSE_TYPE`), which fails ("Buffer underrun decoding
    string") against any broker that speaks v3, as Kafka 3.9 does; its
    `describe_consumer_groups` always picks v3. v2 says all this module needs."""

    API_KEY = 15

    def __init__(self, groups: Sequence[str]) -> None:
        self._groups = list(groups)

    def build(self, request_struct_class: Any) -> Any:  # one of _UpToV2, as the base asks
        return request_struct_class(self._groups)


def worker_queue(group: str) -> str | None:
    """The queue a worker group serves, or None for a group that is not a worker group."""
    if group.startswith(WORKER_GROUP_PREFIX) and len(group) > len(WORKER_GROUP_PREFIX):
        return group[len(WORKER_GROUP_PREFIX) :]
    return None


def members_of(descriptions: Iterable[Any]) -> dict[str, GroupMembers]:
    """The DescribeGroups responses (every version) as members per group."""
    out: dict[str, GroupMembers] = {}
    for response in descriptions:
        for entry in response.groups:
            # (error_code, group, state, protocol_type, protocol, members, ...)
            error_code, group, state, members = entry[0], entry[1], entry[2], entry[5]
            live = error_code == 0 and state in _LIVE_STATES
            out[group] = GroupMembers(group, state, len(members) if live else 0)
    return out


class ClusterProbe:
    """Read-only questions to the cluster, each bounded by `timeout_s`. One per process,
    started once: an admin client (groups) and a group-less read_committed consumer (the
    topics' last stable offsets, which is what a read_committed reader can reach)."""

    def __init__(self, bootstrap: str, timeout_s: float = 2.0) -> None:
        self._timeout_s = timeout_s
        self._admin = new_admin(bootstrap, request_timeout_ms=int(timeout_s * 1000))
        self._consumer: AIOKafkaConsumer = new_consumer(
            bootstrap, None, request_timeout_ms=int(timeout_s * 1000) + 1000
        )

    async def start(self) -> None:
        await self._admin.start()
        await self._consumer.start()

    async def close(self) -> None:
        await asyncio.gather(self._admin.close(), self._consumer.stop())

    async def groups(self, extra: Sequence[str] = ()) -> dict[str, GroupMembers]:
        """Members of every worker group the cluster knows, and of the `extra` groups (an
        unknown group reads as Dead with no members)."""
        async with asyncio.timeout(self._timeout_s):
            listed = await self._admin.list_consumer_groups()
            names = {str(g[0]) for g in listed if worker_queue(str(g[0])) is not None}
            names.update(extra)
            if not names:
                return {}
            found = members_of(await self._describe(sorted(names)))
        for name in names:
            found.setdefault(name, GroupMembers(name, "Dead", 0))
        return found

    async def _describe(self, groups: Sequence[str]) -> list[Any]:
        # As AIOKafkaAdminClient.describe_consumer_groups does, with the request above (its
        # _send_request is the admin client's own way to send one to a given broker).
        by_node: dict[int, list[str]] = {}
        for group in groups:
            try:
                node = await self._admin.find_coordinator(group)
            except GroupCoordinatorNotAvailableError:
                # No coordinator yet: a fresh cluster before any group joined (no offsets
                # topic), or one still loading. Either way no member can be confirmed, and
                # the caller reads the group as having none.
                continue
            by_node.setdefault(node, []).append(group)
        return list(
            await asyncio.gather(
                *(
                    self._admin._send_request(DescribeGroupsUpToV2(names), node)
                    for node, names in by_node.items()
                )
            )
        )

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition of `topic`: the offset a read_committed reader ends at."""
        async with asyncio.timeout(self._timeout_s):
            described = await self._admin.describe_topics([topic])
            tps = [
                TopicPartition(topic, p["partition"])
                for t in described
                if t.get("topic") == topic
                for p in t.get("partitions") or ()
            ]
            if not tps:
                return {}
            ends = await self._consumer.end_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in ends.items()}
