"""Tasks: step attempts sent to workers on `baton.tasks.<queue>`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Task:
    """Delivered at least once; a worker's reports are idempotent by (instance, step, attempt)."""

    instance_id: str
    workflow_id: str
    step_id: str
    attempt: int
    run: int
    step_type: str
    queue: str
    config: str  # JSON: the step's runtime settings (command, function …)
    params: str  # JSON: resolved params, name -> value
    timeout_seconds: float | None
    created_at: int  # UTC microseconds

    @property
    def task_id(self) -> str:
        return f"{self.instance_id}:{self.step_id}:{self.attempt}"
