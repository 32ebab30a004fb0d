#!/usr/bin/env python3
"""Server Ladder's bench: every step (and the floor/nginx references) under
the same loads; a table in the terminal, results/<date>-<machine>.csv, plots.

    tools/bench/bench.py                   the default set (make bench, ~5 min)
    tools/bench/bench.py --full            everything (make bench-full)
    tools/bench/bench.py --set targets     only the performance targets' cells, 5 runs of 1 s
    tools/bench/bench.py --steps 05,06 --scenarios http-c50,idle-5k --repeats 5
    tools/bench/bench.py --list            what would run, and what is skipped why
    tools/bench/plot.py results/X.csv      redraw the plots from a CSV

Method and CSV columns: tools/bench/README.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tools" / "pylib"))
sys.path.insert(0, str(HERE))

import measure  # noqa: E402
import report  # noqa: E402
import scenarios as sc  # noqa: E402
from ladder.server import bin_dir  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", choices=sorted(sc.SETS), default=None,
                   help="which cells: default (make bench), full (every scenario, variant "
                        "and wrk comparison; longer, more repeats), targets (the cells of "
                        "the performance targets; 5 runs of 1 s)")
    p.add_argument("--full", action="store_true", help="the same as --set full")
    p.add_argument("--steps", help="only these step numbers, e.g. 05,06")
    p.add_argument("--scenarios", help=f"comma-separated, from: {', '.join(sc.BY_NAME)}")
    p.add_argument("--peers", default="floor,nginx,go",
                   help="reference servers when available: floor,nginx,go (or none)")
    p.add_argument("--loops", type=int, default=os.cpu_count() or 1,
                   help="event loops of the multi-loop steps (08 --workers, 09 --io-threads) "
                        "and nginx's worker_processes (default: nproc, %(default)s)")
    p.add_argument("--repeats", type=int,
                   help="runs per cell (default 3; --full and --set targets 5)")
    p.add_argument("--duration", type=float,
                   help="seconds per measured run (0.5; --full 2; --set targets 1)")
    p.add_argument("--warmup", type=float,
                   help="seconds of load before each run (0.2; --full 0.5; targets 0.3)")
    p.add_argument("--patience", type=float,
                   help="seconds to wait for a quiet machine before a run (3; --full 10)")
    p.add_argument("--retries", type=int, help="re-runs of a disturbed run (2; --full 3)")
    p.add_argument("--budget", type=float,
                   help="seconds (default 160; --full and --set targets: none): once the runs "
                        "left would not fit, stop waiting for quiet and re-running disturbed "
                        "runs")
    p.add_argument("--syscalls", choices=("auto", "perf", "strace", "none"), default="auto",
                   help="how the syscalls-per-request pass counts: perf tracepoints (~15 %% "
                        "more server CPU), strace -c (slows the server ~10x); auto: perf when "
                        "`perf stat -e raw_syscalls:sys_enter` works, else strace")
    p.add_argument("--no-strace", action="store_true",
                   help="skip the syscalls-per-request pass (the same as --syscalls none)")
    p.add_argument("--no-wrk", action="store_true", help="skip the loadgen-vs-wrk comparison")
    p.add_argument("--no-plot", action="store_true", help="CSV and table only")
    p.add_argument("--out", type=Path, default=ROOT / "results", help="results directory")
    p.add_argument("--tag", help="file name instead of <date>-<machine>")
    p.add_argument("--append", action="store_true",
                   help="keep the CSV's rows that this run does not measure again (add a "
                        "step or a scenario to an earlier run)")
    p.add_argument("--list", action="store_true", help="print the plan and exit")
    args = p.parse_args(argv)
    if args.full and args.set not in (None, "full"):
        p.error(f"--full and --set {args.set} disagree")
    args.set = "full" if args.full else (args.set or "default")
    args.full = full = args.set == "full"
    targets = args.set == "targets"
    if args.no_strace:
        args.syscalls = "none"
    if args.loops < 1:
        p.error("--loops wants 1 or more")
    args.repeats = args.repeats or (5 if full or targets else 3)
    args.duration = args.duration or (2.0 if full else 1.0 if targets else 0.5)
    args.warmup = args.warmup if args.warmup is not None else (
        0.5 if full else 0.3 if targets else 0.2)
    args.patience = args.patience if args.patience is not None else (10.0 if full else 3.0)
    args.retries = args.retries if args.retries is not None else (3 if full else 2)
    if args.budget is None and args.set == "default":
        args.budget = 160.0
    return args


def cpu_split() -> tuple[set[int] | None, set[int] | None, str]:
    """Server and load generator on separate CPUs when there are two or more:
    on 2 cores, server on the second, loadgen (and this script) on the first."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, f"none ({len(cpus)} CPU)"
    half = len(cpus) // 2
    load, server = set(cpus[:half]), set(cpus[half:])
    names = lambda s: ",".join(map(str, sorted(s)))  # noqa: E731
    return server, load, f"server cpu {names(server)}; load cpu {names(load)}"


