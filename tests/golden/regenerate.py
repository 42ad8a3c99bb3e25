"""Write ``tests/golden/wire/<Type>.bin`` for each golden sample that has none yet.

Existing files are never overwritten: they are what older writers produced, and today's codec
must keep reading them. ``--force`` rewrites them all (only when a format break is intended).
"""

from __future__ import annotations

import sys
from pathlib import Path

from services.adapters.avro import Codec
from services.domain.protocol.commands import CommandEnvelope
from services.domain.protocol.events import Event
from services.domain.protocol.tasks import Task
from tests.golden.samples import golden

WIRE_DIR = Path(__file__).resolve().parent / "wire"


def encode(codec: Codec, value: Event | CommandEnvelope | Task) -> bytes:
    if isinstance(value, Event):
        return codec.encode_event(value)
    if isinstance(value, CommandEnvelope):
        return codec.encode_command(value)
    return codec.encode_task(value)


def main(argv: list[str]) -> int:
    force = "--force" in argv
    codec = Codec()
    WIRE_DIR.mkdir(exist_ok=True)
    for name, value in golden().items():
        path = WIRE_DIR / f"{name}.bin"
        if path.exists() and not force:
            continue
        path.write_bytes(encode(codec, value))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
