-- Events schema v3: a workflow's active version (WorkflowActivated, WorkflowDeactivated). Null
-- for a workflow never activated (pushed before v3, or deactivated): `default` then means the
-- latest version. Not filled from latest_version: the read model is what the log says.
ALTER TABLE workflows ADD COLUMN active_version int4;
