"""`baton watch`'s view: one row per step, with a loop's iterations and aligned columns."""

from __future__ import annotations

from datetime import UTC, datetime

from services.cli.watch import render

NOW = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
INSTANCE = {
    "workflow_id": "etl",
    "version": 2,
    "instance_id": "etl~1",
    "run": 1,
    "status": "IN_PROGRESS",
    "created_at": "2026-01-01T12:00:00Z",
    "ended_at": None,
}


def step(step_id: str, step_type: str, status: str, **extra: object) -> dict[str, object]:
    return {"step_id": step_id, "step_type": step_type, "status": status, "attempt": 1, **extra}


def test_a_loop_step_shows_its_iterations_and_columns_stay_aligned() -> None:
    progress = {"total": 3, "started": 3, "statuses": {"SUCCEEDED": 1, "FAILED": 1}}
    lines = render(
        INSTANCE,
        [
            step("plan", "shell", "SUCCEEDED"),
            step("each", "foreach", "RUNNING", iterations=progress),
        ],
        [],
        now=NOW,
    )
    assert lines[1].index("STATUS") == lines[2].index("SUCCEEDED") == lines[3].index("RUNNING")
    assert lines[3].endswith("iterations 2/3 ended (1 FAILED, 1 SUCCEEDED)")


def test_a_while_step_has_no_total() -> None:
    progress: dict[str, object] = {"total": None, "started": 1, "statuses": {}}
    lines = render(INSTANCE, [step("train", "while", "RUNNING", iterations=progress)], [], now=NOW)
    assert lines[2].endswith("iterations 0/? ended")
