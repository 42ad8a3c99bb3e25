-- Events schema v3: a step can end without an attempt (UNSATISFIED, INTERNALLY_FAILED when a
-- param or condition cannot be evaluated). The reason is what the API shows for it.
ALTER TABLE steps ADD COLUMN reason text;
