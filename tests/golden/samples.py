"""Golden samples: one realistic value of every event type, wire command and the task.

Their encoded bytes are kept in ``tests/golden/wire/<Type>.bin`` (``python -m
tests.golden.regenerate`` writes the missing ones); today's codec must still decode them.
Never edit a sample whose .bin exists: add a new sample instead.
"""

from __future__ import annotations

from services.domain.kernel.statuses import FailureKind, InstanceStatus, RestartMode, StepStatus
from services.domain.protocol.commands import (
    ActivateWorkflow,
    CommandEnvelope,
    DeactivateWorkflow,
    DequeueInstance,
    KillInstance,
    NoteInstanceStatus,
    PauseInstance,
    PauseStep,
    PushWorkflow,
    QueueInstance,
    ReportAttemptFailed,
    ReportAttemptHeartbeat,
    ReportAttemptStarted,
    ReportAttemptSucceeded,
    ReportChildEnded,
    RestartInstance,
    RestartStep,
    ResumeInstance,
    ResumeStep,
    SkipStep,
    StartChild,
    StartInstance,
    StopInstance,
    StopStep,
    UnblockWorkflow,
)
from services.domain.protocol.events import (
    BreakpointSet,
    Event,
    InstanceAdmitted,
    InstanceDequeued,
    InstanceFailed,
    InstancePaused,
    InstanceQueued,
    InstanceReleased,
    InstanceRestarted,
    InstanceResumed,
    InstanceStarted,
    InstanceStopped,
    InstanceSucceeded,
    InstanceTimedOut,
    LoopIterationEnded,
    LoopIterationsStarted,
    LoopStarted,
    StepAttemptCreated,
    StepAttemptFailed,
    StepAttemptStarted,
    StepAttemptSucceeded,
    StepEvaluationFailed,
    StepPaused,
    StepRestarted,
    StepResumed,
    StepSkipped,
    StepStopped,
    StepUnsatisfied,
    WorkflowActivated,
    WorkflowDeactivated,
    WorkflowUnblocked,
    WorkflowVersionCreated,
)
from services.domain.protocol.tasks import Task
from tests.golden.common import (
    DEFINITION,
    INSTANCE,
    PARAMS,
    SECOND,
    T0,
    WORKFLOW,
    command,
    event,
)
from tests.golden.samples_v6 import COMMANDS_V6, EVENTS_V6
from tests.golden.samples_v7 import (
    COMMAND_VARIANTS_V7,
    COMMANDS_V7,
    EVENT_VARIANTS_V7,
    EVENTS_V7,
)

