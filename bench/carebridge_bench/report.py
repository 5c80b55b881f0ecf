"""Everything shown or written after a run, rendered from the run's JSON document alone, so
``python -m carebridge_bench report <file>`` redraws any earlier run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from carebridge_bench.config import (
    EMAIL_P99_LIMIT_MS,
    EMAIL_P99_TARGET_MS,
    EMAIL_P99_TARGET_RATE,
    RSS_TARGET_MB,
    SATURATION_TARGET,
    STAGE_RATIO_TARGET,
    STAGE_VS_MINIMAL_TARGET,
    SYSTEM_CPU_MS_PER_JOURNEY_TARGET,
)
from carebridge_bench.timeline import TARGET_STAGE
from carebridge_contracts.services import SERVICES

END_TO_END = "end to end: assessment -> confirmation email"
README_START = "<!-- bench-table:start -->"
README_END = "<!-- bench-table:end -->"

Report = dict[str, Any]
# Processes whose CPU is not the system's: the bench's own load generator and the SMTP sink.
GENERATOR = "load generator"
NOT_THE_SYSTEM = frozenset({GENERATOR, "smtp sink"})
PIPELINES = {
    "baseline": "raw aiokafka loop",
    "minimal": "minimal exactly-once loop",
    "stage": "carebridge stage",
}


def fmt(value: object, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _stage(step: dict[str, Any], name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = step["stages_ms"].get(name)
    return found


def _step_at(report: Report, rate: float) -> dict[str, Any] | None:
    steps = (report.get("journeys") or {}).get("steps", [])
    return next((s for s in steps if s["offered_per_s"] == rate), None)


def confirmed_journeys(report: Report) -> int:
    return sum(s["confirmed"] for s in (report.get("journeys") or {}).get("steps", []))


def _system_ms(cpu: dict[str, float], journeys: int) -> float | None:
    if not cpu or not journeys:
        return None
    system = sum(float(seconds) for name, seconds in cpu.items() if name not in NOT_THE_SYSTEM)
    return round(system * 1000 / journeys, 2)


def _cpu_step(report: Report) -> dict[str, Any] | None:
    """The step CPU per journey is read at: the busiest that kept up (idle CPU weighs least
    there; the slow first steps would count it per few journeys), else the last."""
    journeys = report.get("journeys") or {}
    steps = [s for s in journeys.get("steps", []) if s.get("cpu_seconds") and s["confirmed"]]
    within = journeys.get("highest_rate_within_limit")
    chosen = [s for s in steps if s["offered_per_s"] == within] or steps[-1:]
    return chosen[0] if chosen else None


def system_cpu_ms_per_journey(report: Report) -> float | None:
    """CPU of the services, Kafka and PostgreSQL per confirmed journey at `_cpu_step`, idle
    cost included; the whole sweep when steps carry no CPU figures (older runs)."""
    step = _cpu_step(report)
    if step is not None:
        return _system_ms(step["cpu_seconds"], step["confirmed"])
    return _system_ms(report.get("cpu_seconds_under_load") or {}, confirmed_journeys(report))


def cpu_per_journey(report: Report) -> dict[str, Any] | None:
    """The CPU per journey at `_cpu_step`, split: what the system burns per second with no load
    (measured before the sweep) times the step's window, spread over its journeys, and the
    rest, which the journeys themselves cost; the load generator's beside them."""
    step = _cpu_step(report)
    if step is None:
        return None
    cpu, confirmed = step["cpu_seconds"], step["confirmed"]
    # the idle reading after the sweep, when there is one: before it Kafka is still warming up
    idle_reading = report.get("idle_cpu_ms_per_s_after_sweep") or report.get("idle_cpu_ms_per_s")
    idle = {k: v for k, v in (idle_reading or {}).items() if k in cpu}
    window = float(step.get("cpu_window_s") or 0.0)
    system_idle_per_s = sum(v for k, v in idle.items() if k not in NOT_THE_SYSTEM)
    total = _system_ms(cpu, confirmed)
    idle_share = round(system_idle_per_s * window / confirmed, 2) if idle and window else None
    generator = cpu.get(GENERATOR)
    return {
        "offered_per_s": step["offered_per_s"],
        "confirmed": confirmed,
        "window_s": window or None,
        "system_ms": total,
        "system_idle_ms_per_s": round(system_idle_per_s, 1) if idle else None,
        "system_idle_share_ms": idle_share,
        "system_less_idle_ms": (
            None if total is None or idle_share is None else round(total - idle_share, 2)
        ),
        "load_generator_ms": None if generator is None else round(generator * 1000 / confirmed, 2),
        "by_process_ms": {k: round(v * 1000 / confirmed, 2) for k, v in sorted(cpu.items())},
        "idle_ms_per_s": idle or None,
    }


