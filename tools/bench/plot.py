#!/usr/bin/env python3
"""The bench's plots, from its CSV: results/*.png and results/README.md.

    tools/bench/plot.py [results/<date>-<machine>.csv] [--out results]

Without a CSV, the newest results/*.csv (not *-runs.csv) is drawn.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tools" / "pylib"))

import report  # noqa: E402

# The notebooks' colours (notebooks/ladder_results.py): a step keeps its colour
# everywhere, its variants share it; greys for the references.
# Twenty, so that a new step gets a colour of its own (tests/steps/test_one_place.py).
STEP_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#bcbd22", "#17becf", "#393b79", "#e6550d", "#31a354", "#843c39", "#7b4173",
                "#637939", "#3182bd", "#d6616b", "#ce6dbd", "#8ca252", "#fd8d3c"]
PEER_COLOURS = {"floor": "#b0b0b0", "nginx": "#505050"}


def num(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def order_key(server: str):
    return (1, server) if not server.startswith("step-") else (0, server)


def colour(server: str, steps: list[str] | None = None):
    if server in PEER_COLOURS:
        return PEER_COLOURS[server]
    digits = server[len("step-"):len("step-") + 2]
    n = int(digits) if digits.isdigit() else 1
    return STEP_COLOURS[(n - 1) % len(STEP_COLOURS)]


KILO = matplotlib.ticker.FuncFormatter(
    lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}")


def loadgen_rows(rows, scenario, path="/hello"):
    out = [r for r in rows if r["scenario"] == scenario and r["client"] == "loadgen"
           and r["path"] == path and num(r.get("rps")) is not None]
    return sorted(out, key=lambda r: order_key(r["server"]))


def steps_of(rows):
    return sorted({r["server"] for r in rows if r["server"].startswith("step-")})


def title_of(rows) -> str:
    r = rows[0]
    commits = " ".join(dict.fromkeys(x["commit"] for x in rows))
    dates = " ".join(dict.fromkeys(x["date"] for x in rows))
    return (f"{r['machine']} · {r['nproc']} CPUs · {r['kernel']} · {r['compiler']} "
            f"{r['build_type']} · {commits} · {dates} · pinning: {r['pinning']}")


def bars(ax, rows, value, lo, hi, steps, xlabel):
    names = [r["server"] for r in rows]
    vals = [num(r.get(value)) or 0 for r in rows]
    err = None
    if lo:
        err = [[max(0, v - (num(r.get(lo)) or v)) for v, r in zip(vals, rows)],
               [max(0, (num(r.get(hi)) or v) - v) for v, r in zip(vals, rows)]]
    y = range(len(rows))
    ax.barh(y, vals, xerr=err, color=[colour(n, steps) for n in names], capsize=3,
            error_kw={"elinewidth": 1, "ecolor": "#333"})
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ends = [v + (err[1][i] if err else 0) for i, v in enumerate(vals)]
    top = max(ends + [0]) or 1
    for i, v in enumerate(vals):
        ax.text(ends[i] + top * 0.015, i, f"{v:,.0f}" if v >= 100 else f"{v:.1f}",
                va="center", fontsize=8, color="#222")
    ax.set_xlim(0, top * 1.18)
    ax.xaxis.set_major_formatter(KILO)


def rps_cpu(rows, out: Path) -> Path | None:
    order = ["http-c1", "http-c50", "http-c200", "http-c500", "echo-64", "echo-16k",
             "newconn-c50"]
    present = [s for s in order if loadgen_rows(rows, s)]
    if not present:
        return None
    steps = steps_of(rows)
    height = sum(0.9 + 0.26 * len(loadgen_rows(rows, s)) for s in present)
    fig, axes = plt.subplots(len(present), 2, figsize=(12, height + 0.8), squeeze=False,
                             gridspec_kw={"height_ratios": [len(loadgen_rows(rows, s))
                                                            for s in present]})
    for (ax_rps, ax_cpu), s in zip(axes, present):
        rs = loadgen_rows(rows, s)
        about = {r["scenario"]: r for r in rs}[s]
        label = f"{s}: {about['mode']}, {about['connections']} conn" + \
                (", new connection per request" if about["new_conn"] == "1" else "") + \
                (f", {about['size']} B" if about["size"] else "")
        bars(ax_rps, rs, "rps", "rps_min", "rps_max", steps, "requests/s (median, min–max)")
        ax_rps.set_title(label, loc="left", fontsize=10)
        bars(ax_cpu, rs, "cpu_us_per_req", "cpu_us_per_req_min", "cpu_us_per_req_max", steps,
             "server CPU µs per request (median, min–max)")
        ax_cpu.set_title("what the server spent (lower is better)", loc="left", fontsize=10)
    fig.suptitle("Throughput and server CPU per request — loadgen and server pinned to "
                 "separate CPUs\n" + title_of(rows), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (height + 0.8)))
    path = out / "rps-cpu.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def idle_scaling(rows, out: Path) -> Path | None:
    curve = {}
    for r in rows:
        if r["client"] != "loadgen" or num(r.get("rps")) is None:
            continue
        if r["scenario"] == "http-c50" or r["scenario"].startswith("idle-"):
            curve.setdefault(r["server"], []).append(r)
    curve = {k: sorted(v, key=lambda r: int(r["idle"])) for k, v in curve.items()
             if len(v) >= 2}
    if not curve:
        return None
    steps = steps_of(rows)
    xmax = max(int(r["idle"]) for pts in curve.values() for r in pts)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for server in sorted(curve, key=order_key):
        pts = curve[server]
        x = [int(r["idle"]) for r in pts]
        for ax, key in ((a1, "rps"), (a2, "cpu_us_per_req")):
            y = [num(r.get(key)) for r in pts]
            lo = [num(r.get(f"{key}_min")) for r in pts]
            hi = [num(r.get(f"{key}_max")) for r in pts]
            err = [[v - l if v is not None and l is not None else 0 for v, l in zip(y, lo)],
                   [h - v if v is not None and h is not None else 0 for v, h in zip(y, hi)]]
            ax.errorbar(x, [v or 0 for v in y], yerr=err, marker="o", capsize=3,
                        label=server, color=colour(server, steps), linewidth=1.8)
            for r, xv, yv in zip(pts, x, y):
                held, errors = num(r.get("idle_held")), int(num(r.get("errors")) or 0)
                short = held is not None and held < int(r["idle"])
                if short or errors:
                    ax.plot([xv], [yv or 0], marker="X", markersize=12, color="#d62728")
                    if key == "rps":
                        what = [f"held {held:,.0f} of {int(r['idle']):,} idle"] if short else []
                        what += [f"{errors:,} errors ({r.get('error_kinds')})"] if errors else []
                        right = xv > 0.6 * xmax
                        ax.annotate(f"{server}: " + ",\n".join(what), (xv, yv or 0),
                                    textcoords="offset points",
                                    xytext=(-12 if right else 12, 16),
                                    ha="right" if right else "left", fontsize=8,
                                    color="#d62728")
    a1.set_ylabel("requests/s of the 50 active connections")
    a1.yaxis.set_major_formatter(KILO)
    a2.set_ylabel("server CPU µs per request")
    for ax in (a1, a2):
        ax.set_xlabel("idle connections held open beside them")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: f"{v / 1000:.0f}k" if v else "0"))
    a2.legend(*a1.get_legend_handles_labels(), fontsize=8, loc="upper left", ncol=2)
    a1.set_title("select/poll scan every descriptor per call; epoll only the ready ones",
                 loc="left", fontsize=10)
    a2.set_title("the cost per request, from /proc (lower is better)", loc="left", fontsize=10)
    fig.suptitle("Idle scaling: 50 busy connections + N idle ones\n" + title_of(rows),
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = out / "idle-scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency(rows, out: Path) -> Path | None:
    rs = loadgen_rows(rows, "http-c50")
    mix = [r for r in rows if r["scenario"] == "mix-work" and r["path"] == "/hello"
           and num(r.get("p50_us")) is not None]
    if not rs:
        return None
    panels = 2 if mix else 1
    fig, axes = plt.subplots(1, panels, figsize=(12, 4.8), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1] if mix else [1]})
    ax = axes[0][0]
    pcts = [("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9")]
    width = 0.8 / len(pcts)
    for j, (key, label) in enumerate(pcts):
        xs = [i + (j - 1.5) * width for i in range(len(rs))]
        ax.bar(xs, [num(r.get(key)) or 0 for r in rs], width, label=label,
               color=plt.get_cmap("magma")(0.2 + 0.2 * j))
    ax.set_xticks(range(len(rs)), [r["server"] for r in rs], rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("latency µs (log)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=4)
    ax.set_title("GET /hello, 50 keep-alive connections, closed loop (median of runs)",
                 loc="left", fontsize=10)
    if mix:
        ax = axes[0][1]
        mix = sorted(mix, key=lambda r: order_key(r["server"]))
        for j, (key, label) in enumerate([("p50_us", "p50"), ("p99_us", "p99"),
                                          ("max_us", "max")]):
            xs = [i + (j - 1) * 0.27 for i in range(len(mix))]
            ax.bar(xs, [num(r.get(key)) or 0 for r in mix], 0.27, label=label,
                   color=plt.get_cmap("magma")(0.2 + 0.25 * j))
        ax.set_xticks(range(len(mix)), [r["server"].removeprefix("step-") for r in mix])
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower center", ncol=3)
        ax.set_title("/hello beside a slow /work\n(open loop: stalls are counted)",
                     loc="left", fontsize=10)
    fig.suptitle("Latency percentiles\n" + title_of(rows), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    path = out / "latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def syscalls(rows, out: Path) -> Path | None:
    # A total without a breakdown (a run from before its call was counted by
    # name, as io_uring_enter once was) is drawn whole, as "other".
    rs = [r for r in loadgen_rows(rows, "http-c50")
          if r.get("syscalls_top") or num(r.get("syscalls_per_req"))]
    if not rs:
        return None
    parsed = []
    for r in rs:
        words = r["syscalls_top"].split()
        parts = {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
        other = max(0.0, (num(r.get("syscalls_per_req")) or 0) - sum(parts.values()))
        parsed.append((r, parts, other))
    names = sorted({n for _, p, _ in parsed for n in p},
                   key=lambda n: -sum(p.get(n, 0) for _, p, _ in parsed))
    fig, ax = plt.subplots(figsize=(12, 4.6))
    cmap = plt.get_cmap("tab20")
    bottom = [0.0] * len(parsed)
    for k, name in enumerate(names + ["other"]):
        vals = [o if name == "other" else p.get(name, 0) for _, p, o in parsed]
        ax.bar(range(len(parsed)), vals, 0.6, bottom=bottom, label=name,
               color="#cccccc" if name == "other" else cmap(k % 20))
        bottom = [b + v for b, v in zip(bottom, vals)]
    wake = [num(r.get("wakeups_per_req")) for r, _, _ in parsed]
    for i, (r, _, _) in enumerate(parsed):
        # Above the bar, and above the wake-up marker where that is higher.
        y = max(bottom[i], (wake[i] or 0) + 0.08 if wake[i] and wake[i] >= bottom[i] - 0.1 else 0)
        ax.text(i, y + 0.03, f"{bottom[i]:.2f}", ha="center", fontsize=7)
    ax.plot([i for i, w in enumerate(wake) if w is not None], [w for w in wake if w is not None],
            "D", color="black", markersize=5,
            label="wake-ups/request\n(untraced, own stats)")
    ax.set_xticks(range(len(parsed)), [r["server"] for r, _, _ in parsed], rotation=30,
                  ha="right")
    ax.set_ylabel("system calls per request")
    ax.set_ylim(0, max(bottom) * 1.25)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    methods = {r.get("syscalls_method") or "strace" for r, _, _ in parsed}
    if methods == {"perf"}:
        how = ("from perf's syscall tracepoints (a separate pass, counted in the kernel: "
               "~15 % more server CPU, not strace's ~10x);\n'wakeups' is the server's own "
               "count in the measured run")
    else:
        how = ("from `strace -c -f` (a separate, slower pass: event batches grow under "
               "tracing;\n'wakeups' is the untraced figure from the server's own stats)")
        if "perf" in methods:
            how = "partly " + how
    ax.set_title(f"System calls per request, http-c50, {how}", loc="left", fontsize=9)
    fig.suptitle(title_of(rows), fontsize=9)
    fig.tight_layout()
    path = out / "syscalls.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(rows: list[dict], out: Path) -> list[Path]:
    if not rows:
        return []
    return [p for p in (rps_cpu(rows, out), idle_scaling(rows, out), latency(rows, out),
                        syscalls(rows, out)) if p]


def newest_csv(directory: Path) -> Path | None:
    found = sorted((p for p in directory.glob("*.csv") if not p.name.endswith("-runs.csv")),
                   key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="Draw the bench's plots from its CSV.")
    p.add_argument("csv", nargs="?", type=Path)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    csv_path = args.csv or newest_csv(HERE.parents[1] / "results")
    if not csv_path:
        print("plot: no CSV (run make bench first)", file=sys.stderr)
        return 2
    out = args.out or csv_path.parent
    rows = report.read_csv(csv_path)
    pngs = draw_all(rows, out)
    summary = out / "README.md"
    summary.write_text(report.summary_markdown(rows, csv_path.name, rows[0], pngs))
    for path in [*pngs, summary]:
        print(path)
    if readme := report.refresh_readme(csv_path, rows, any_csv=True):
        print(readme)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
