#!/usr/bin/env python3
"""Fills the measured figures into the learner's text, from their sources.

A figure a learner reads is never typed by hand: it sits in a block

    <!-- numbers:NAME -->
    ... written by this script ...
    <!-- /numbers -->

in README.md, docs/*.md or a step's README, and this script rewrites each
block from the committed bench run — the CSV that README.md's bench block
names (`<!-- bench:begin results/….csv -->`, written by tools/bench/plot.py) —
so one command carries a new run into every document:

    tools/docs/numbers.py            rewrite every block
    tools/docs/numbers.py --check    change nothing; exit 1 if a block is stale

A figure the run lacks (a scenario it did not measure) is said to be missing,
with the command that measures it, rather than guessed. The blocks, NAME:

    run          which run the figures come from (date, machine, commit)
    idle-cost    server CPU per request beside idle connections, 04 against 05/06
    thread-cost  step 02's memory and threads per idle connection
    wakeups      wake-ups and system calls per request, 05 against 06
    herd         wasted wake-ups per connection and fairness, 07's variants and 08
    pool         /hello's p99 beside /work, 06 against 09
    cpu          server CPU per request at 50 connections, every step
    idle-memory  resident memory per idle connection, every server on the idle curve
    compare-NN   step NN beside the servers its step.toml compares it with, cell by cell
    goals-NN     the performance targets that name step NN: measured, limit, result
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Run as a script, this folder is first on the path, and this file would
# stand in for the standard library's numbers (which statistics imports).
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT / "tools" / "bench"))
import report  # noqa: E402
import scenarios as sc  # noqa: E402
BLOCK = re.compile(r"(<!-- numbers:([\w-]+) -->\n)(.*?)(<!-- /numbers -->)", re.S)
DOCS = ["README.md", "docs/*.md", "steps/*/README.md"]


def committed_csv() -> Path:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- bench:begin (\S+) -->", text)
    if not m:
        raise SystemExit("README.md has no <!-- bench:begin results/….csv --> block")
    return ROOT / m.group(1)


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class Run:
    def __init__(self, path: Path):
        self.path = path
        with path.open(newline="") as f:
            self.rows = list(csv.DictReader(f))

    def row(self, server: str, scenario: str, path: str = "/hello") -> dict | None:
        """The cell's row; a cell measured twice (a target set after the
        default one), the later, as the README's bench block does."""
        for r in reversed(self.rows):
            if (r["server"] == server and r["scenario"] == scenario and r["client"] == "loadgen"
                    and (r.get("path") or "/hello") == path):
                return r
        return None

    def value(self, server: str, scenario: str, key: str, path: str = "/hello"):
        r = self.row(server, scenario, path)
        return num(r.get(key)) if r else None

    def servers(self) -> list[str]:
        return list(dict.fromkeys(r["server"] for r in self.rows))


def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


MISSING = "not in this run (`make bench` measures it)"


def block_run(run: Run) -> str:
    r = run.rows[0]
    rel = run.path.relative_to(ROOT)
    return (f"Measured by `make bench` on {r['date']} (`{r['machine']}`, {r['nproc']} CPUs, "
            f"kernel {r['kernel']}, commit `{r['commit']}`): `{rel}`")


def block_idle_cost(run: Run) -> str:
    crowds = [("http-c50", "0"), ("idle-1k", "1,000"), ("idle-5k", "5,000"),
              ("idle-15k", "15,000")]
    crowds = [(s, n) for s, n in crowds if any(r["scenario"] == s for r in run.rows)]
    lines = ["| server CPU-µs per request, 50 busy connections + idle ones | "
             + " | ".join(f"{n} idle" for _, n in crowds) + " |",
             "|---|" + "---:|" * len(crowds)]
    for step in ("step-03", "step-04", "step-05", "step-06"):
        cells = [fmt(run.value(step, s, "cpu_us_per_req")) for s, _ in crowds]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def block_thread_cost(run: Run) -> str:
    base = run.row("step-02", "http-c50")
    rows = [(s, n) for s, n in (("idle-100", 100), ("idle-1k", 1000), ("idle-5k", 5000))
            if run.row("step-02", s)]
    if not base or not rows:
        return f"Step 02's memory and threads per idle connection: {MISSING}."
    lines = ["| step 02, idle connections | threads | peak RSS KiB | KiB per idle connection |",
             "|---:|---:|---:|---:|"]
    b = num(base["peak_rss_kib"]) or 0
    for s, n in rows:
        r = run.row("step-02", s)
        rss = num(r["peak_rss_kib"]) or 0
        lines.append(f"| {n:,} | {fmt(num(r['threads']), 0)} | {rss:,.0f} | {(rss - b) / n:.1f} |")
    return "\n".join(lines)