def _ratio_median(throughput: dict[str, Any] | None, key: str) -> float | None:
    if not throughput:
        return None
    found = throughput.get(key)
    if isinstance(found, dict):
        median = found.get("median")
        return None if median is None else float(median)
    if key == "stage_vs_raw":  # runs before the fair bench kept one ratio
        ratio = throughput.get("ratio")
        return None if ratio is None else float(ratio)
    return None


def headline(report: Report) -> dict[str, float | None]:
    """The four figures of issue 16, under keys any tool can read."""
    throughput = report.get("throughput")
    journeys = report.get("journeys") or {}
    return {
        "stage_vs_minimal": _ratio_median(throughput, "stage_vs_minimal"),
        "stage_vs_raw": _ratio_median(throughput, "stage_vs_raw"),
        "system_cpu_ms_per_journey": system_cpu_ms_per_journey(report),
        "saturation_journeys_per_s": journeys.get("highest_rate_within_limit"),
    }


def _at_least(value: float | None, target: float, shown: str) -> dict[str, Any]:
    return {"measured": shown if value is not None else None,
            "met": None if value is None else value >= target}  # fmt: skip


def evaluate_targets(report: Report) -> list[dict[str, Any]]:
    """The issue's targets against the run's figures (met is None when not measured)."""
    targets: list[dict[str, Any]] = []
    top = headline(report)
    vs_minimal, vs_raw = top["stage_vs_minimal"], top["stage_vs_raw"]
    targets.append({
        "name": "stage throughput / minimal exactly-once loop (median)",
        "target": f">= {STAGE_VS_MINIMAL_TARGET:.0%}",
        **_at_least(vs_minimal, STAGE_VS_MINIMAL_TARGET, f"{vs_minimal or 0:.1%}"),
    })  # fmt: skip
    targets.append({
        "name": "stage throughput / raw Kafka loop (median)",
        "target": f">= {STAGE_RATIO_TARGET:.0%}",
        **_at_least(vs_raw, STAGE_RATIO_TARGET, f"{vs_raw or 0:.1%}"),
    })  # fmt: skip
    cpu = top["system_cpu_ms_per_journey"]
    targets.append({
        "name": "system CPU per journey (no load generator, no SMTP sink)",
        "target": f"<= {SYSTEM_CPU_MS_PER_JOURNEY_TARGET:.0f} ms",
        "measured": f"{cpu:.1f} ms" if cpu is not None else None,
        "met": None if cpu is None else cpu <= SYSTEM_CPU_MS_PER_JOURNEY_TARGET,
    })  # fmt: skip
    saturation = top["saturation_journeys_per_s"]
    steps = (report.get("journeys") or {}).get("steps") or []
    below_first = saturation is None and bool(steps)  # not even the first step kept up
    targets.append({
        "name": f"saturation (highest rate with p99 <= {EMAIL_P99_LIMIT_MS:.0f} ms, all done)",
        "target": f">= {SATURATION_TARGET:.0f} journeys/s",
        **_at_least(saturation, SATURATION_TARGET, f"{saturation or 0:g} journeys/s"),
        **({"measured": f"below {steps[0]['offered_per_s']:g} journeys/s (the first step "
                        f"saturated)", "met": False} if below_first else {}),
    })  # fmt: skip
    journeys = report.get("journeys")
    step = _step_at(report, EMAIL_P99_TARGET_RATE)
    at_rate = _stage(step, TARGET_STAGE) if step else None
    note, met = None, None if at_rate is None else at_rate["p99"] <= EMAIL_P99_TARGET_MS
    if journeys and step is None and journeys["steps"]:
        last = journeys["steps"][-1]
        last_stage = _stage(last, TARGET_STAGE)
        if last_stage and last_stage["p99"] > EMAIL_P99_LIMIT_MS:
            # the sweep stopped below the target rate because the system saturated there
            note = (
                f"saturated below it: {last['offered_per_s']:g}/s offered, "
                f"{last['confirmed_per_s']:.1f}/s done, p99 {last_stage['p99']:.0f} ms"
            )
            met = False
        else:
            note = f"not offered (steps: {[s['offered_per_s'] for s in journeys['steps']]})"
    targets.append({
        "name": f"booking -> email p99 at {EMAIL_P99_TARGET_RATE:.0f} journeys/s",
        "target": f"<= {EMAIL_P99_TARGET_MS:.0f} ms",
        "measured": f"{at_rate['p99']:.0f} ms" if at_rate else note,
        "met": met,
    })  # fmt: skip
    peaks = (report.get("memory_mb") or {}).get("peak_under_load") or {}
    services = {k: v for k, v in peaks.items() if k in SERVICES}
    worst = max(services.items(), key=lambda kv: kv[1], default=None)
    targets.append({
        "name": "RSS of each service under load",
        "target": f"< {RSS_TARGET_MB:.0f} MB",
        "measured": f"{worst[1]:.0f} MB ({worst[0]})" if worst else None,
        "met": None if worst is None else worst[1] < RSS_TARGET_MB,
    })  # fmt: skip
    return targets


