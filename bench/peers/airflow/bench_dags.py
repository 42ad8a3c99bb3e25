"""The Airflow peer's DAGs: a chain of 20 no-op tasks and a fan-out of 100 between `fan` and
`join`. run.py copies this file into the benchmark's dags folder; BENCH_TRACE names the trace
file and BENCH_PEERS_DIR the folder holding peer_common.py (both set by run.py for every
Airflow process, so the task processes inherit them)."""

from __future__ import annotations

import os
import sys
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, chain

sys.path.insert(0, os.environ.get("BENCH_PEERS_DIR", "."))
from peer_common import CHAIN_STEPS, FANOUT_WIDTH, Trace, noop_step

TRACE = Trace(os.environ.get("BENCH_TRACE", "trace.txt"))
# Runs and tasks per run are bounded by the closed loop (50 runs) and the fan-out (100 tasks),
# not by Airflow's per-DAG defaults (16 and 16).
LIMITS: dict[str, Any] = {"schedule": None, "catchup": False, "max_active_runs": 64}


def step(**context: Any) -> None:
    """The instance is the dag run id; the step is the task id."""
    noop_step(TRACE, context["run_id"], context["ti"].task_id)


def _task(name: str) -> PythonOperator:
    return PythonOperator(task_id=name, python_callable=step, retries=0)


with DAG("bench_chain20", max_active_tasks=CHAIN_STEPS, **LIMITS):
    chain(*[_task(f"s{i}") for i in range(CHAIN_STEPS)])

with DAG("bench_fanout100", max_active_tasks=FANOUT_WIDTH + 2, **LIMITS):
    _task("fan") >> [_task(f"p{i}") for i in range(FANOUT_WIDTH)] >> _task("join")
