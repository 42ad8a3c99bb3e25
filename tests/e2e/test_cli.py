"""The `baton` CLI end to end, against the real processes: push and validate YAML, start with
params, act on a step, send a signal that wakes a waiting step, watch to the end, read the
instance, and choose the active version. Each command runs as its own process, as a user
types it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.adapters.settings import Settings
from tests.e2e.client import Baton, baton_cli, unique
from tests.helpers import wait_until_async

pytestmark = pytest.mark.e2e


async def test_a_workflow_driven_by_the_cli_alone(
    baton: Baton, settings: Settings, tmp_path: Path
) -> None:
    wid, signal = unique("cli"), unique("cli_ready")
    definition = {
        "id": wid,
        "params": {"rows": {"type": "long", "value": 1}},
        "steps": [
            {
                "id": "wait",
                "type": "noop",
                "signal_dependencies": [
                    {"name": signal, "match": {"rows": {"type": "long", "expression": "rows"}}}
                ],
                "next": ["last"],
            },
            {"id": "last", "type": "noop"},
        ],
    }
    good = tmp_path / "wf.yaml"
    good.write_text(yaml.safe_dump(definition))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({**definition, "steps": [{"id": "a", "type": "noop", "next": ["zz"]}]})
    )

    out = await baton_cli(settings, "validate", str(bad), exit_code=1)
    assert "steps[0].next[0]: unknown step 'zz'" in out
    assert await baton_cli(settings, "validate", str(good)) == f"{good}: valid\n"
    assert await baton_cli(settings, "push", str(good)) == f"{good}: {wid} version 1\n"

    iid = (await baton_cli(settings, "start", wid, "-p", "rows=7")).strip()
    await baton.wait_step(iid, "wait", "WAITING_FOR_SIGNALS")
    out = await baton_cli(settings, "step", "pause", iid, "last")
    assert out.startswith(f"pause {iid}/last: accepted")
    await baton.wait_until_reason(iid, "last", "breakpoint set")

    # A signal that does not match (rows 6) wakes nothing; rows 7 does.
    await baton_cli(settings, "signal", signal, "-p", "rows=6")
    out = await baton_cli(settings, "signal", signal, "-p", "rows=7", "--payload", '{"path":"x"}')
    assert out.startswith(f"signal {signal}: accepted")

    async def both_listed() -> bool:
        return len((await baton_cli(settings, "signals", "--name", signal)).splitlines()) == 2

    await wait_until_async(both_listed, timeout=30, message="baton signals lists both")
    await baton.wait_step(iid, "last", "PAUSED")

    await baton_cli(settings, "step", "resume", iid, "last")
    assert "SUCCEEDED" in await baton_cli(settings, "watch", iid)
    status = await baton_cli(settings, "status", iid)
    assert "SUCCEEDED" in status and "last" in status
    events = await baton_cli(settings, "events", iid)
    assert "StepSignalMatched" in events and "StepPaused" in events
    listed = await baton_cli(settings, "instances", "--workflow", wid)
    assert iid in listed

    await baton_cli(settings, "deactivate", wid)

    async def shows(text: str) -> bool:
        return any(
            wid in line and text in line
            for line in (await baton_cli(settings, "workflows")).splitlines()
        )

    await wait_until_async(lambda: shows("no active version"), timeout=30, message="deactivated")
    await baton_cli(settings, "activate", wid, "--version", "1")
    await wait_until_async(lambda: shows("active v1"), timeout=30, message="activated again")

    # A bad request is a problem printed one fault per line, and a non-zero exit.
    out = await baton_cli(settings, "start", wid, "-p", "rows=many", exit_code=1)
    assert "rows" in out
