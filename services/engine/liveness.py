"""Liveness of the attempts a shard's instances run on workers: when each was last heard of
(a report or a heartbeat), and which have been silent longer than the heartbeat timeout.

Not part of the fold (heartbeats are not logged): each snapshot's checkpoint records when
every running attempt was last heard of, and a recovery counts on from there (see
`Shard.load`), so a worker that died shortly before an engine restart is noticed within the
heartbeat timeout plus the snapshot interval, not a whole timeout after the restart. An
attempt started after the snapshot counts from the recovery.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.domain.decider import ENGINE_WORKER
from services.domain.protocol.commands import ExpireHeartbeat
from services.domain.protocol.events import Event, StepAttemptStarted

# How often the running attempts are checked for a missed heartbeat (timeouts are seconds).
LIVENESS_SCAN_INTERVAL_US = 500_000

# (instance id, step id, attempt)
AttemptKey = tuple[str, str, int]


class Liveness:
    def __init__(self, heartbeat_timeout_s: float) -> None:
        self.heartbeat_timeout_us = int(heartbeat_timeout_s * 1_000_000)
        # Each running attempt's last report or heartbeat, in microseconds.
        self.last_seen: dict[AttemptKey, int] = {}
        self._scan_at = 0

    def track(self, iid: str, e: Event, now: int) -> None:
        """An event of instance `iid` decided at `now`: an attempt started on a worker is
        watched from now on, an attempt's other events end the watch."""
        p = e.payload
        step_id = getattr(p, "step_id", None)
        attempt = getattr(p, "attempt", None)
        if step_id is None or attempt is None:
            return  # not about an attempt (a step that ends without one)
        key = (iid, step_id, attempt)
        if isinstance(p, StepAttemptStarted) and p.worker_id != ENGINE_WORKER:
            self.last_seen[key] = now
        elif not isinstance(p, StepAttemptStarted):
            self.last_seen.pop(key, None)

    def restore(
        self, running: Iterable[AttemptKey], seen: Mapping[AttemptKey, int], now: int
    ) -> None:
        """After a recovery: watch the `running` attempts, each as heard of when the snapshot
        saw it (`seen`: its timeout counts on from there, so a worker that died before the
        restart gets no fresh grace), or from now when it started since. Heartbeats waiting
        in the unread input are read before any expiry (see Shard._due_commands)."""
        for key in running:
            self.last_seen[key] = min(seen.get(key, now), now)

    def expired(self, now: int) -> list[ExpireHeartbeat]:
        """The attempts silent longer than the timeout, each returned once (it is no longer
        watched). Scans at most every LIVENESS_SCAN_INTERVAL_US: a scan visits every running
        attempt, so not on every batch."""
        if now < self._scan_at:
            return []
        self._scan_at = now + LIVENESS_SCAN_INTERVAL_US
        limit = self.heartbeat_timeout_us
        expired: list[ExpireHeartbeat] = []
        for (iid, sid, attempt), seen in list(self.last_seen.items()):
            if now - seen > limit:
                del self.last_seen[(iid, sid, attempt)]
                expired.append(ExpireHeartbeat(iid, sid, attempt, (now - seen) / 1_000_000))
        return expired
