-- Events schema v7: breakpoints set on a workflow, for all its instances (step ids, sorted).
ALTER TABLE workflows ADD COLUMN breakpoints jsonb NOT NULL DEFAULT '[]';
