-- Events schema v8: InstanceStarted and InstanceQueued name their definition by hash; the
-- text is kept once here, and their `events` rows keep the hash.
CREATE TABLE definitions (
    hash text PRIMARY KEY,
    definition text NOT NULL
);
