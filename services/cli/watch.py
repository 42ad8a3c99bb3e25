"""`baton watch`: a live table of an instance's steps, redrawn until the instance ends."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from services.cli.client import Client

POLL_SECONDS = 0.2
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "TIMED_OUT"})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _seconds(start: datetime | None, end: datetime | None, now: datetime) -> str:
    if start is None:
        return ""
    seconds = max(0.0, ((end or now) - start).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def render(
    instance: dict[str, Any],
    steps: list[dict[str, Any]],
    attempts: list[dict[str, Any]],
    now: datetime | None = None,
) -> list[str]:
    """The lines of the view: a header, then one row per step (status, attempt, elapsed)."""
    now = now or datetime.now(UTC)
    newest: dict[str, dict[str, Any]] = {}
    for att in attempts:
        step_id = att["step_id"]
        if att["run"] == instance["run"] and att["attempt"] >= newest.get(step_id, att)["attempt"]:
            newest[step_id] = att
    elapsed = _seconds(_time(instance["created_at"]), _time(instance.get("ended_at")), now)
    lines = [
        f"{instance['workflow_id']} v{instance['version']}  {instance['instance_id']}  "
        f"run {instance['run']}  {instance['status']}  {elapsed}"
    ]
    width = max([4, *(len(s["step_id"]) for s in steps)])
    kind = max([4, *(len(s["step_type"]) for s in steps)])
    lines.append(f"  {'STEP':<{width}}  {'TYPE':<{kind}}  {'STATUS':<20}  {'TRY':>3}  ELAPSED")
    for s in steps:
        a = newest.get(s["step_id"])
        took = ""
        if a is not None:
            start = _time(a.get("started_at")) or _time(a["created_at"])
            took = _seconds(start, _time(a.get("ended_at")), now)
        attempt = str(s["attempt"]) if s["attempt"] else "-"
        reason = f"  {s['reason']}" if s.get("reason") and a is None else ""
        progress = s.get("iterations")
        if progress:
            total = "?" if progress["total"] is None else progress["total"]
            ended = sum(progress["statuses"].values())
            counts = ", ".join(
                f"{n} {status}" for status, n in sorted(progress["statuses"].items())
            )
            reason += f"  iterations {ended}/{total} ended" + (f" ({counts})" if counts else "")
        lines.append(
            f"  {s['step_id']:<{width}}  {s['step_type']:<{kind}}  {s['status']:<20}  "
            f"{attempt:>3}  {took}{reason}"
        )
    if instance.get("failure_reason"):
        lines.append(f"  failure: {instance['failure_reason']}")
    return lines


def watch(client: Client, instance_id: str, out: TextIO = sys.stdout) -> str:
    """Redraw every 200 ms until the instance is terminal; returns its final status.

    On a terminal the view redraws in place; otherwise a new view is printed only when a
    status or attempt changes, so logs stay readable."""
    tty = out.isatty()
    instance = client.get(f"/instances/{instance_id}", wait_seconds=10)
    drawn = 0
    last_key: object = None
    while True:
        steps = client.get(f"/instances/{instance_id}/steps")
        attempts = client.get(f"/instances/{instance_id}/attempts")
        lines = render(instance, steps, attempts)
        if tty:
            if drawn:
                out.write(f"\x1b[{drawn}F\x1b[J")
            out.write("\n".join(lines) + "\n")
            drawn = len(lines)
        else:
            key = (instance["status"], [(s["status"], s["attempt"]) for s in steps])
            if key != last_key:
                out.write("\n".join(lines) + "\n\n")
                last_key = key
        out.flush()
        if instance["status"] in TERMINAL:
            return str(instance["status"])
        time.sleep(POLL_SECONDS)
        instance = client.get(f"/instances/{instance_id}")