def block_wakeups(run: Run) -> str:
    lines = ["| http-c50 | wake-ups per request | system calls per request |", "|---|---:|---:|"]
    for step in ("step-05", "step-06"):
        lines.append(f"| {step} | {fmt(run.value(step, 'http-c50', 'wakeups_per_req'), 3)} | "
                     f"{fmt(run.value(step, 'http-c50', 'syscalls_per_req'), 2)} |")
    return "\n".join(lines)


def block_herd(run: Run) -> str:
    lines = ["| newconn-c50 | workers | wasted wake-ups per connection | fairness J |",
             "|---|---:|---:|---:|"]
    found = False
    for r in run.rows:
        if r["scenario"] != "newconn-c50" or r["client"] != "loadgen":
            continue
        if not r["server"].startswith(("step-07", "step-08")):
            continue
        try:
            workers = json.loads(r.get("server_stats") or "{}").get("workers") or []
        except json.JSONDecodeError:
            workers = []
        conns = [w.get("connections", 0) for w in workers]
        if not sum(conns):
            continue
        wasted = sum(w.get("wasted_wakeups", 0) + w.get("silent_wakeups", 0) for w in workers)
        fair = sum(conns) ** 2 / (len(conns) * sum(c * c for c in conns))
        lines.append(f"| {r['server']} | {len(workers)} | {wasted / sum(conns):.2f} | {fair:.2f} |")
        found = True
    return "\n".join(lines) if found else f"The herd's counters: {MISSING}."


def block_pool(run: Run) -> str:
    lines = ["| mix-work: /hello beside a slow /work | p50 µs | p99 µs | max µs |",
             "|---|---:|---:|---:|"]
    found = False
    for step in ("step-06", "step-09"):
        r = run.row(step, "mix-work", "/hello")
        if r:
            found = True
            lines.append(f"| {step} | {fmt(num(r['p50_us']))} | {fmt(num(r['p99_us']))} | "
                         f"{fmt(num(r['max_us']))} |")
    return "\n".join(lines) if found else f"The /work mix: {MISSING}."


def block_cpu(run: Run) -> str:
    lines = ["| server | load | server CPU-µs per request | requests/s |", "|---|---|---:|---:|"]
    for server in run.servers():
        r = run.row(server, "http-c50") or run.row(server, "http-c1")
        if r and not r.get("variant"):
            lines.append(f"| {server} | {r['scenario']} | {fmt(num(r['cpu_us_per_req']), 2)} | "
                         f"{fmt(num(r['rps']), 0)} |")
    return "\n".join(lines)


COMPARE_WHAT = {"echo-64": "µs per message", "echo-16k": "µs per message",
                "idle-15k": "µs per request, 15k idle beside"}


def label(name: str) -> str:
    return name if name in sc.PEERS else f"step-{name}"


def block_compare(run: Run, n: str) -> str:
    """Server CPU per request, step n and the servers it is compared with,
    over the comparison's cells: the same run, the servers alternated."""
    others = list(sc.CAPS[n].compare)
    if not others:
        raise SystemExit(f"numbers:compare-{n}: steps/{n}-*/step.toml names no compare")
    servers = [label(n)] + [label(o) for o in others]
    head = ("| server CPU, the same run | " + " | ".join(servers) + " | "
            + " | ".join(f"{n} ÷ {o}" for o in others) + " |")
    lines = [head, "|---|" + "---:|" * (len(servers) + len(others))]
    found = False
    for s in sc.COMPARE_SCENARIOS:
        values = [run.value(server, s, "cpu_us_per_req") for server in servers]
        found |= values[0] is not None
        ratios = [fmt(values[0] / v, 2) + "×" if values[0] and v else "—" for v in values[1:]]
        what = COMPARE_WHAT.get(s, "µs per request")
        lines.append(f"| {s}: {what} | " + " | ".join(fmt(v, 2) for v in values) + " | "
                     + " | ".join(ratios) + " |")
    # Where it goes: the user-space share of the same cells' CPU (clock ticks).
    for part, what in (("user", "in user space"), ("kernel", "in the kernel")):
        values = []
        for server in servers:
            cpu = run.value(server, "http-c50", "cpu_us_per_req")
            share = run.value(server, "http-c50", "user_share")
            values.append(None if cpu is None or share is None
                          else cpu * (share if part == "user" else 1 - share))
        if any(v is not None for v in values):
            ratios = [fmt(values[0] / v, 2) + "×" if values[0] and v else "—" for v in values[1:]]
            lines.append(f"| http-c50: µs per request {what} | "
                         + " | ".join(fmt(v, 2) for v in values) + " | " + " | ".join(ratios)
                         + " |")
    calls = [run.value(server, "http-c50", "syscalls_per_req") for server in servers]
    lines.append("| http-c50: system calls per request | " + " | ".join(fmt(v, 2) for v in calls)
                 + " | " + " | ".join("" for _ in others) + " |")
    wakeups = [run.value(server, "http-c50", "wakeups_per_req") for server in servers]
    if any(v is not None for v in wakeups):
        lines.append("| http-c50: wake-ups per request | "
                     + " | ".join(fmt(v, 2) for v in wakeups) + " | "
                     + " | ".join("" for _ in others) + " |")
    return "\n".join(lines) if found else f"Step {n}'s comparison: {MISSING}."