_EVENTS_V1_TO_V5: tuple[Event, ...] = (
    event(3, WorkflowVersionCreated(version=3, definition=DEFINITION), instance=False),
    event(
        1,
        InstanceStarted(
            version=3,
            definition=DEFINITION,
            params=PARAMS,
            initiator="user:ana@example.com",
            idempotency_key="req-2025-11-20-eu",
            timeout_at=T0 + 3600 * SECOND,
        ),
    ),
    event(
        12,
        InstanceRestarted(
            run=2,
            mode=RestartMode.FROM_INCOMPLETE,
            reset_steps=("extract", "load"),
            timeout_at=T0 + 7200 * SECOND,
        ),
    ),
    event(20, InstanceSucceeded(run=2)),
    event(
        11,
        InstanceFailed(
            run=1,
            reason="step load failed: USER_FAILED after 3 attempts",
            failed_steps=("load",),
            killed=False,
        ),
    ),
    event(9, InstanceStopped(run=1, reason="stopped by user:ana@example.com")),
    event(30, InstanceTimedOut(run=3)),
    event(
        2,
        StepAttemptCreated(
            step_id="extract",
            attempt=1,
            run=1,
            step_type="shell",
            queue="default",
            params='{"date":"2025-11-20"}',
        ),
    ),
    event(
        3,
        StepAttemptStarted(
            step_id="extract",
            attempt=1,
            worker_id="worker-a1b2:4711",
            timeout_at=T0 + 600 * SECOND,
            wake_at=None,
        ),
    ),
    event(
        6,
        StepAttemptSucceeded(
            step_id="extract", attempt=1, outputs='{"rows":18234,"path":"s3://b/x.parquet"}'
        ),
    ),
    event(
        8,
        StepAttemptFailed(
            step_id="load",
            attempt=2,
            kind=FailureKind.USER,
            message="exit status 2",
            output_tail="Traceback (most recent call last):\n  ...\nKeyError: 'région'\n",
            step_status=StepStatus.WAITING_FOR_RETRY,
            retry_at=T0 + 40 * SECOND,
        ),
    ),
    event(10, StepStopped(step_id="load", attempt=3, status=StepStatus.STOPPED, reason="stopped")),
    # Events v3: steps that end without an attempt.
    event(
        11,
        StepUnsatisfied(
            step_id="backfill", run=1, reason="extract -> backfill: params.rows == 0 is false"
        ),
    ),
    event(
        12,
        StepEvaluationFailed(
            step_id="load",
            run=1,
            message="param path: 'steps.extract.outputs.dir': no such key: dir",
        ),
    ),
    event(13, InstancePaused(run=1, reason="paused by user:ana@example.com")),
    event(14, InstanceResumed(run=1)),
    event(15, StepSkipped(step_id="load", run=1, attempt=2, reason="skipped: data already there")),
    event(16, StepRestarted(step_id="load", run=1)),
    event(17, BreakpointSet(step_id="load", enabled=True)),
    event(18, StepPaused(step_id="load", run=1)),
    event(19, StepResumed(step_id="load", run=1)),
    # Events v5: loops.
    event(20, LoopStarted(step_id="per_day", attempt=1, items='["2025-11-20","2025-11-21"]')),
    event(21, LoopIterationsStarted(step_id="per_day", attempt=1, first=0, count=2)),
    event(
        22,
        LoopIterationEnded(
            step_id="per_day",
            attempt=1,
            index=1,
            status=InstanceStatus.FAILED,
            outputs='{"extract":{"rows":12}}',
            reason="step(s) failed: load",
        ),
    ),
    Event(
        event_id=f"{WORKFLOW}:2",
        instance_id=None,
        workflow_id=WORKFLOW,
        seq=2,
        occurred_at=T0 + 2,
        payload=WorkflowActivated(version=1),
    ),
    Event(
        event_id=f"{WORKFLOW}:3",
        instance_id=None,
        workflow_id=WORKFLOW,
        seq=3,
        occurred_at=T0 + 3,
        payload=WorkflowDeactivated(version=1),
    ),
    # Events v4: the run strategy admits instances.
    *(
        Event(
            event_id=f"{WORKFLOW}:{seq}",
            instance_id=None,
            workflow_id=WORKFLOW,
            seq=seq,
            occurred_at=T0 + seq,
            payload=payload,
        )
        for seq, payload in (
            (
                4,
                InstanceQueued(
                    instance_id=INSTANCE,
                    version=3,
                    definition=DEFINITION,
                    params=PARAMS,
                    initiator="user:ana@example.com",
                    idempotency_key="req-2025-11-20-eu",
                ),
            ),
            (5, InstanceAdmitted(instance_id=INSTANCE)),
            (
                6,
                InstanceReleased(instance_id=INSTANCE, status=InstanceStatus.FAILED, blocking=True),
            ),
            (7, WorkflowUnblocked(instance_id=INSTANCE)),
            (8, InstanceDequeued(instance_id=INSTANCE, reason="LAST_ONLY: superseded")),
        )
    ),
)

