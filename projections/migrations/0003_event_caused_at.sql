-- Events schema v2: when the command behind an event was issued, on its sender's clock
-- (a worker's report, an API request). Null for timers and for events older than v2.
ALTER TABLE events ADD COLUMN caused_at timestamptz;
