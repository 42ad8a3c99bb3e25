-- Read models built by the projector from baton.events. Every column is a pure function of
-- the event log (timestamps are the events' occurred_at), so a rebuild from offset 0 yields
-- identical rows.

CREATE TABLE workflows (
    workflow_id     text PRIMARY KEY,
    latest_version  integer NOT NULL,
    name            text,
    description     text,
    tags            jsonb NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE workflow_versions (
    workflow_id  text NOT NULL,
    version      integer NOT NULL,
    definition   jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (workflow_id, version)
);

CREATE TABLE instances (
    instance_id      text PRIMARY KEY,
    workflow_id      text NOT NULL,
    version          integer NOT NULL,
    run              integer NOT NULL,
    status           text NOT NULL,
    initiator        text NOT NULL,
    idempotency_key  text,
    params           jsonb NOT NULL,
    failure_reason   text,
    failed_steps     jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    last_seq         integer NOT NULL
);
CREATE INDEX instances_by_workflow ON instances (workflow_id, created_at DESC);
CREATE INDEX instances_by_status ON instances (status);

CREATE TABLE steps (
    instance_id  text NOT NULL,
    step_id      text NOT NULL,
    position     integer NOT NULL,       -- order in the definition
    step_type    text NOT NULL,
    status       text NOT NULL,
    attempt      integer NOT NULL,       -- newest attempt number, 0 when none yet
    run          integer NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (instance_id, step_id)
);

CREATE TABLE attempts (
    instance_id   text NOT NULL,
    step_id       text NOT NULL,
    attempt       integer NOT NULL,
    run           integer NOT NULL,
    status        text NOT NULL,         -- AttemptStatus
    queue         text,                  -- NULL: run by the engine (sleep)
    worker_id     text,
    params        jsonb NOT NULL,
    outputs       jsonb,
    failure_kind  text,
    message       text,
    output_tail   text,
    retry_at      timestamptz,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    ended_at      timestamptz,
    PRIMARY KEY (instance_id, step_id, attempt)
);

-- The full history of every aggregate (instances and workflows), one row per event.
CREATE TABLE events (
    aggregate_id  text NOT NULL,         -- instance id, or 'workflow:<id>' for workflow events
    seq           integer NOT NULL,
    event_id      text NOT NULL,
    instance_id   text,
    workflow_id   text NOT NULL,
    type          text NOT NULL,
    occurred_at   timestamptz NOT NULL,
    payload       jsonb NOT NULL,
    PRIMARY KEY (aggregate_id, seq)
);

-- The projector's position, written in the same transaction as the rows it produced.
CREATE TABLE projector_offsets (
    projector    text NOT NULL,
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    PRIMARY KEY (projector, topic, partition)
);
