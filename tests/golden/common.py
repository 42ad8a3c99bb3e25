"""What every golden sample is built from: the ids, the clock, the envelopes."""

from __future__ import annotations

from services.domain.protocol.commands import Command, CommandEnvelope
from services.domain.protocol.events import Event, EventPayload

WORKFLOW = "etl.daily-sales"
INSTANCE = "etl.daily-sales:7f3c2a9e"
T0 = 1_763_750_400_000_000  # 2025-11-21T18:40:00Z in UTC microseconds
SECOND = 1_000_000
DEFINITION = (
    '{"id":"etl.daily-sales","steps":[{"id":"extract","type":"shell",'
    '"command":"./extract.sh"},{"id":"wait","type":"sleep","duration":30},'
    '{"id":"load","type":"python","function":"etl.load:main","after":["extract","wait"]}],'
    '"timeout":3600}'
)
PARAMS = '{"date":"2025-11-20","region":"eu-west"}'


def event(
    seq: int, payload: EventPayload, *, instance: bool = True, caused_at: int | None = None
) -> Event:
    aggregate = INSTANCE if instance else WORKFLOW
    return Event(
        event_id=f"{aggregate}:{seq}",
        instance_id=INSTANCE if instance else None,
        workflow_id=WORKFLOW,
        seq=seq,
        occurred_at=T0 + seq * 1_250,
        payload=payload,
        caused_at=caused_at,
    )


def command(n: int, payload: Command) -> CommandEnvelope:
    return CommandEnvelope(
        command_id=f"cmd-01JD{n:04d}",
        issued_at=T0 - 500 + n,
        payload=payload,
    )