def block_goals(run: Run, n: str) -> str:
    mine = [t for t in report.targets(run.rows) if re.search(rf"\bstep-{n}\b", t.what)]
    if not mine:
        raise SystemExit(f"numbers:goals-{n}: no performance target names step-{n}")
    lines = ["| target | measured | limit | result |", "|---|---|---|---|"]
    for t in mine:
        result = t.result if t.role == "target" else f"{t.result} (reported, not judged)"
        lines.append(f"| ({t.ref}) {t.what} | {t.measured} | {t.limit} | {result} |")
    return "\n".join(lines)


def block_idle_memory(run: Run) -> str:
    """Peak RSS with the largest idle crowd a server was measured with, less
    its RSS with none (http-c50), per idle connection held."""
    lines = ["| server | idle connections | KiB per idle connection (user space) |",
             "|---|---:|---:|"]
    crowds = ("idle-15k", "idle-5k", "idle-1k")
    for server in run.servers():
        base = run.row(server, "http-c50")
        for s in crowds:
            r = run.row(server, s)
            held = num(r.get("idle_held")) if r else None
            if not (base and r and held and not r.get("variant")):
                continue
            rss_b, rss_i = num(base["peak_rss_kib"]), num(r["peak_rss_kib"])
            if rss_b is not None and rss_i is not None:
                lines.append(f"| {server} | {held:,.0f} | {(rss_i - rss_b) / held:.2f} |")
            break
    return "\n".join(lines) if len(lines) > 2 else f"Memory per idle connection: {MISSING}."


PER_STEP = {"compare": block_compare, "goals": block_goals}

BLOCKS = {"run": block_run, "idle-cost": block_idle_cost, "thread-cost": block_thread_cost,
          "wakeups": block_wakeups, "herd": block_herd, "pool": block_pool, "cpu": block_cpu,
          "idle-memory": block_idle_memory}


def documents() -> list[Path]:
    return sorted({p for pattern in DOCS for p in ROOT.glob(pattern)})


def render(text: str, run: Run, where: str) -> str:
    def one(m):
        name = m.group(2)
        per_step = re.fullmatch(r"(\w+)-(\d\d)", name)
        if per_step and per_step.group(1) in PER_STEP:
            text = PER_STEP[per_step.group(1)](run, per_step.group(2))
        elif name in BLOCKS:
            text = BLOCKS[name](run)
        else:
            have = ", ".join([*BLOCKS, *(f"{k}-NN" for k in PER_STEP)])
            raise SystemExit(f"{where}: unknown numbers block {name!r} (have: {have})")
        return m.group(1) + text.rstrip("\n") + "\n" + m.group(4)

    return BLOCK.sub(one, text)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a block is stale")
    ap.add_argument("--csv", type=Path, help="another bench CSV (default: README's)")
    args = ap.parse_args(argv[1:])
    run = Run(args.csv or committed_csv())
    stale = []
    for path in documents():
        text = path.read_text()
        if "<!-- numbers:" not in text:
            continue
        new = render(text, run, str(path.relative_to(ROOT)))
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(ROOT)}",
              file=sys.stderr if args.check else sys.stdout)
    if args.check and stale:
        print("run tools/docs/numbers.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