# Variants exercising the other union branches (null, absent times, the engine's steps).
EVENT_VARIANTS: tuple[Event, ...] = (
    # Events v2: the worker's clock when it reported the attempt started.
    event(
        6,
        StepAttemptStarted(
            step_id="extract", attempt=1, worker_id="w-1", timeout_at=None, wake_at=None
        ),
        caused_at=T0 + 6 * 1_250 - 700,
    ),
    event(
        4,
        StepAttemptCreated(
            step_id="wait", attempt=1, run=1, step_type="sleep", queue=None, params="{}"
        ),
    ),
    event(
        5,
        StepAttemptStarted(
            step_id="wait", attempt=1, worker_id="engine", timeout_at=None, wake_at=T0 + 30 * SECOND
        ),
    ),
    event(
        9,
        StepAttemptFailed(
            step_id="load",
            attempt=3,
            kind=FailureKind.TIMEOUT,
            message="no heartbeat for 60 s",
            output_tail="",
            step_status=StepStatus.TIMEOUT_FAILED,
            retry_at=None,
        ),
    ),
    event(
        2,
        InstanceStarted(
            version=1,
            definition=DEFINITION,
            params="{}",
            initiator="schedule:nightly",
            idempotency_key=None,
            timeout_at=T0 + 3600 * SECOND,
        ),
    ),
    # Events v4: a child instance of a subworkflow step.
    event(
        1,
        InstanceStarted(
            version=2,
            definition=DEFINITION,
            params='{"region":"eu-west"}',
            initiator=f"subworkflow:{INSTANCE}/load",
            idempotency_key=None,
            timeout_at=T0 + 3600 * SECOND,
            parent_instance_id=INSTANCE,
            parent_step_id="load",
            parent_attempt=1,
            depth=1,
        ),
    ),
    # Events v5: an iteration of a loop step.
    event(
        1,
        InstanceStarted(
            version=2,
            definition=DEFINITION,
            params='{"day":"2025-11-21"}',
            initiator=f"foreach:{INSTANCE}/per_day",
            idempotency_key=None,
            timeout_at=T0 + 3600 * SECOND,
            parent_instance_id=INSTANCE,
            parent_step_id="per_day",
            parent_attempt=1,
            depth=1,
            loop='{"index":1,"item":"2025-11-21"}',
        ),
    ),
    # Events v3: a restart that changed the run's params.
    event(
        21,
        InstanceRestarted(
            run=3,
            mode=RestartMode.FROM_BEGINNING,
            reset_steps=("extract",),
            timeout_at=T0 + 9000 * SECOND,
            params='{"date":"2025-11-21"}',
        ),
    ),
    *EVENT_VARIANTS_V7,
)


_COMMANDS_V1_TO_V5: tuple[CommandEnvelope, ...] = (
    command(1, PushWorkflow(workflow_id=WORKFLOW, definition=DEFINITION)),
    command(
        2,
        StartInstance(
            instance_id=INSTANCE,
            workflow_id=WORKFLOW,
            version=3,
            definition=DEFINITION,
            params=PARAMS,
            initiator="user:ana@example.com",
            idempotency_key="req-2025-11-20-eu",
            admitted=False,
        ),
    ),
    command(3, StopInstance(instance_id=INSTANCE, reason="wrong region")),
    command(4, KillInstance(instance_id=INSTANCE, reason="runaway cost")),
    command(5, RestartInstance(instance_id=INSTANCE, mode=RestartMode.FROM_BEGINNING)),
    command(15, PauseInstance(instance_id=INSTANCE, reason="upstream outage")),
    command(16, ResumeInstance(instance_id=INSTANCE)),
    command(17, SkipStep(instance_id=INSTANCE, step_id="load", reason="loaded by hand")),
    command(18, StopStep(instance_id=INSTANCE, step_id="load", reason="wrong input")),
    command(19, RestartStep(instance_id=INSTANCE, step_id="load")),
    command(20, PauseStep(instance_id=INSTANCE, step_id="load")),
    command(21, ResumeStep(instance_id=INSTANCE, step_id="load")),
    command(22, ActivateWorkflow(workflow_id=WORKFLOW, version=2)),
    command(23, DeactivateWorkflow(workflow_id=WORKFLOW)),
    command(
        24,
        QueueInstance(
            workflow_id=WORKFLOW,
            instance_id=INSTANCE,
            version=3,
            definition=DEFINITION,
            params=PARAMS,
            initiator="user:ana@example.com",
            idempotency_key=None,
        ),
    ),
    command(
        25,
        NoteInstanceStatus(
            workflow_id=WORKFLOW, instance_id=INSTANCE, status=InstanceStatus.SUCCEEDED
        ),
    ),
    command(26, DequeueInstance(workflow_id=WORKFLOW, instance_id=INSTANCE, reason="not now")),
    command(27, UnblockWorkflow(workflow_id=WORKFLOW, instance_id=INSTANCE)),
    command(
        28,
        StartChild(
            workflow_id="etl.load-region",
            instance_id=f"{INSTANCE}~load~1",
            version="active",
            params='{"region":"eu-west"}',
            initiator=f"subworkflow:{INSTANCE}/load",
            parent_instance_id=INSTANCE,
            parent_step_id="load",
            parent_attempt=1,
            depth=1,
        ),
    ),
    command(
        29,
        ReportChildEnded(
            instance_id=INSTANCE,
            step_id="load",
            attempt=1,
            child_id=f"{INSTANCE}~load~1",
            status=InstanceStatus.FAILED,
            outputs="{}",
            reason="step(s) failed: copy",
        ),
    ),
    command(
        6,
        ReportAttemptStarted(
            instance_id=INSTANCE, step_id="extract", attempt=1, worker_id="worker-a1b2:4711"
        ),
    ),
    command(
        7,
        ReportAttemptSucceeded(
            instance_id=INSTANCE, step_id="extract", attempt=1, outputs='{"rows":18234}'
        ),
    ),
    command(
        8,
        ReportAttemptFailed(
            instance_id=INSTANCE,
            step_id="load",
            attempt=2,
            kind=FailureKind.PLATFORM,
            message="worker lost its lease",
            output_tail="loading batch 7/12\n",
        ),
    ),
    command(
        9,
        ReportAttemptHeartbeat(
            instance_id=INSTANCE, step_id="load", attempt=2, worker_id="worker-c3d4:91"
        ),
    ),
)

