"""Runs each peer workflow system's benchmark in its own virtualenv and collects the results.

Every peer lives in `bench/peers/<name>/` with a pinned `requirements.txt`, an optional
`setup.sh` and a `run.py` that starts the peer's own servers, runs the shared workloads and
writes one result file (`peer_common.write_result`). The driver never imports a peer: a peer's
dependencies (Temporal's SDK, DBOS, Airflow...) must not leak into Baton's .venv, and a peer
that hangs or crashes must not take the others down. So each one is a subprocess in its own
process group, with a deadline, and a failure becomes a result with `errors` and a log tail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS_DIR = Path(__file__).resolve().parent
STAMP = ".baton-peer-stamp"  # inside the venv: hash of what it was built from
LOG_TAIL_LINES = 60


@dataclass(frozen=True)
class Sizes:
    """Workload sizes, passed through to every peer's run.py unchanged."""

    chains: int = 20
    fanouts: int = 5
    throughput_seconds: int = 60
    concurrency: int = 50
    quick: bool = False

    def argv(self) -> list[str]:
        args = [
            "--chains",
            str(self.chains),
            "--fanouts",
            str(self.fanouts),
            "--throughput-seconds",
            str(self.throughput_seconds),
            "--concurrency",
            str(self.concurrency),
        ]
        return [*args, "--quick"] if self.quick else args

    def deadline_s(self) -> float:
        """Generous: servers' cold start, every workload at several seconds per instance, and
        teardown. A peer that needs more than this is reported as timed out, not waited on."""
        if self.quick:
            return 600.0
        return 600.0 + 2 * self.throughput_seconds + 20.0 * self.chains + 60.0 * self.fanouts


def available_peers() -> list[str]:
    return sorted(p.name for p in PEERS_DIR.iterdir() if (p / "run.py").is_file())


def _stamp_of(peer_dir: Path) -> str:
    """What the venv depends on: the pinned requirements and the setup script."""
    h = hashlib.sha256()
    for name in ("requirements.txt", "setup.sh"):
        f = peer_dir / name
        h.update(name.encode() + b"\0" + (f.read_bytes() if f.is_file() else b"") + b"\0")
    return h.hexdigest()


def _python311() -> str:
    # Peers get a plain CPython 3.11 venv, never one nested from Baton's .venv.
    found = shutil.which("python3.11")
    return found if found else sys.executable


def _run_logged(cmd: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def ensure_venv(peer_dir: Path, workdir: Path, log: Path) -> Path:
    """`<workdir>/venv` with the peer's pinned requirements; rebuilt only when they change."""
    venv = workdir / "venv"
    stamp = _stamp_of(peer_dir)
    stamp_file = venv / STAMP
    if stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        return venv
    if venv.exists():
        # A venv built from other pins may hold packages the new pins would not remove.
        shutil.rmtree(venv)
    _run_logged([_python311(), "-m", "venv", str(venv)], log, workdir)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    req = peer_dir / "requirements.txt"
    if req.is_file():
        _run_logged([*pip, "install", "-q", "-r", str(req)], log, workdir)
    setup = peer_dir / "setup.sh"
    if setup.is_file():
        env = {**os.environ, "VENV": str(venv)}
        _run_logged(["bash", str(setup)], log, workdir, env=env)
    stamp_file.write_text(stamp + "\n")
    return venv


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float = 60.0) -> None:
    """SIGTERM the peer's process group, then SIGKILL. The grace is long because a peer's
    run.py reacts to SIGTERM by stopping the servers it started (they run in sessions of their
    own, out of reach of this group) and writing its partial result."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # Whatever is left: the leader if it ignored SIGTERM, or children it did not stop.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not log.is_file():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _failed(name: str, error: str, log: Path) -> dict[str, Any]:
    return {"system": name, "errors": [error], "log_tail": _log_tail(log)}


def run_peer(name: str, pg_url: str | None, sizes: Sizes, workroot: Path) -> dict[str, Any]:
    """Set up and run one peer; always returns a result dict (with `errors` on failure)."""
    peer_dir = PEERS_DIR / name
    workdir = (workroot / name).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "run.log"
    log.write_text(f"# peer {name}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
    try:
        venv = ensure_venv(peer_dir, workdir, log)
    except subprocess.CalledProcessError as e:
        return _failed(name, f"venv setup failed: {e}", log)

    data = workdir / "data"
    if data.exists():
        shutil.rmtree(data)  # each run starts from empty server state
    data.mkdir()
    result_file = workdir / "result.json"
    result_file.unlink(missing_ok=True)
    cmd = [
        str(venv / "bin" / "python"),
        str(peer_dir / "run.py"),
        "--out",
        str(result_file),
        "--workdir",
        str(data),
        *(["--pg-url", pg_url] if pg_url else []),
        *sizes.argv(),
    ]
    started = time.monotonic()
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        # Own session = own process group, so the deadline can kill the servers it started too.
        proc = subprocess.Popen(
            cmd, cwd=data, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=sizes.deadline_s())
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            _kill_group(proc)
    elapsed = round(time.monotonic() - started, 1)

    if result_file.is_file():
        result: dict[str, Any] = json.loads(result_file.read_text())
    elif rc is None:
        result = _failed(name, f"timed out after {sizes.deadline_s():.0f} s", log)
    else:
        result = _failed(name, f"run.py exited {rc} without a result", log)
    if rc is None and result_file.is_file():
        result.setdefault("errors", []).append(f"timed out after {sizes.deadline_s():.0f} s")
    elif rc not in (0, None):
        result.setdefault("errors", []).append(f"run.py exited {rc}")
        result.setdefault("log_tail", _log_tail(log))
    result.update(peer=name, wall_s=elapsed, log=str(log))
    return result


def run_peers(
    names: list[str] | None,
    pg_url: str | None,
    sizes: Sizes,
    out: Path,
    workroot: Path,
) -> list[dict[str, Any]]:
    """Run the named peers (all by default) one after another, so none competes with another
    for the two cores, and write the combined list to `out` after each one."""
    results: list[dict[str, Any]] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in names or available_peers():
        if not (PEERS_DIR / name / "run.py").is_file():
            results.append({"system": name, "peer": name, "errors": ["no such peer"]})
            continue
        print(f"peers: {name} ...", file=sys.stderr, flush=True)
        result = run_peer(name, pg_url, sizes, workroot)
        print(f"peers: {name}: {summary(result)}", file=sys.stderr, flush=True)
        results.append(result)
        out.write_text(json.dumps(results, indent=1))
    out.write_text(json.dumps(results, indent=1))
    return results


def _p(values: Any, q: float) -> str:
    if not isinstance(values, list) or not values:
        return "-"
    s = sorted(float(v) for v in values)
    return f"{s[min(len(s) - 1, int(q * len(s)))]:.1f}"


def summary(result: dict[str, Any]) -> str:
    """One line: p50/p99 of each latency in ms, throughput, and how many errors."""
    parts = [
        f"{key.removesuffix('_ms')} {_p(result.get(key), 0.5)}/{_p(result.get(key), 0.99)}"
        for key in ("step_launch_ms", "start_ms", "chain20_ms", "fanout100_ms")
    ]
    tput = result.get("throughput_steps_per_s")
    parts.append(f"tput {tput:.0f}/s" if isinstance(tput, int | float) else "tput -")
    parts.append(f"errors {len(result.get('errors') or [])}")
    return ", ".join(parts)
