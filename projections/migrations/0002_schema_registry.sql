-- The Avro schemas of the three topics' values, served by the API as the read side of a
-- Confluent schema registry. Ids are derived from the schemas (services/adapters/avro.py), so
-- rebuilding this table from the schema files yields the same ids.

CREATE TABLE schema_registry (
    id       integer PRIMARY KEY,
    subject  text    NOT NULL,
    version  integer NOT NULL,
    schema   text    NOT NULL,
    UNIQUE (subject, version)
);