def cpu_split_line(split: dict[str, Any]) -> str:
    """One sentence: the CPU per journey at its step, what of it is idle cost, the generator."""
    idle = (
        f"; idle cost {fmt(split['system_idle_ms_per_s'], 0)} ms/s with no load, i.e. "
        f"{fmt(split['system_idle_share_ms'], 1)} ms of it, leaving "
        f"{fmt(split['system_less_idle_ms'], 1)} ms for the journey itself"
        if split.get("system_idle_share_ms") is not None
        else ""
    )
    return (
        f"CPU per journey at {split['offered_per_s']:g} journeys/s ({split['confirmed']} "
        f"confirmed): system {fmt(split['system_ms'], 1)} ms{idle}; load generator "
        f"{fmt(split['load_generator_ms'], 1)} ms."
    )


def _met(value: bool | None) -> str:
    return {True: "[green]met[/]", False: "[red]missed[/]", None: "[dim]-[/]"}[value]


def print_report(console: Console, report: Report) -> None:
    startup = report.get("startup") or {}
    table = Table(title="start-up (fresh stack)")
    for column in ("what", "seconds"):
        table.add_column(column)
    table.add_row("Kafka ready", fmt(startup.get("kafka_s"), 1))
    table.add_row("PostgreSQL ready", fmt(startup.get("postgres_s"), 1))
    table.add_row("stack (both, in parallel)", fmt(startup.get("stack_s"), 1))
    table.add_row("four services ready", fmt(startup.get("services_ready_s"), 1))
    console.print(table)

    throughput = report.get("throughput")
    if throughput:
        table = Table(
            title="throughput: assessments topic -> referrals topic, same broker, same poll "
            "size (median of the repeats; CPU ms per event)"
        )
        for column in ("pipeline", "messages", "bytes in/out", "events/s", "min-max",
                       "worker", "kafka", "postgres"):  # fmt: skip
            table.add_column(column, justify="right")
        for kind, name in PIPELINES.items():
            r = throughput.get(kind)
            if r is None:
                continue
            repeats = r.get("per_second_repeats") or {}
            cpu = r.get("cpu_ms_per_event") or {}
            table.add_row(
                name, fmt(r["messages"]), f"{r['input_bytes']}/{r['output_bytes']:.0f}",
                fmt(r["per_second"]), f"{fmt(repeats.get('min'))}-{fmt(repeats.get('max'))}",
                fmt(cpu.get("worker"), 3), fmt(cpu.get("kafka"), 3), fmt(cpu.get("postgres"), 3),
            )  # fmt: skip
        console.print(table)
        for key in ("stage_vs_minimal", "stage_vs_raw", "minimal_vs_raw"):
            found = throughput.get(key)
            if isinstance(found, dict) and found.get("median") is not None:
                console.print(f"{key}: median {found['median']:.1%} "
                              f"(min {found['min']:.1%}, max {found['max']:.1%}, "
                              f"n {found['n']})")  # fmt: skip

    journeys = report.get("journeys")
    if journeys:
        table = Table(title=f"journeys (open loop): {TARGET_STAGE}, and end to end (ms)")
        columns = ("offered/s", "confirmed", "done/s", "start lag p99", "p50", "p95", "p99",
                   "max", "e2e p50", "e2e p99")  # fmt: skip
        for column in columns:
            table.add_column(column, justify="right")
        for step in journeys["steps"]:
            target = _stage(step, TARGET_STAGE) or {}
            e2e = _stage(step, END_TO_END) or {}
            lag = step["start_lag_ms"] or {}
            table.add_row(
                fmt(step["offered_per_s"]), f"{step['confirmed']}/{step['scheduled']}",
                fmt(step["confirmed_per_s"], 1), fmt(lag.get("p99")),
                fmt(target.get("p50")), fmt(target.get("p95")), fmt(target.get("p99")),
                fmt(target.get("max")), fmt(e2e.get("p50")), fmt(e2e.get("p99")),
            )  # fmt: skip
        console.print(table)
        stages = Table(title="per stage p50 / p99 (ms) by offered rate")
        stages.add_column("stage")
        for step in journeys["steps"]:
            stages.add_column(f"{step['offered_per_s']:g}/s", justify="right")
        for name in journeys["steps"][0]["stages_ms"]:
            cells = []
            for step in journeys["steps"]:
                s = _stage(step, name)
                cells.append(f"{s['p50']:.0f} / {s['p99']:.0f}" if s else "-")
            stages.add_row(name, *cells)
        console.print(stages)
        for step in journeys["steps"]:
            if step["errors"]:
                console.print(f"[yellow]{step['offered_per_s']:g}/s errors:[/] {step['errors']}")
            if step["stop_reason"]:
                console.print(f"sweep stopped after {step['offered_per_s']:g}/s: "
                              f"{step['stop_reason']}")  # fmt: skip

    memory = report.get("memory_mb")
    if memory:
        table = Table(title="resident memory (MB)")
        for column in ("process", "idle", "peak under load"):
            table.add_column(column, justify="right")
        for name, idle in memory["idle"].items():
            peak = memory["peak_under_load"].get(name)
            table.add_row(name, fmt(idle), fmt(peak))
        console.print(table)

    cpu = report.get("cpu_seconds_under_load")
    steps = (journeys or {}).get("steps", [])
    confirmed = sum(s["confirmed"] for s in steps)
    if cpu and confirmed:
        system = system_cpu_ms_per_journey(report)
        table = Table(
            title=f"CPU during the sweep ({confirmed} confirmed journeys; the system without "
            f"the load generator and the SMTP sink: {fmt(system, 1)} ms per journey)"
        )
        for column in ("process", "CPU seconds", "ms per journey"):
            table.add_column(column, justify="right")
        for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
            table.add_row(name, fmt(seconds, 1), fmt(seconds * 1000 / confirmed, 1))
        console.print(table)

    split = cpu_per_journey(report)
    if split:
        console.print(cpu_split_line(split))

    table = Table(title="targets (2 cores)")
    for column in ("target", "wanted", "measured", ""):
        table.add_column(column)
    for t in evaluate_targets(report):  # from the figures, so a fixed verdict shows on old runs
        table.add_row(t["name"], t["target"], fmt(t["measured"]), _met(t["met"]))
    console.print(table)


