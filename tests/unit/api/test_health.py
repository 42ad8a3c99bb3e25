"""`/health`'s judgement (pure): which observations make the stack degraded, and why."""

from __future__ import annotations

from types import SimpleNamespace

from services.adapters import cluster
from services.adapters.cluster import (
    ENGINE_GROUP,
    PROJECTOR_GROUP,
    DescribeGroupsUpToV2,
    GroupMembers,
    members_of,
    worker_queue,
)
from services.api.routes import health
from services.api.routes.health import Observed, assess
from services.engine import engine
from services.projector import consumer
from services.worker import runner


def groups(engine_n: int = 1, projector_n: int = 1, **queues: int) -> dict[str, GroupMembers]:
    out = {
        ENGINE_GROUP: GroupMembers(ENGINE_GROUP, "Stable", engine_n),
        PROJECTOR_GROUP: GroupMembers(PROJECTOR_GROUP, "Stable", projector_n),
    }
    for queue, n in (queues or {"default": 1}).items():
        name = runner.group_id(queue)
        out[name] = GroupMembers(name, "Stable" if n else "Empty", n)
    return out


def seen(**changes: object) -> Observed:
    base: dict[str, object] = {
        "database_error": None,
        "stored": {0: 10, 1: 5},
        "producer_running": True,
        "kafka_error": None,
        "groups": groups(),
        "ends": {0: 10, 1: 5},
    }
    base.update(changes)
    return Observed(**base)  # type: ignore[arg-type]


def test_everything_up_and_caught_up_is_ok() -> None:
    report, faults = assess(seen())
    assert faults == []
    assert report.status == "ok"
    assert {k: (p.live, p.members) for k, p in report.processes.items()} == {
        "engine": (True, 1),
        "worker": (True, 1),
        "projector": (True, 1),
    }
    assert report.queues == {"default": 1}
    assert report.projection.lag == 0
    assert report.projection.partitions == {"0": 0, "1": 0}


def test_a_kind_without_members_is_a_fault_named_by_its_path() -> None:
    report, faults = assess(seen(groups=groups(projector_n=0)))
    assert [p for p, _ in faults] == ["processes.projector"]
    assert report.status == "degraded"
    assert report.processes["projector"].live is False


def test_workers_count_across_queues_and_an_idle_queue_alone_is_no_fault() -> None:
    report, faults = assess(seen(groups=groups(default=0, gpu=2)))
    assert faults == []
    assert report.processes["worker"].members == 2
    assert report.queues == {"default": 0, "gpu": 2}
    _, faults = assess(seen(groups=groups(default=0)))
    assert [p for p, _ in faults] == ["processes.worker"]


def test_lag_is_end_minus_stored_per_partition_and_over_the_limit_is_a_fault() -> None:
    report, faults = assess(seen(stored={0: 4}, ends={0: 10, 1: 3}), max_lag=9)
    assert report.projection.partitions == {"0": 6, "1": 3}
    assert report.projection.lag == 9
    assert faults == []
    report, faults = assess(seen(stored={0: 4}, ends={0: 10, 1: 3}), max_lag=8)
    assert [p for p, _ in faults] == ["projection.lag"]


def test_database_down_leaves_the_lag_unknown() -> None:
    report, faults = assess(seen(database_error="ConnectionRefusedError: refused", stored=None))
    assert [p for p, _ in faults] == ["database"]
    assert report.database == "unavailable"
    assert report.projection.lag is None and report.projection.partitions == {}


def test_kafka_down_is_one_fault_not_one_per_process() -> None:
    report, faults = assess(seen(kafka_error="KafkaConnectionError", groups=None, ends=None))
    assert [p for p, _ in faults] == ["kafka"]
    assert report.kafka == "unavailable"
    assert not any(p.live for p in report.processes.values())


def test_a_stopped_producer_is_a_fault() -> None:
    _, faults = assess(seen(producer_running=False))
    assert [p for p, _ in faults] == ["producer"]


def test_members_of_reads_describe_groups_answers() -> None:
    member = ("m-1", "client", "/127.0.0.1", b"", b"")
    answer = SimpleNamespace(
        groups=[
            (0, "baton-engine", "Stable", "consumer", "roundrobin", [member, member]),
            (0, "baton-worker-x", "Empty", "consumer", "", []),
            (0, "baton-projector", "Dead", "", "", [member]),  # Dead lists nobody live
            (16, "baton-worker-y", "", "", "", [member]),  # an error code: no members
        ]
    )
    found = members_of([answer])
    assert {g: m.members for g, m in found.items()} == {
        "baton-engine": 2,
        "baton-worker-x": 0,
        "baton-projector": 0,
        "baton-worker-y": 0,
    }


def test_worker_queue_names() -> None:
    assert worker_queue("baton-worker-default") == "default"
    assert worker_queue("baton-worker-") is None
    assert worker_queue("baton-engine") is None


def test_the_names_agree_with_the_processes() -> None:
    # The API may not import the processes, so it repeats their names; these must agree.
    assert cluster.ENGINE_GROUP == engine.GROUP_ID
    assert cluster.PROJECTOR_GROUP == consumer.GROUP_ID
    assert runner.group_id("q") == cluster.WORKER_GROUP_PREFIX + "q"
    assert health.PROJECTOR_NAME == consumer.PROJECTOR_NAME


def test_describe_groups_never_asks_for_v3() -> None:
    # aiokafka 0.14 decodes a v3 answer with v2's schema; a broker offering v0..v5 gets v2.
    assert DescribeGroupsUpToV2(["g"]).prepare({15: (0, 5)}).API_VERSION == 2
