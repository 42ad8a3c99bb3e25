"""NUL characters on the real processes: a definition holding one is refused at push, and a
step that prints one or writes one into its outputs ends as a failure the read models can
show — before, each of them stopped the projector, and nothing was projected after it."""

from __future__ import annotations

import pytest

from services.cli.stack import Stack
from tests.e2e.client import Baton, unique

pytestmark = pytest.mark.e2e


async def test_a_definition_holding_a_nul_is_refused_at_push(baton: Baton) -> None:
    wid = unique("nul")
    refused = await baton.http.post(
        "/workflows",
        content=f'{{"id": "{wid}", "description": "a\\u0000b", "steps": [{{"id": "a", "type": "noop"}}]}}',
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == [
        {"path": "description", "message": "a string may not hold a NUL character"}
    ]
    assert (await baton.http.get(f"/workflows/{wid}")).status_code == 404


async def test_steps_writing_nul_characters_never_stop_the_projector(
    baton: Baton, stack: Stack
) -> None:
    projector = stack.pid("projector")
    assert projector is not None
    wid = unique("nul-tail")
    once = {"user_limit": 0}
    await baton.push(
        {
            "id": wid,
            "steps": [
                {
                    "id": "prints",
                    "type": "shell",
                    "command": r"printf 'before\000after'; exit 1",
                    "retry_policy": once,
                },
            ],
        }
    )
    iid = await baton.start(wid)
    await baton.wait_status(iid, "FAILED")
    [attempt] = await baton.attempts(iid, "prints")
    assert "before\ufffdafter" in attempt["output_tail"], attempt

    outs = unique("nul-outputs")
    command = r"""printf '{"note": "a\\u0000b"}' > "$BATON_OUTPUTS" """
    await baton.push(
        {
            "id": outs,
            "steps": [{"id": "w", "type": "shell", "command": command, "retry_policy": once}],
        }
    )
    iid = await baton.start(outs)
    await baton.wait_status(iid, "FAILED")
    [attempt] = await baton.attempts(iid, "w")
    assert attempt["message"] == "outputs.note: a string may not hold a NUL character", attempt

    # The projector that saw all this is the one that started, and it still projects.
    ok = unique("after-nul")
    await baton.push({"id": ok, "steps": [{"id": "a", "type": "noop"}]})
    await baton.wait_status(await baton.start(ok), "SUCCEEDED")
    assert stack.pid("projector") == projector
    assert not stack.exited(), stack.exited()