def markdown(report: Report) -> str:
    """The README's table: targets, then the journey steps."""
    load = report["machine"].get("load_average_at_start") or [None]
    lines = [
        f"Run {report['started_at'][:16].replace('T', ' ')} UTC, {report['machine']['cpus']} "
        f"cores (load average {fmt(load[0], 1)} at the start), "
        f"{'quick' if report['config']['quick'] else 'full'} run (`bench/results/latest.json`).",
        "",
        "| target | wanted | measured | |",
        "| --- | --- | --- | --- |",
    ]
    for target in evaluate_targets(report):  # from the figures, also for older runs
        met = {True: "met", False: "**missed**", None: ""}[target["met"]]
        lines.append(
            f"| {target['name']} | {target['target']} | {fmt(target['measured'])} | {met} |"
        )
    throughput = report.get("throughput")
    if throughput:
        rates = ", ".join(
            f"{name} {fmt(throughput[kind]['per_second'])}"
            for kind, name in PIPELINES.items()
            if kind in throughput
        )
        lines += ["", f"Throughput (events/s, median of the repeats): {rates}."]
    split = cpu_per_journey(report)
    if split:
        lines += ["", cpu_split_line(split)]
    journeys = report.get("journeys")
    if journeys:
        lines += [
            "",
            "| offered journeys/s | confirmed | booking -> email p50 / p95 / p99 / max (ms) "
            "| end to end p50 / p99 (ms) |",
            "| --- | --- | --- | --- |",
        ]
        for step in journeys["steps"]:
            t = _stage(step, TARGET_STAGE)
            e = _stage(step, END_TO_END)
            cell = (
                f"{t['p50']:.0f} / {t['p95']:.0f} / {t['p99']:.0f} / {t['max']:.0f}" if t else "-"
            )
            e2e = f"{e['p50']:.0f} / {e['p99']:.0f}" if e else "-"
            lines.append(
                f"| {step['offered_per_s']:g} | {step['confirmed']}/{step['scheduled']} "
                f"| {cell} | {e2e} |"
            )
    return "\n".join(lines)