def plan(args, contenders):
    names = [n.strip() for n in (args.scenarios or "").split(",") if n.strip()] or \
            sc.SETS[args.set]
    unknown = [n for n in names if n not in sc.BY_NAME]
    if unknown:
        sys.exit(f"bench: unknown scenario {', '.join(unknown)}; known: {', '.join(sc.BY_NAME)}")
    pool = any(c.caps.pool for c in contenders)
    have_wrk = shutil.which("wrk") is not None and not args.no_wrk and args.set != "targets"
    out = []
    for name in names:
        s = sc.BY_NAME[name]
        arms, skipped = [], []
        for c in contenders:
            why = sc.applies(c, s, args.set, pool)
            if why:
                skipped.append((c, why))
            else:
                arms.append((c, "loadgen"))
        arms += [(c, "wrk") for c, client in list(arms)
                 if have_wrk and sc.wrk_applies(c, s, args.full)]
        if arms:
            out.append((s, arms, skipped))
    return out


PASS_WEIGHT = {"strace": 1.5, "perf": 2.0}  # a syscalls pass, in plain runs


def run_weight(s: sc.Scenario) -> float:
    """A run's expected length in units of a plain run: idle crowds take time
    to open and to close."""
    return 1.1 + s.idle / 10_000


def plain_run_seconds(cfg: measure.Config) -> float:
    """A plain run's length without waiting for quiet: the load, its warm-up,
    and starting and stopping the server (~0.2 s)."""
    return cfg.duration + cfg.warmup + 0.2


class Mean:
    def __init__(self, guess: float):
        self.total, self.n = guess, 1

    def add(self, value: float) -> None:
        self.total, self.n = self.total + value, self.n + 1

    def mean(self) -> float:
        return self.total / self.n


