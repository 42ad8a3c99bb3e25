"""Golden samples of schema version 6: signals (see samples.py for the rules)."""

from __future__ import annotations

from services.domain.protocol.commands import (
    AwaitSignal,
    BypassSignals,
    CancelSignalWait,
    CommandEnvelope,
    DeliverSignal,
    SendSignal,
    SetSignalTriggers,
    TriggerInstance,
)
from services.domain.protocol.events import (
    Event,
    SignalAwaited,
    SignalReceived,
    SignalTriggersSet,
    SignalWaitCancelled,
    StepSignalMatched,
    StepSignalsBypassed,
    StepWaitingForSignals,
    TimeTriggerFired,
    TimeTriggerScheduled,
)
from tests.golden.common import INSTANCE, SECOND, T0, WORKFLOW, command, event

SIGNAL = "table_ready"
MATCH = '[["date",">=","2025-11-20"],["table","=","sales"]]'
SIGNAL_PARAMS = '{"date":"2025-11-21","rows":18234,"table":"sales"}'


def _signal_event(
    seq: int, payload: SignalReceived | SignalAwaited | SignalWaitCancelled | SignalTriggersSet
) -> Event:
    return Event(
        event_id=f"signal:{SIGNAL}:{seq}",
        instance_id=None,
        workflow_id="",
        seq=seq,
        occurred_at=T0 + seq * 1_250,
        payload=payload,
        caused_at=T0,
        signal_name=SIGNAL,
    )


EVENTS_V6: tuple[Event, ...] = (
    event(
        23,
        StepWaitingForSignals(
            step_id="load", run=1, dependencies=f'[{{"match":{MATCH},"name":"{SIGNAL}"}}]'
        ),
    ),
    event(
        24,
        StepSignalMatched(
            step_id="load", index=0, signal_name=SIGNAL, signal_seq=42, params=SIGNAL_PARAMS
        ),
    ),
    event(25, StepSignalsBypassed(step_id="load", reason="the table was loaded by hand")),
    _signal_event(1, SignalAwaited(INSTANCE, "load", 23, 0, MATCH)),
    _signal_event(
        2,
        SignalReceived(
            signal_seq=42,
            request_id="ingest-2025-11-21-sales",
            params=SIGNAL_PARAMS,
            payload='{"path":"s3://lake/sales/2025-11-21"}',
            sender="api:alice",
            woken=f'[["{INSTANCE}","load",23,0]]',
            started=f'[["{WORKFLOW}",0,"{WORKFLOW}~5f0c9e2b7d4a41a8b1e3c6d9f2a7b4e1",null]]',
        ),
    ),
    _signal_event(3, SignalWaitCancelled(INSTANCE, "load", 23)),
    _signal_event(4, SignalTriggersSet(WORKFLOW, f'[[0,{MATCH},["date"]]]')),
    event(
        4,
        TimeTriggerScheduled(
            version=3, index=0, scheduled_for=T0 + 3600 * SECOND, fire_at=T0 + 3_642 * SECOND
        ),
        instance=False,
    ),
    event(
        5,
        TimeTriggerFired(
            version=3,
            index=0,
            scheduled_for=T0 + 3600 * SECOND,
            instance_id=f"{WORKFLOW}~0d4f1c8a9b2e47f3a6c5d8e1b0f9a2c7",
            next_scheduled_for=T0 + 90_000 * SECOND,
            next_fire_at=T0 + 90_017 * SECOND,
        ),
        instance=False,
    ),
)

COMMANDS_V6: tuple[CommandEnvelope, ...] = (
    command(40, BypassSignals(instance_id=INSTANCE, step_id="load", reason="loaded by hand")),
    command(41, DeliverSignal(INSTANCE, "load", 23, 0, SIGNAL, 42, SIGNAL_PARAMS)),
    command(
        42,
        SendSignal(
            signal_name=SIGNAL,
            request_id="ingest-2025-11-21-sales",
            params=SIGNAL_PARAMS,
            payload='{"path":"s3://lake/sales/2025-11-21"}',
            sender="api:alice",
        ),
    ),
    command(43, AwaitSignal(SIGNAL, INSTANCE, "load", 23, 0, MATCH)),
    command(44, CancelSignalWait(SIGNAL, INSTANCE, "load", 23)),
    command(
        45,
        TriggerInstance(
            WORKFLOW,
            f"{WORKFLOW}~5f0c9e2b7d4a41a8b1e3c6d9f2a7b4e1",
            SIGNAL_PARAMS,
            f"signal:{SIGNAL}#42",
        ),
    ),
    command(46, SetSignalTriggers(SIGNAL, WORKFLOW, f'[[0,{MATCH},["date"]]]')),
)
