-- Events schema v6: signals. Every signal received, by name and number; a step row of a
-- step with signal dependencies carries its wait ({dependencies, matched}).
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
