"""Instances, by role: `queries` (read status, steps, attempts, history), `actions` (the
instance's own actions, one table), `step_actions` (the actions on one of its steps), and
`lookups`, the reads they share (each a 404 when the thing is missing)."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.routes.instances import actions, queries, step_actions

router = APIRouter()
router.include_router(queries.router)
router.include_router(actions.router)
router.include_router(step_actions.router)
