"""Signals: send one (the engine records it once per request id and wakes the steps waiting
for it), and list those received."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from services.api import problems
from services.api.common import canonical_json, page, publish, row_dict
from services.api.deps import Codec, Pool, Producer
from services.api.dto import (
    DEFAULT_PAGE,
    Page,
    SignalAccepted,
    SignalCreate,
    SignalPublic,
)
from services.api.inputs import Limit, Offset, SignalNameFilter
from services.domain.language.signal_specs import MAX_SIGNAL_PAYLOAD_BYTES
from services.domain.protocol.commands import SendSignal

router = APIRouter(prefix="/signals", tags=["signals"])


@router.post(
    "",
    status_code=202,
    summary="Send a signal: steps waiting for one that matches start",
)
async def send_signal(producer: Producer, codec: Codec, req: SignalCreate) -> SignalAccepted:
    """Accepted once the command is on the log. Without a `request_id` the signal gets a new
    one (no dedup); with one, sending it again changes nothing."""
    try:
        payload = canonical_json(req.payload)
    except ValueError as err:  # NaN or infinity: not JSON
        raise problems.invalid_input([("payload", str(err))], "payload") from None
    if len(payload) > MAX_SIGNAL_PAYLOAD_BYTES:
        raise problems.invalid_input(
            [("payload", f"at most {MAX_SIGNAL_PAYLOAD_BYTES} bytes as JSON, not {len(payload)}")],
            "payload",
        )
    request_id = req.request_id or uuid.uuid4().hex
    command = SendSignal(
        signal_name=req.name,
        request_id=request_id,
        params=canonical_json(req.params),
        payload=payload,
        sender=f"api:{req.sender}",
    )
    command_id = await publish(producer, codec, command)
    return SignalAccepted(name=req.name, request_id=request_id, command_id=command_id)


@router.get("", summary="List received signals, newest first")
async def list_signals(
    pool: Pool,
    name: SignalNameFilter = None,
    limit: Limit = DEFAULT_PAGE,
    offset: Offset = 0,
) -> Page[SignalPublic]:
    rows = await pool.fetch(
        "SELECT signal_name AS name, signal_seq, request_id, params, payload, sender, woken,"
        " received_at FROM signals WHERE ($1::text IS NULL OR signal_name = $1)"
        " ORDER BY received_at DESC, signal_name, signal_seq DESC LIMIT $2 OFFSET $3",
        name,
        limit + 1,
        offset,
    )
    items = [row_dict(r, "params", "payload") for r in rows]
    return Page[SignalPublic].model_validate(page(items, limit, offset))
