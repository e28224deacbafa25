"""Results as files: JSON (everything), markdown (the table people read), PNG (the trend)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .case import CaseResult
from .profiling import hotspots_markdown
from .stats import LinearFit, Summary

# Which count is "N" on the plots, per scenario.
X_AXIS = {"publishers": "streams", "viewers": "viewers", "mixed": "streams", "smoke": "streams"}


def _ms(summary: Summary | None, *fields: str) -> str:
    if summary is None:
        return "-"
    return " / ".join(f"{1000 * getattr(summary, f):.0f}" for f in fields)


def _s(summary: Summary | None, *fields: str) -> str:
    if summary is None:
        return "-"
    return " / ".join(f"{getattr(summary, f):.2f}" for f in fields)


def x_value(result: CaseResult) -> int:
    return result.viewers if X_AXIS.get(result.scenario) == "viewers" else result.streams


def markdown_table(results: Sequence[CaseResult]) -> str:
    head = ("| server | streams | viewers | published | behind | dropped | CPU ms / stream·s "
            "| CPU ms / viewer·s | server CPU % | peak RSS MB | RSS / stream MB "
            "| first segment p50 / max s | edge lag p50 / max s | playlist p50 / p99 ms "
            "| segment p50 / p99 ms | stalls | load CPU % | other CPU % |")
    rows = [head, _separator(head)]
    for r in sorted(results, key=lambda r: (r.server != "ours", r.server, x_value(r))):
        refused = sum(r.refused.values())
        published = f"{r.published}" + (f" ({refused} refused)" if refused else "")
        first = _s(r.first_segment, "p50", "max")
        if r.first_segment_missing:
            first += f" ({r.first_segment_missing} none)"
        rows.append(
            f"| {r.server} | {r.streams} | {r.viewers} | {published} | {r.behind} | {r.dropped} "
            f"| {r.cpu_ms_per_stream_second:.2f} "
            f"| {f'{r.cpu_ms_per_viewer_second:.3f}' if r.viewers else '-'} "
            f"| {r.server_cpu_percent:.0f} "
            f"| {r.rss_peak_mb:.0f} | {r.rss_per_stream_mb:.2f} | {first} "
            f"| {_s(r.edge_lag, 'p50', 'max')} | {_ms(r.playlist_latency, 'p50', 'p99')} "
            f"| {_ms(r.segment_latency, 'p50', 'p99')} "
            f"| {r.stalls}{f' ({r.stall_seconds:.2f} s)' if r.stalls else ''} "
            f"| {r.load_cpu_percent:.0f} "
            f"| {r.other_cpu_percent:.0f} |"
        )
    return "\n".join(rows)


def _separator(head: str) -> str:
    return "|" + "---|" * (head.count("|") - 1)


def fits(results: Sequence[CaseResult]) -> dict[str, LinearFit]:
    """Server CPU (ms per second of wall time) against N, per server."""
    by_server: dict[str, tuple[list[float], list[float]]] = {}
    for r in results:
        if r.window_seconds and r.published:
            xs, ys = by_server.setdefault(r.server, ([], []))
            xs.append(r.published if X_AXIS.get(r.scenario) == "streams" else r.viewers)
            ys.append(1000 * r.server_cpu_seconds / r.window_seconds)
    out = {}
    for server, (xs, ys) in by_server.items():
        fit = LinearFit.of(xs, ys)
        if fit is not None:
            out[server] = fit
    return out


def markdown_report(scenario: str, results: Sequence[CaseResult], machine: dict[str, str],
                    settings: dict[str, Any], plot_name: str | None, out_dir: Path) -> str:
    lines = [f"# Benchmark: {scenario}", "", markdown_table(results), ""]
    unit = "viewer" if X_AXIS.get(scenario) == "viewers" else "stream"
    for server, fit in fits(results).items():
        per_core = 1000 / fit.per_stream if fit.per_stream > 0 else float("inf")
        lines.append(f"- fit, {server}: server CPU = {fit.fixed:.1f} ms/s + "
                     f"{fit.per_stream:.2f} ms/s per {unit} (R² {fit.r2:.3f}); "
                     f"≈ {per_core:.0f} {unit}s per core at the margin")
    codes = sorted({(r.server, r.server_code) for r in results})
    for server, code in codes:
        lines.append(f"- {server} ran: {code}")
    if len({c for s, c in codes if s == "ours"}) > 1:
        lines.append("- **the code of our server changed during this run**: compare rows of "
                     "the same source digest only (see the JSON)")
    for r in results:
        for note in r.notes:
            lines.append(f"- {r.label}: {note}")
        if r.refused:
            lines.append(f"- {r.label}: refusals {r.refused}")
    lines += ["", "CPU ms / stream·s: server CPU time in the window / (published streams x "
              "window seconds). Edge lag: media sent minus media in finished segments at the "
              "end (normal: under one segment plus a GOP). Latency columns come from "
              + ("the viewers." if unit == "viewer" or any(r.viewers for r in results)
                 else "a slow sampler (one playlist + segment request pair per second)."), ""]
    if plot_name:
        lines += [f"![plot]({plot_name})", ""]
    for r in results:
        if r.profile and (out_dir / r.profile).exists():
            lines += [f"## Profile: {r.label}", "", f"Raw stacks: `{r.profile}`", "",
                      hotspots_markdown(out_dir / r.profile), ""]
    lines += ["## Settings", ""] + [f"- {k}: {v}" for k, v in settings.items()]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in machine.items()]
    return "\n".join(lines) + "\n"


def to_json(results: Sequence[CaseResult], machine: dict[str, str],
            settings: dict[str, Any]) -> str:
    return json.dumps({"machine": machine, "settings": settings,
                       "results": [dataclasses.asdict(r) for r in results]}, indent=2)


def plot(scenario: str, results: Sequence[CaseResult], path: Path) -> bool:
    """CPU per stream, memory per stream and latency against N; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    axis = X_AXIS.get(scenario, "streams")
    viewers = axis == "viewers"
    fig, (cpu_ax, mem_ax, lat_ax) = plt.subplots(1, 3, figsize=(15, 4.5))
    for index, server in enumerate(sorted({r.server for r in results})):
        color = f"C{index}"  # one colour per server on every panel; line style tells series
        rows = sorted((r for r in results if r.server == server), key=x_value)
        xs = [x_value(r) for r in rows]
        cpu = [r.cpu_ms_per_viewer_second if viewers else r.cpu_ms_per_stream_second
               for r in rows]
        cpu_ax.plot(xs, cpu, marker="o", color=color, label=server)
        mem_ax.plot(xs, [r.rss_peak_mb for r in rows], marker="o", color=color,
                    label=f"{server} peak RSS")
        if viewers or any(r.viewers for r in rows):
            lat_ax.plot(xs, [1000 * r.segment_latency.p99 if r.segment_latency else None
                             for r in rows], marker="o", color=color,
                        label=f"{server} segment p99")
            lat_ax.plot(xs, [1000 * r.playlist_latency.p99 if r.playlist_latency else None
                             for r in rows], marker="x", linestyle="--", color=color,
                        label=f"{server} playlist p99")
            lat_ax.set_ylabel("HLS request latency, ms")
        else:
            lat_ax.plot(xs, [r.first_segment.p50 if r.first_segment else None for r in rows],
                        marker="o", color=color, label=f"{server} p50")
            lat_ax.plot(xs, [r.first_segment.max if r.first_segment else None for r in rows],
                        marker="x", linestyle="--", color=color, label=f"{server} max")
            lat_ax.set_ylabel("publish → first playable segment, s")
    cpu_ax.set_ylabel(f"server CPU ms per {'viewer' if viewers else 'stream'}-second")
    mem_ax.set_ylabel("server peak RSS, MB")
    ticks = sorted({x_value(r) for r in results})
    for ax in (cpu_ax, mem_ax, lat_ax):
        ax.set_xlabel(f"N {axis}")
        ax.set_xticks(ticks)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.15 or 1.0)
        ax.legend(fontsize="small")
    fig.suptitle(f"{scenario}: server under test on one core, load on another")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_results(out_dir: Path, stem: str, scenario: str, results: Sequence[CaseResult],
                  machine: dict[str, str], settings: dict[str, Any]) -> Path:
    """Write stem.json, stem.png and stem.md; returns the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(to_json(results, machine, settings))
    plot_name = f"{stem}.png" if plot(scenario, results, out_dir / f"{stem}.png") else None
    md = out_dir / f"{stem}.md"
    md.write_text(markdown_report(scenario, results, machine, settings, plot_name, out_dir))
    return md


def save_report(out_dir: Path, kind: str, data: dict[str, Any], report: str) -> Path:
    """For the commands with a report of their own (edge, httpreq, llviewers): write
    kind-<time>.json and kind-<time>.md, print the report and where it went; the .md path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{kind}-{stamp}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    md = out_dir / f"{kind}-{stamp}.md"
    md.write_text(report)
    print(report)
    print(f"results: {md}")
    return md


def load_json(path: Path) -> tuple[list[CaseResult], dict[str, str], dict[str, Any]]:
    """Results, machine and settings from a JSON file written by `write_results`."""
    data = json.loads(path.read_text())
    summaries = {f.name for f in dataclasses.fields(CaseResult)
                 if "Summary" in str(f.type)}
    results = []
    for raw in data["results"]:
        values = {k: v for k, v in raw.items() if k in CaseResult.__dataclass_fields__}
        for name in summaries:
            if values.get(name) is not None:
                values[name] = Summary(**values[name])
        results.append(CaseResult(**values))
    return results, data["machine"], data["settings"]


def rerender(path: Path) -> Path:
    """Rewrite the markdown and the plot of a JSON result (after a report format change)."""
    results, machine, settings = load_json(path)
    scenario = results[0].scenario if results else path.stem.split("-", 1)[0]
    return write_results(path.parent, path.stem, scenario, results, machine, settings)
