-- Events schema v5: loops. A step row of a foreach or while step carries its iterations'
-- progress ({total, started, statuses}); an instance row names the instance and step it is
-- a child of (a subworkflow's child, or a loop's iteration), so listings can leave them out.
ALTER TABLE steps ADD COLUMN iterations jsonb;
ALTER TABLE instances ADD COLUMN parent_instance_id text;
ALTER TABLE instances ADD COLUMN parent_step_id text;
CREATE INDEX instances_by_parent ON instances (parent_instance_id, created_at)
    WHERE parent_instance_id IS NOT NULL;