def group_skips(skipped) -> list[tuple[str, str]]:
    """[(reason, "step-02, step-07")] in first-seen order."""
    by: dict[str, list[str]] = {}
    for c, why in skipped:
        by.setdefault(why, []).append(c.label)
    return [(why, ", ".join(names)) for why, names in by.items()]


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    bins = bin_dir()
    if not (bins / "loadgen").exists():
        print(f"bench: {bins}/loadgen is not built (make build)", file=sys.stderr)
        return 2
    only = {n.strip() for n in args.steps.split(",")} if args.steps else None
    peers = {p.strip() for p in args.peers.split(",")} - {"none", ""}
    contenders = sc.discover(bins, args.full, only, peers, args.loops, args.set)
    if not any(c.kind == "step" for c in contenders):
        print(f"bench: no step binaries in {bins} (make build)", file=sys.stderr)
        return 2
    server_cpus, load_cpus, pinning = cpu_split()
    cfg = measure.Config(bins, args.duration, args.warmup, args.repeats, args.patience,
                         args.retries, server_cpus=server_cpus, load_cpus=load_cpus)
    todo = plan(args, contenders)
    method = measure.syscall_method(args.syscalls)
    pass_weight = PASS_WEIGHT.get(method or "", 0.0)

    in_c50 = {c.name for s, arms, _ in todo if s.name == "http-c50" for c, _ in arms}

    def traced(s, arms=None) -> list:
        """The contenders of scenario s that get a syscalls pass: every one in the
        full set; otherwise http-c50's, and http-c1's that http-c50 lacks (01)."""
        if not method or s.mix:  # the mix is open loop: no fixed request count
            return []
        arms = arms if arms is not None else next(a for t, a, _ in todo if t is s)
        chosen = [c for c, k in arms if k == "loadgen"]
        if args.full or s.name == "http-c50":
            return chosen
        if s.name == "http-c1":
            return [c for c in chosen if c.name not in in_c50]
        return []

    if args.list:
        print(f"set {args.set}: {cfg.repeats} runs of {cfg.duration:g} s (+{cfg.warmup:g} s "
              f"warm-up) per cell; multi-loop steps and nginx: {args.loops} loops; "
              f"syscalls: {method or 'not counted'}")
        for s, arms, skipped in todo:
            print(f"{s.name:12} {s.about}")
            print(f"{'':12} runs: {', '.join(f'{c.label}' + ('' if k == 'loadgen' else ' (wrk)') for c, k in arms)}"
                  + (f"  + {method}: {', '.join(c.label for c in traced(s))}"
                     if traced(s) else ""))
            for why, names in group_skips(skipped):
                print(f"{'':12} skips {names}: {why}")
        units = sum(len(arms) * cfg.repeats * run_weight(s) + pass_weight * len(traced(s, arms))
                    for s, arms, _ in todo)
        runs = sum(len(arms) * cfg.repeats + len(traced(s, arms)) for s, arms, _ in todo)
        print(f"about {units * plain_run_seconds(cfg):.0f} s for {runs} runs on a quiet "
              f"machine ({plain_run_seconds(cfg):.1f} s a plain run), plus waiting for quiet "
              f"and re-runs" + (f" (bounded by --budget {args.budget:g} s)" if args.budget
                                else ""))
        return 0

    # Servers inherit this limit: 15,000 idle connections need the descriptors.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)  # this script keeps off the server's CPU

    machine = report.machine_info(bins, pinning)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.tag or f"{machine['date']}-{machine['machine']}"
    csv_path = args.out / f"{stem}.csv"
    runs_path = args.out / f"{stem}-runs.csv"
    total = sum(len(arms) * cfg.repeats + len(traced(s, arms)) for s, arms, _ in todo)
    print(f"bench: set {args.set}, {len(todo)} scenarios, {total} runs of {cfg.duration:g} s "
          f"(+{cfg.warmup:g} s warm-up), {cfg.repeats} per cell, servers alternated; "
          f"{pinning}; {args.loops} loops for 08, 09 and nginx; syscalls by "
          f"{method or 'nobody'}; commit {machine['commit']}")
    print(f"       a run waits up to {cfg.patience:g} s for a quiet machine (< {cfg.quiet_cores} "
          f"core foreign, < {cfg.quiet_steal:.0%} steal) and is re-run up to {cfg.retries}x "
          f"if disturbed")
    progress = report.Progress(total)
    old_rows = report.read_csv(csv_path) if args.append and csv_path.exists() else []
    old_runs = report.read_csv(runs_path) if args.append and runs_path.exists() else []
    started = time.monotonic()
    seq, calm = 0, False  # calm: the last run was undisturbed, no need to wait for quiet
    base = Mean(plain_run_seconds(cfg))  # seconds a run takes without waiting for quiet
    patience = copy.copy(cfg)  # the configured patience and retries, before the budget
    work_left = sum(len(arms) * cfg.repeats * run_weight(s) + pass_weight * len(
        traced(s, arms)) for s, arms, _ in todo)
    cells: list[report.Cell] = []
    for s, arms, skipped in todo:
        progress.say(f"\n{s.name}: {s.about}")
        progress.say(report.table_line(report.HEAD))
        scenario_cells = {(c.name, k): report.Cell(c, s, k) for c, k in arms}
        for rep in range(cfg.repeats):
            # A B B A: each server's runs spread over the scenario's time, so a
            # noisy minute hits every server instead of one.
            for c, client in (arms if rep % 2 == 0 else arms[::-1]):
                cell = scenario_cells[(c.name, client)]
                if cell.failure:
                    work_left -= run_weight(s)
                    progress.finish_one()
                    continue
                progress.step(f"{s.name} {c.label}{' wrk' if client == 'wrk' else ''} "
                              f"{rep + 1}/{cfg.repeats}")
                weight = run_weight(s)
                for attempt in range(patience.retries + 1):
                    at = time.monotonic() - started
                    # What the budget leaves after the runs still to come.
                    slack = (args.budget or 1e9) - at - (work_left - weight) * base.mean()
                    cfg.patience = max(0.0, min(patience.patience, slack - weight * base.mean()))
                    run = measure.run_once(c, s, client, cfg, wait=not calm)
                    base.add((time.monotonic() - started - at - run.quiet_wait) / weight)
                    seq += 1
                    run.seq, run.started = seq, at
                    calm = bool(run.loads) and not run.disturbed(cfg)
                    if not run.loads and run.failure:
                        cell.failure = run.failure
                        break
                    slack = (args.budget or 1e9) - (time.monotonic() - started) - \
                        (work_left - weight) * base.mean()
                    if run.disturbed(cfg) and attempt < patience.retries and \
                            slack > weight * base.mean():
                        cell.dropped.append(run)  # rejected: run it again
                        progress.add(1)
                        progress.finish_one()
                        continue
                    break
                cell.runs.append(run)
                work_left -= weight
                progress.finish_one()
        for c in traced(s, arms):
            cell = scenario_cells[(c.name, "loadgen")]
            progress.step(f"{s.name} {c.label} {method}")
            work_left -= pass_weight
            if not cell.failure:
                try:
                    cell.syscalls = measure.syscalls_pass(method, c, s, cfg)
                except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
                    cell.syscalls = None
                    progress.say(f"  {method} pass failed for {c.label}: {e}")
            progress.finish_one()
        for (name, client), cell in scenario_cells.items():
            if client == "wrk":
                ours = scenario_cells.get((name, "loadgen"))
                theirs = cell.load_rps()
                if ours and theirs and ours.load_rps():
                    cell.vs_wrk = ours.vs_wrk = ours.load_rps() / theirs
        cells += scenario_cells.values()
        rows = [row for cell in scenario_cells.values() for row in cell.rows(machine, cfg)]
        for line in report.table_rows(rows):
            progress.say(line)
        for why, names in group_skips(skipped):
            progress.say(f"  skipped {names}: {why}")
        all_rows = [row for cell in cells for row in cell.rows(machine, cfg)]
        all_runs = [r for cell in cells for r in cell.run_rows(machine)]
        if args.append:
            all_rows = report.merge(old_rows, all_rows, ("server", "scenario", "client"))
            all_runs = report.merge(old_runs, all_runs, ("server", "scenario", "client"))
        report.write_csv(csv_path, report.COLUMNS, all_rows)
        report.write_csv(runs_path, report.RUN_COLUMNS, all_runs)
    progress.clear()
    rejected = sum(len(c.dropped) for c in cells)
    disturbed = sum(r.disturbed(cfg) for c in cells for r in c.runs)
    print(f"\nbench: {time.monotonic() - started:.0f} s; {rejected} disturbed runs rejected "
          f"and re-run, {disturbed} kept disturbed (patience or retries ran out)")
    print(f"bench: wrote {csv_path.relative_to(ROOT) if csv_path.is_relative_to(ROOT) else csv_path}"
          f" and {runs_path.name}")
    rows = report.read_csv(csv_path)
    print("\nThe performance targets, from this CSV (report.targets):")
    for line in report.targets_lines(rows):
        print(line)
    pngs = []
    if not args.no_plot:
        try:
            import plot
        except ImportError as e:
            print(f"bench: no plots ({e}); install python3-matplotlib", file=sys.stderr)
        else:
            pngs = plot.draw_all(rows, args.out)
    summary = args.out / "README.md"
    summary.write_text(report.summary_markdown(rows, csv_path.name, machine, pngs))
    print(f"bench: wrote {', '.join(p.name for p in [summary, *pngs])} in {args.out}")
    # Re-measured the run the README shows (same date and machine): keep it true.
    if readme := report.refresh_readme(csv_path, rows):
        print(f"bench: updated the numbers in {readme}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        measure.kill_all()
        print("\nbench: interrupted; the CSV has the scenarios that finished", file=sys.stderr)
        sys.exit(130)
