"""The benchmark's arithmetic and report: percentiles, verdicts against DESIGN §6, peer rows."""

from __future__ import annotations

from typing import Any

from bench import report
from bench.stats import summarize


def test_percentiles_come_from_the_whole_distribution() -> None:
    s = summarize([float(i) for i in range(1, 101)])  # 1..100 ms
    assert s is not None
    assert s.n == 100
    assert abs(s.p50 - 50) < 0.1
    assert abs(s.p99 - 99) < 0.1
    assert abs(s.max - 100) < 0.1
    assert summarize([]) is None


def _results(launch_ms: float, throughput: float) -> dict[str, Any]:
    return {
        "command": "python -m bench",
        "baton": {
            "latency": {
                "step_launch_ms": [launch_ms] * 10,
                "start_api_ms": [5.0] * 10,
                "start_ms": [6.0] * 10,
            },
            "throughput": {
                "throughput_steps_per_s": throughput,
                "throughput_seconds": 60.0,
                "throughput_instances": 10,
                "concurrency": 200,
                "workers": 1,
                "projection_lag_ms": [100.0] * 10,
                "cpu_cores_by_process": {"engine": 0.4},
            },
        },
        "peers": [
            {
                "system": "peer",
                "step_launch_ms": [2 * launch_ms] * 10,
                "throughput_steps_per_s": throughput / 4,
                "queue_step_launch_ms": [4 * launch_ms] * 10,
            }
        ],
    }


def test_targets_are_judged_against_design_6() -> None:
    met = report.render(_results(8.0, 1500.0), {"cpu": "2 cores"}, "now")
    assert "| step launch p50 ≤ 10 ms | 8.0 ms | met |" in met
    assert "| throughput ≥ 1,000 step attempts/s | 1,500 /s | met |" in met
    missed = report.render(_results(12.0, 900.0), {"cpu": "2 cores"}, "now")
    assert "| step launch p50 ≤ 10 ms | 12.0 ms | **missed** |" in missed
    assert "| throughput ≥ 1,000 step attempts/s | 900 /s | **missed** |" in missed


def test_a_peer_variant_gets_its_own_row_and_ratios_read_baton_better_above_one() -> None:
    text = report.render(_results(10.0, 1000.0), {}, "now")
    rows = [line for line in text.splitlines() if line.startswith("| peer")]
    assert len(rows) == 2
    assert "| 2.0x | 4.0x |" in rows[0]  # their launch is twice ours; our throughput 4x theirs
    assert rows[1].startswith("| peer (queue: each step on a separate worker process) | 40.0")


def test_a_failed_phase_is_named_in_the_report() -> None:
    results = _results(8.0, 1500.0)
    results["baton"]["recovery"] = {"error": "TimeoutError: not within 600s"}
    assert "**Phase `recovery` failed:** `TimeoutError: not within 600s`" in report.render(
        results, {}, "now"
    )