COMMAND_VARIANTS: tuple[CommandEnvelope, ...] = (
    command(
        10,
        StartInstance(
            instance_id="etl.daily-sales:00aa",
            workflow_id=WORKFLOW,
            version=1,
            definition=DEFINITION,
            params="{}",
            initiator="api",
        ),
    ),
    # Commands v5: a loop's iteration, started and reporting its end.
    command(
        30,
        StartInstance(
            instance_id=f"{INSTANCE}~per_day~1~0",
            workflow_id=WORKFLOW,
            version=1,
            definition=DEFINITION,
            params='{"day":"2025-11-20"}',
            initiator=f"foreach:{INSTANCE}/per_day",
            parent_instance_id=INSTANCE,
            parent_step_id="per_day",
            parent_attempt=1,
            depth=1,
            loop='{"index":0,"item":"2025-11-20"}',
        ),
    ),
    command(
        31,
        ReportChildEnded(
            instance_id=INSTANCE,
            step_id="per_day",
            attempt=1,
            child_id=f"{INSTANCE}~per_day~1~0",
            status=InstanceStatus.SUCCEEDED,
            outputs='{"load":{"rows":3}}',
            iteration=0,
        ),
    ),
    command(11, RestartInstance(instance_id=INSTANCE)),
    command(12, StopInstance(instance_id=INSTANCE)),
    # Commands v3: a restart with param overrides.
    command(13, RestartInstance(instance_id=INSTANCE, expected_run=2, params='{"rows":5}')),
    command(
        14,
        RestartInstance(
            instance_id=INSTANCE, mode=RestartMode.FROM_STEP, expected_run=3, step_id="load"
        ),
    ),
    *COMMAND_VARIANTS_V7,
)

EVENTS = _EVENTS_V1_TO_V5 + EVENTS_V6 + EVENTS_V7
COMMANDS = _COMMANDS_V1_TO_V5 + COMMANDS_V6 + COMMANDS_V7

TASK = Task(
    instance_id=INSTANCE,
    workflow_id=WORKFLOW,
    step_id="load",
    attempt=2,
    run=1,
    step_type="python",
    queue="default",
    config='{"function":"etl.load:main"}',
    params='{"date":"2025-11-20","rows":18234}',
    timeout_seconds=900.0,
    created_at=T0 + 41 * SECOND,
)
TASK_VARIANTS: tuple[Task, ...] = (
    Task(
        instance_id=INSTANCE,
        workflow_id=WORKFLOW,
        step_id="extract",
        attempt=1,
        run=1,
        step_type="shell",
        queue="gpu",
        config='{"command":"./extract.sh"}',
        params="{}",
        timeout_seconds=None,
        created_at=T0,
    ),
)


def golden() -> dict[str, Event | CommandEnvelope | Task]:
    """The golden value of each type, by the file name stem of its stored bytes."""
    out: dict[str, Event | CommandEnvelope | Task] = {}
    values: list[Event | CommandEnvelope | Task] = [*EVENTS, *COMMANDS, TASK]
    for value in values:
        name = type(value.payload).__name__ if not isinstance(value, Task) else "Task"
        if name in out:
            raise ValueError(f"two golden samples named {name}")
        out[name] = value
    return out