def write_readme(readme: Path, report: Report) -> bool:
    """Replace the text between the bench-table markers; False when the markers are missing."""
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return False
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_START}\n{markdown(report)}\n{README_END}{tail}")
    return True


def plot(report: Report, path: Path) -> bool:
    """Latency percentiles against offered load (PNG); False when there are no journeys."""
    journeys = report.get("journeys")
    if not journeys or not journeys["steps"]:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s in journeys["steps"] if _stage(s, TARGET_STAGE)]
    rates = [s["offered_per_s"] for s in steps]
    figure, axes = plt.subplots(figsize=(8, 5), dpi=110)
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        values = [_stage(s, TARGET_STAGE)[key] for s in steps]  # type: ignore[index]
        axes.plot(rates, values, style, label=f"booking -> email {key}")
    e2e = [(r, e["p99"]) for r, s in zip(rates, steps, strict=True) if (e := _stage(s, END_TO_END))]
    axes.plot([r for r, _ in e2e], [v for _, v in e2e], "x--", color="grey", label="end to end p99")
    axes.axhline(EMAIL_P99_TARGET_MS, color="green", linestyle=":", label="150 ms target")
    axes.axhline(EMAIL_P99_LIMIT_MS, color="red", linestyle=":", label="500 ms limit")
    axes.set_yscale("log")
    axes.set_xlabel("offered load (journeys/s, open loop)")
    axes.set_ylabel("latency (ms)")
    axes.set_title(f"carebridge latency vs offered load ({report['machine']['cpus']} cores)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True


def write_json(report: Report, directory: Path, stamp: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=str) + "\n"
    run_file = directory / f"{stamp}.json"
    latest = directory / "latest.json"
    run_file.write_text(text)
    latest.write_text(text)
    return run_file, latest
