-- Events schema v6: signals and triggers. Every signal received, by name and number; a step
-- row of a step with signal dependencies carries its wait ({dependencies, matched}); a
-- workflow row, its active version's time triggers (next times, firings so far).
CREATE TABLE signals (
    signal_name  text        NOT NULL,
    signal_seq   int8        NOT NULL,
    request_id   text        NOT NULL,
    params       jsonb       NOT NULL,
    payload      jsonb       NOT NULL,
    sender       text        NOT NULL,
    woken        int4        NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (signal_name, signal_seq)
);
CREATE INDEX signals_by_time ON signals (received_at);
ALTER TABLE steps ADD COLUMN signals jsonb;
ALTER TABLE workflows ADD COLUMN time_triggers jsonb NOT NULL DEFAULT '[]';
