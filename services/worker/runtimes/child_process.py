"""Child processes of steps: run one in its own process group, keep the tail of its output,
and make sure nothing it started outlives it (a timeout or a worker shutdown kills the group).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass

OUTPUT_TAIL_CHARS = 4_096
# Bytes of output kept while a step runs: a little more than the tail, so multi-byte
# characters cut at the front still leave OUTPUT_TAIL_CHARS whole characters.
_KEEP_BYTES = OUTPUT_TAIL_CHARS * 4
_READ_CHUNK = 64 * 1024
# After the step's process exits, how long its output pipe may stay open (a straggler
# holding it) before the tail is taken as it is.
_DRAIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class ChildExit:
    """How a step's process ended, and the tail of what it printed."""

    returncode: int
    timed_out: bool
    output_tail: str


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _keep_tail(stream: asyncio.StreamReader, tail: bytearray) -> None:
    while chunk := await stream.read(_READ_CHUNK):
        tail += chunk
        if len(tail) > _KEEP_BYTES:
            del tail[: len(tail) - _KEEP_BYTES]


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    try:
        stdin.write(data)
        await stdin.drain()
        stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the step does not read its input; that is its business


async def run_process(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    stdin: bytes | None,
    timeout: float | None,
) -> ChildExit:
    """Run ``argv`` in a new session (its own process group), stdout and stderr merged.

    At the deadline, or on cancellation, the whole process group is killed with SIGKILL; once
    the main process has exited, whatever it left running in its group is killed too, so a
    step's processes never outlive it.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
    )
    assert proc.stdout is not None
    tail = bytearray()
    reader = asyncio.ensure_future(_keep_tail(proc.stdout, tail))
    feeder = None
    if stdin is not None:
        assert proc.stdin is not None
        feeder = asyncio.ensure_future(_feed(proc.stdin, stdin))
    timed_out = False
    try:
        try:
            returncode = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
            _kill_group(proc.pid)
            returncode = await proc.wait()
        _kill_group(proc.pid)
        await asyncio.wait((reader,), timeout=_DRAIN_SECONDS)
    finally:
        if proc.returncode is None:
            _kill_group(proc.pid)  # cancelled: the worker is shutting down
        for helper in (reader, feeder):
            if helper is not None and not helper.done():
                helper.cancel()
    # Bytes that are not UTF-8 become U+FFFD, and so does a NUL (printf '\0'): it is valid
    # UTF-8, but PostgreSQL's text cannot hold it, and the tail is stored with the attempt.
    text = tail.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return ChildExit(returncode, timed_out, text[-OUTPUT_TAIL_CHARS:])
