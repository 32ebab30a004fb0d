"""Cells (one server x one scenario x one client), their CSV rows, the
terminal table and progress bar, and the Markdown summary."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # run as a script: the bench's modules and tools/pylib
    sys.path[:0] = [str(Path(__file__).resolve().parent),
                    str(Path(__file__).resolve().parents[2] / "tools" / "pylib")]

import scenarios as sc  # noqa: E402
from measure import Config, Run  # noqa: E402

# The CSV's columns, in order (tools/bench/README.md says what each means).
MACHINE = ["date", "machine", "nproc", "kernel", "cpu", "compiler", "build_type", "commit",
           "pinning"]
WHAT = ["server", "step", "variant", "kind", "workers", "scenario", "mode", "client", "path",
        "size", "connections", "idle", "new_conn", "loop", "rate"]
RESULT = ["duration_s", "warmup_s", "runs", "rejected", "disturbed",
          "requests", "rps", "rps_min", "rps_max",
          "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
          "errors", "error_kinds", "idle_held",
          "cpu_s", "cpu_us_per_req", "cpu_us_per_req_min", "cpu_us_per_req_max", "user_share",
          "load_cpu_s", "peak_rss_kib", "threads", "ctx_switches", "ctx_per_req",
          "wakeups", "wakeups_per_req", "syscalls_per_req", "syscalls_top", "syscalls_method",
          "loadgen_vs_wrk", "foreign_cores", "steal_pct", "server_stats", "note"]
COLUMNS = MACHINE + WHAT + RESULT
RUN_COLUMNS = ["date", "commit", "server", "scenario", "client", "path", "seq", "t_s", "kept",
               "rps", "cpu_us_per_req", "p50_us", "p99_us", "errors", "foreign_cores",
               "steal_pct", "quiet_wait_s", "failure"]


def machine_info(bin_dir: Path, pinning: str) -> dict:
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    build = bin_dir.parent
    cache = {}
    try:
        for line in (build / "CMakeCache.txt").read_text().splitlines():
            key, _, value = line.partition("=")
            cache[key.split(":")[0]] = value
    except OSError:
        pass
    compiler = ""
    for f in sorted(build.glob("CMakeFiles/*/CMakeCXXCompiler.cmake")):
        text = f.read_text()
        ident = text.split('CMAKE_CXX_COMPILER_ID "', 1)[-1].split('"', 1)[0]
        version = text.split('CMAKE_CXX_COMPILER_VERSION "', 1)[-1].split('"', 1)[0]
        compiler = f"{ident} {version}"
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = git("describe", "--always", "--dirty", "--abbrev=10")
    return {"date": time.strftime("%Y-%m-%d"), "machine": platform.node() or "unknown",
            "nproc": os.cpu_count(), "kernel": platform.release(), "cpu": cpu,
            "compiler": compiler, "build_type": cache.get("CMAKE_BUILD_TYPE", ""),
            "commit": commit, "pinning": pinning}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclasses.dataclass
class Cell:
    contender: sc.Contender
    scenario: sc.Scenario
    client: str
    runs: list[Run] = dataclasses.field(default_factory=list)    # kept
    dropped: list[Run] = dataclasses.field(default_factory=list)  # rejected as disturbed
    failure: str = ""          # set when the server cannot run this at all
    syscalls: tuple[float, str, str] | None = None  # per request, the top ones, method
    vs_wrk: float | None = None

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if r.loads and not r.failure]

    def load_rps(self, i: int = 0) -> float | None:
        return median(r.loads[i].rps for r in self.good if len(r.loads) > i)

    def rows(self, machine: dict, cfg: Config) -> list[dict]:
        c, s = self.contender, self.scenario
        good = self.good
        paths = [l.path for l in good[0].loads] if good else [s.path]
        out = []
        for i, path in enumerate(paths):
            row = dict(machine)
            row.update(server=c.label, step=c.step, variant=c.variant, kind=c.kind,
                       workers=c.workers if c.workers is not None else "", scenario=s.name,
                       mode=s.mode, client=self.client, path=path,
                       size=s.size or "", connections=s.connections, idle=s.idle,
                       new_conn=int(s.new_conn), warmup_s=cfg.warmup,
                       runs=len(self.runs), rejected=len(self.dropped),
                       disturbed=sum(r.disturbed(cfg) for r in self.runs))
            loads = [r.loads[i] for r in good]
            notes = [self.failure] + [r.failure for r in self.runs if r.failure] + \
                [r.warning for r in self.runs if r.warning]
            if not loads:
                row["note"] = "; ".join(dict.fromkeys(n for n in notes if n))[:300]
                out.append(row)
                continue
            if s.mix:  # the two loads share one server: each gets its own row
                args = sc.MIX_HELLO if i == 0 else sc.MIX_WORK
                row["connections"] = int(args[args.index("--connections") + 1])
            # The run whose rps is the median speaks for the cell's other fields.
            rps = [l.rps for l in loads]
            mid = sorted(range(len(good)), key=lambda k: rps[k])[len(good) // 2]
            r, l = good[mid], loads[mid]
            cpu = [g.cpu_us_per_req for g in good]
            row.update(
                loop=l.loop, rate=l.rate if l.rate is not None else "",
                duration_s=round(l.duration, 3), requests=l.requests,
                rps=round(median(rps), 1), rps_min=round(min(rps), 1),
                rps_max=round(max(rps), 1),
                errors=sum(x.error_total for x in loads),
                error_kinds=" ".join(f"{k}={sum(x.errors.get(k, 0) for x in loads)}"
                                     for k in sorted({k for x in loads for k in x.errors})),
                idle_held=r.idle_held if r.idle_held is not None else "",
                cpu_s=round(r.server_cpu, 3), load_cpu_s=round(r.load_cpu, 3),
                peak_rss_kib=r.peak_rss_kib, threads=r.threads,
                ctx_switches=r.ctx_switches if r.ctx_switches is not None else "",
                ctx_per_req=fmt(r.ctx_per_req, 3),
                wakeups=r.wakeups if r.wakeups is not None else "",
                wakeups_per_req=fmt(median(g.wakeups_per_req for g in good), 3),
                foreign_cores=round(max(g.foreign_cores for g in good), 3),
                steal_pct=round(max(g.steal_pct for g in good), 2),
                server_stats=json.dumps(r.stats, separators=(",", ":")) if r.stats else "",
                note="; ".join(dict.fromkeys(n for n in notes if n))[:300])
            for p in ("p50", "p90", "p99", "p999", "max"):
                row[f"{p}_us"] = fmt(median(x.lat.get(p) for x in loads), 0)
            shares = [g.user_share for g in good if g.user_share is not None]
            if shares:
                row["user_share"] = fmt(median(shares), 3)
            if any(v is not None for v in cpu):
                row.update(cpu_us_per_req=fmt(median(cpu), 2),
                           cpu_us_per_req_min=fmt(min(v for v in cpu if v is not None), 2),
                           cpu_us_per_req_max=fmt(max(v for v in cpu if v is not None), 2))
            if self.syscalls and i == 0:
                row.update(syscalls_per_req=round(self.syscalls[0], 2),
                           syscalls_top=self.syscalls[1], syscalls_method=self.syscalls[2])
            if self.vs_wrk is not None:
                row["loadgen_vs_wrk"] = round(self.vs_wrk, 3)
            out.append(row)
        return out

    def run_rows(self, machine: dict) -> list[dict]:
        out = []
        for kept, runs in ((1, self.runs), (0, self.dropped)):
            for r in runs:
                for l in r.loads or [None]:
                    out.append({"date": machine["date"], "commit": machine["commit"],
                                "server": self.contender.label, "scenario": self.scenario.name,
                                "client": self.client, "path": l.path if l else "",
                                "seq": r.seq, "t_s": round(r.started, 1), "kept": kept,
                                "rps": l.rps if l else "",
                                "cpu_us_per_req": fmt(r.cpu_us_per_req, 2),
                                "p50_us": l.lat.get("p50") if l else "",
                                "p99_us": l.lat.get("p99") if l else "",
                                "errors": l.error_total if l else "",
                                "foreign_cores": round(r.foreign_cores, 3),
                                "steal_pct": round(r.steal_pct, 2),
                                "quiet_wait_s": round(r.quiet_wait, 2), "failure": r.failure})
        return out


def fmt(v, digits: int):
    if v is None:
        return ""
    return round(v, digits) if digits else int(round(v))


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def merge(old: list[dict], new: list[dict], key: tuple[str, ...]) -> list[dict]:
    """old's rows that new does not measure again, then new's."""
    fresh = {tuple(str(r[k]) for k in key) for r in new}
    return [r for r in old if tuple(str(r.get(k, "")) for k in key) not in fresh] + new


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------
# The terminal

TTY = sys.stderr.isatty()


def human(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 100_000:
        return f"{v / 1000:.0f}k"
    if v >= 10_000:
        return f"{v / 1000:.1f}k"
    return f"{v:,.0f}"


class Progress:
    """A bar on stderr, redrawn in place on a terminal; a line per scenario otherwise."""

    def __init__(self, total: int):
        self.total, self.done = total, 0
        self.started = time.monotonic()
        self.label = ""

    def add(self, n: int) -> None:
        self.total += n

    def step(self, label: str) -> None:
        self.label = label
        self.draw()

    def finish_one(self) -> None:
        self.done += 1
        self.draw()

    def eta(self) -> float:
        spent = time.monotonic() - self.started
        return spent / self.done * (self.total - self.done) if self.done else 0.0

    def draw(self) -> None:
        if not TTY:
            return
        width = 28
        filled = round(width * self.done / max(self.total, 1))
        spent = time.monotonic() - self.started
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} runs "
                f"{spent:4.0f}s, ~{self.eta():.0f}s left  {self.label}")
        sys.stderr.write("\r\033[K" + line[:150])
        sys.stderr.flush()

    def clear(self) -> None:
        if TTY:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def say(self, text: str) -> None:
        """A line above the bar."""
        self.clear()
        print(text, flush=True)
        self.draw()


HEAD = ("server", "client", "req/s (min-max)", "CPU µs/req", "p50 µs", "p99 µs", "errors",
        "wakeups/req", "syscalls/req", "threads", "RSS MiB", "note")
WIDTHS = (12, 7, 24, 10, 7, 8, 6, 11, 12, 7, 7, 0)


def table_line(cells) -> str:
    out = []
    for text, w in zip(cells, WIDTHS):
        text = str(text)
        out.append(text if not w else (text.rjust(w) if text[:1].isdigit() or text == "-"
                                       else text.ljust(w)))
    return "  " + " ".join(out)


def shown(v) -> str:
    return "-" if v in ("", None) else str(v)


def table_rows(rows: list[dict]) -> list[str]:
    lines = []
    for r in rows:
        who = r["server"] + ("" if r["path"] in ("/hello", "") else f" {r['path']}")
        if r.get("rps") in ("", None):
            lines.append(table_line([who, r["client"], "-", "", "", "", "", "", "", "", "",
                                     r.get("note", "")]))
            continue
        spread = f"{human(float(r['rps']))} ({human(float(r['rps_min']))}-" \
                 f"{human(float(r['rps_max']))})"
        note = []
        if r.get("loadgen_vs_wrk") not in ("", None) and r["client"] == "wrk":
            note.append(f"loadgen/wrk {float(r['loadgen_vs_wrk']):.2f}")
        if r.get("idle_held") not in ("", None) and int(r["idle_held"]) < int(r["idle"]):
            note.append(f"held {r['idle_held']} of {r['idle']} idle")
        if r.get("error_kinds"):
            note.append(r["error_kinds"])
        if int(r.get("rejected") or 0):
            note.append(f"{r['rejected']} rejected")
        if int(r.get("disturbed") or 0):
            note.append(f"{r['disturbed']} disturbed")
        if r.get("note"):
            note.append(r["note"][:60])
        rss = r.get("peak_rss_kib")
        lines.append(table_line([
            who, r["client"], spread, r.get("cpu_us_per_req") or "-", r.get("p50_us") or "-",
            r.get("p99_us") or "-", r.get("errors") or 0, shown(r.get("wakeups_per_req")),
            shown(r.get("syscalls_per_req")), r.get("threads") or "-",
            f"{int(rss) / 1024:.1f}" if rss not in ("", None) else "-", ", ".join(note)]))
    return lines


# --------------------------------------------------------------------------
# Markdown (results/README.md and the README's Measure section)

def markdown_summary(rows: list[dict]) -> str:
    """One line per server: the figures that carry the lessons."""
    by = {}
    for r in rows:
        if r["client"] == "loadgen" and r.get("rps") not in ("", None):
            by[(r["server"], r["scenario"], r["path"])] = r
    servers = list(dict.fromkeys(r["server"] for r in rows))

    def rps(server, scenario, path="/hello"):
        r = by.get((server, scenario, path))
        if not r:
            return ""
        return f"{human(float(r['rps']))} ({human(float(r['rps_min']))}–" \
               f"{human(float(r['rps_max']))})"

    def col(server, scenario, key):
        r = by.get((server, scenario, "/hello"))
        return r.get(key, "") if r else ""

    lines = ["| server | req/s, 1 conn | req/s, 50 conns | CPU µs/req (50) | p99 µs (50) "
             "| wakeups/req (50) | syscalls/req (50) | req/s, 50 + 15k idle "
             "| new conn/s | /hello p99 µs beside /work |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in servers:
        lines.append("| " + " | ".join([
            s, rps(s, "http-c1"), rps(s, "http-c50"), col(s, "http-c50", "cpu_us_per_req"),
            col(s, "http-c50", "p99_us"), col(s, "http-c50", "wakeups_per_req"),
            col(s, "http-c50", "syscalls_per_req"), rps(s, "idle-15k") or
            (f"wall at {col(s, 'idle-1k', 'idle_held')} idle"
             if col(s, "idle-1k", "idle_held") not in ("", None) and
             int(col(s, "idle-1k", "idle_held")) < 1000 else ""),
            rps(s, "newconn-c50"), col(s, "mix-work", "p99_us")]) + " |")
    return "\n".join(lines)


def idle_markdown(rows: list[dict]) -> str:
    curve = {}
    for r in rows:
        if r["client"] != "loadgen" or r.get("rps") in ("", None):
            continue
        if r["scenario"] == "http-c50" or r["scenario"].startswith("idle-"):
            curve.setdefault(r["server"], {})[int(r["idle"])] = r
    idles = sorted({i for v in curve.values() for i in v})
    if len(idles) < 2:
        return ""
    head = "| server | " + " | ".join(f"{i:,} idle" for i in idles) + " |"
    lines = [head, "|---|" + "---:|" * len(idles)]
    for server, points in curve.items():
        if len(points) < 2:
            continue
        cells = []
        for i in idles:
            r = points.get(i)
            if not r:
                cells.append("")
                continue
            cell = f"{human(float(r['rps']))} req/s, {r['cpu_us_per_req']} µs"
            if r.get("idle_held") not in ("", None) and int(r["idle_held"]) < i:
                cell += f" (held {r['idle_held']})"
            cells.append(cell)
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(rows: list[dict], csv_name: str, machine: dict, pngs: list[Path]) -> str:
    """results/README.md: what this run measured, on what, and its plots."""
    m = machine
    wrk = [r for r in rows if r["client"] == "wrk" and r.get("loadgen_vs_wrk")]
    cells = {(r["server"], r["scenario"], r["client"]): r for r in rows}.values()
    rejected = sum(int(r.get("rejected") or 0) for r in cells)
    disturbed = sum(int(r.get("disturbed") or 0) for r in cells)
    runs = sum(int(r.get("runs") or 0) for r in cells)
    commits = ", ".join(f"`{c}`" for c in dict.fromkeys(r["commit"] for r in rows))
    parts = [
        "# Bench results",
        "",
        f"Generated by the bench (`make bench`, `make bench-full`: tools/bench/bench.py) into `{csv_name}` "
        f"(one row per server × scenario × client; `-runs.csv` has every run). "
        "Method and columns: [tools/bench/README.md](../tools/bench/README.md).",
        "",
        f"Machine `{m['machine']}`: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, "
        f"{m['compiler']} {m['build_type']}, commit {commits}, {m['date']}; "
        f"pinning: {m['pinning']}. Each cell is the median of its runs with min–max; "
        f"servers alternated A B B A; {runs} runs kept, {rejected} more rejected as "
        f"disturbed and re-run, {disturbed} kept although disturbed.",
        "",
        markdown_summary(rows),
        "",
    ]
    parts += ["## The performance targets", "",
              "Computed from this CSV by `report.targets` (tools/bench/README.md, \"Targets\"): "
              "ratios of medians within one run, with the ratio over the runs' extremes; "
              "*reported* lines stand beside a target and are not judged.", "",
              targets_table(rows), ""]
    idle = idle_markdown(rows)
    if idle:
        parts += ["Idle scaling (50 active connections; req/s and server CPU µs/request):",
                  "", idle, ""]
    if wrk:
        parts += ["loadgen vs wrk on the same server (rps ratio, > 1: loadgen is faster): " +
                  ", ".join(f"{r['server']} {r['scenario']} {float(r['loadgen_vs_wrk']):.2f}"
                            for r in wrk), ""]
    for png in pngs:
        parts += [f"![{png.stem}]({png.name})", ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------
# The performance targets, computed from a CSV's rows (a fresh run's, or a
# committed one: tools/bench/plot.py CSV regenerates the table).

TARGET_LIMITS = {
    "a": 0.85,   # best 2-worker step's CPU µs/req over nginx's (same workers), at most
    "b": 1.05,   # step 08's (one worker) CPU µs/req over the floor's, at most
    "c": 0.95,   # step 08's (one worker) echo messages per CPU-second over the floor's, at least
    "d": 0.90,   # throughput with 15k idle over without, at least
    "d_rss": 4.0,  # KiB of resident memory per idle connection, at most
    "e": 2.02,   # syscalls per request besides the event wait: a read and a write, at most
}
# The event waits, whose share per request is amortised over the events a wait returns.
WAIT_SYSCALLS = ("epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select",
                 "pselect6", "io_uring_enter")


@dataclasses.dataclass
class Target:
    """One line of the targets table."""

    ref: str               # the bullet: a, b, c, d, e
    what: str              # the comparison, in words
    measured: str          # the figure, and what it was computed from
    limit: str             # "≤ 0.85×"
    result: str            # "pass", "fail", "not measured"
    role: str = "target"   # "target": judged; "reported": shown beside a target, not judged
    value: float | None = None

    @property
    def figure(self) -> str:
        """The measured figure alone ("0.83×"), or why there is none."""
        return self.measured.split(" (", 1)[0] if self.value is not None else self.measured

    @property
    def detail(self) -> str:
        """What the figure was computed from."""
        if self.value is None or " (" not in self.measured:
            return ""
        return self.measured.split(" (", 1)[1].removesuffix(")")

    @property
    def shown_result(self) -> str:
        if self.role == "target" or self.result == "not measured":
            return self.result
        return {"pass": "within (reported)", "fail": "over (reported)"}[self.result]


def _num(row: dict | None, key: str) -> float | None:
    try:
        return float(row[key]) if row is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def _measured_cells(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """{(server, scenario): row} of the loadgen rows that measured something."""
    out = {}
    for r in rows:
        if r.get("client") == "loadgen" and r.get("path", "/hello") in ("/hello", "") \
                and _num(r, "rps") is not None and _num(r, "cpu_us_per_req") is not None:
            out[(r["server"], r["scenario"])] = r
    return out


def _spread(a: dict, b: dict, key: str, invert: bool = False) -> str:
    """The ratio a/b over the runs' extremes: "0.81–0.93"."""
    a_lo, a_hi, b_lo, b_hi = (_num(a, f"{key}_min"), _num(a, f"{key}_max"),
                              _num(b, f"{key}_min"), _num(b, f"{key}_max"))
    if None in (a_lo, a_hi, b_lo, b_hi) or not (a_lo and b_lo):
        return ""
    lo, hi = a_lo / b_hi, a_hi / b_lo
    if invert:
        lo, hi = 1 / hi, 1 / lo
    return f"runs {lo:.2f}–{hi:.2f}"


def _workers(row: dict) -> str:
    return str(row.get("workers") or "")


def _judge(value: float, limit: float, at_most: bool) -> str:
    return "pass" if (value <= limit if at_most else value >= limit) else "fail"


def targets(rows: list[dict]) -> list[Target]:
    """Every performance target the bench can measure, from a CSV's rows:
    the measured value, the limit, pass / fail / not measured. Ratios are of
    medians within the rows given (one bench run: the servers alternated);
    "runs lo–hi" is the same ratio over the runs' extremes."""
    cells = _measured_cells(rows)
    out: list[Target] = []
    lim = TARGET_LIMITS

    # (a) the best step with N workers (08 or 09) against nginx with N workers.
    for scenario in ("http-c50", "http-c200"):
        what = f"{scenario}: best of step-08/09 ÷ nginx, server CPU µs/request (same workers)"
        limit = f"≤ {lim['a']:.2f}×"
        nginx = cells.get(("nginx", scenario))
        steps = [cells[k] for k in (("step-08", scenario), ("step-09", scenario)) if k in cells]
        if not nginx or not steps:
            missing = ", ".join(n for n, got in (("nginx", nginx), ("step-08/09", steps))
                                if not got)
            out.append(Target("a", what, f"no {missing} row here", limit, "not measured"))
            continue
        same = [r for r in steps if _workers(r) == _workers(nginx)]
        if not same:
            out.append(Target("a", what, "worker counts differ: nginx " + _workers(nginx) +
                              ", " + ", ".join(f"{r['server']} {_workers(r)}" for r in steps),
                              limit, "not measured"))
            continue
        best = min(same, key=lambda r: _num(r, "cpu_us_per_req"))
        value = _num(best, "cpu_us_per_req") / _num(nginx, "cpu_us_per_req")
        workers = (f"{_workers(nginx)} workers each" if _workers(nginx)
                   else "worker counts not recorded")
        detail = ", ".join(x for x in (_spread(best, nginx, "cpu_us_per_req"), workers) if x)
        out.append(Target("a", what, f"{value:.2f}× ({best['server']} "
                                     f"{best['cpu_us_per_req']} µs, nginx "
                                     f"{nginx['cpu_us_per_req']} µs; {detail})",
                          limit, _judge(value, lim["a"], True), value=value))

    # (b) step 08 with one worker (one loop, the short-read cut) against the
    # hand-written floor: http-c50 judged, c200 reported.
    for scenario, role in (("http-c50", "target"), ("http-c200", "reported")):
        what = f"{scenario}: step-08 (1 worker) ÷ floor, server CPU µs/request"
        limit = f"≤ {lim['b']:.2f}×"
        step, floor = cells.get(("step-08-one", scenario)), cells.get(("floor", scenario))
        if not step or not floor:
            out.append(Target("b", what, "no step-08-one or floor row here", limit,
                              "not measured", role))
            continue
        value = _num(step, "cpu_us_per_req") / _num(floor, "cpu_us_per_req")
        detail = _spread(step, floor, "cpu_us_per_req")
        out.append(Target("b", what, f"{value:.2f}× (step-08 {step['cpu_us_per_req']} µs, "
                                     f"floor {floor['cpu_us_per_req']} µs"
                                     + (f"; {detail})" if detail else ")"),
                          limit, _judge(value, lim["b"], True), role, value))

    # (c) echo ping-pong: step 08's (one worker) messages per CPU-second over the floor's.
    for scenario in ("echo-64", "echo-16k"):
        what = f"{scenario}: step-08 (1 worker) ÷ floor, echo messages per server CPU-second"
        limit = f"≥ {lim['c']:.2f}×"
        step, floor = cells.get(("step-08-one", scenario)), cells.get(("floor", scenario))
        if not step or not floor:
            out.append(Target("c", what, "no step-08-one or floor row here", limit,
                              "not measured"))
            continue
        value = _num(floor, "cpu_us_per_req") / _num(step, "cpu_us_per_req")
        detail = _spread(step, floor, "cpu_us_per_req", invert=True)
        out.append(Target("c", what, f"{value:.2f}× (step-08 "
                                     f"{human(1e6 / _num(step, 'cpu_us_per_req'))}, floor "
                                     f"{human(1e6 / _num(floor, 'cpu_us_per_req'))} msg/CPU-s"
                                     + (f"; {detail})" if detail else ")"),
                          limit, _judge(value, lim["c"], False), value=value))

    # (d) C10K: 15,000 idle beside 50 active connections, against none.
    for n in [n for n, caps in sc.CAPS.items() if caps.c10k]:
        server = f"step-{n}"
        base, idle = cells.get((server, "http-c50")), cells.get((server, "idle-15k"))
        what_rps = f"C10K {server}: req/s with 15k idle ÷ without (http-c50)"
        what_cpu = f"C10K {server}: requests per CPU-second with 15k idle ÷ without (steadier)"
        what_rss = f"C10K {server}: resident memory per idle connection"
        limit = f"≥ {lim['d']:.2f}×"
        limit_rss = f"≤ {lim['d_rss']:g} KiB"
        if not base or not idle:
            missing = "http-c50" if not base else "idle-15k"
            for what, role, lm in ((what_rps, "target", limit), (what_cpu, "reported", limit),
                                   (what_rss, "target", limit_rss)):
                out.append(Target("d", what, f"no {missing} row here", lm, "not measured",
                                  role))
            continue
        held = _num(idle, "idle_held")
        wanted = int(_num(idle, "idle") or 15000)
        short = held is not None and held < 0.99 * wanted
        held_note = f"; held {held:,.0f} of {wanted:,} idle" if short else ""
        value = _num(idle, "rps") / _num(base, "rps")
        detail = _spread(idle, base, "rps")
        out.append(Target("d", what_rps, f"{value:.2f}× ({human(_num(idle, 'rps'))} / "
                                         f"{human(_num(base, 'rps'))} req/s"
                                         + (f"; {detail}" if detail else "") + held_note + ")",
                          limit, "fail" if short else _judge(value, lim["d"], False),
                          value=value))
        value = _num(base, "cpu_us_per_req") / _num(idle, "cpu_us_per_req")
        detail = _spread(idle, base, "cpu_us_per_req", invert=True)
        out.append(Target("d", what_cpu, f"{value:.2f}× ({base['cpu_us_per_req']} → "
                                         f"{idle['cpu_us_per_req']} µs/request"
                                         + (f"; {detail}" if detail else "") + ")",
                          limit, _judge(value, lim["d"], False), "reported", value))
        rss_b, rss_i = _num(base, "peak_rss_kib"), _num(idle, "peak_rss_kib")
        count = held if held else None
        if rss_b is None or rss_i is None or not count:
            out.append(Target("d", what_rss, "no peak RSS or idle count", limit_rss,
                              "not measured"))
            continue
        value = (rss_i - rss_b) / count
        out.append(Target("d", what_rss, f"{value:.2f} KiB (peak RSS {rss_i / 1024:.1f} MiB "
                                         f"with {count:,.0f} idle − {rss_b / 1024:.1f} MiB "
                                         f"without; user space only, not socket buffers)",
                          limit_rss, "fail" if short else _judge(value, lim["d_rss"], True),
                          value=value))

    # (e) syscalls per request beyond the read, the write and a share of the
    # wait: judged on the steps with nginx's short-read cut (08, 09); a step
    # that reads on to EAGAIN (06) makes one read more: reported, not judged.
    for n in [n for n, caps in sc.CAPS.items() if caps.syscalls_target]:
        server = f"step-{n}"
        what = f"http-c50 {server}: syscalls per request besides the event wait"
        limit = f"≤ {lim['e']:.2f}"
        r = cells.get((server, "http-c50"))
        total = _num(r, "syscalls_per_req")
        if total is None:
            out.append(Target("e", what, "no syscalls pass here", limit, "not measured"))
            continue
        words = (r.get("syscalls_top") or "").split()
        parts = {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}
        waits = sum(v for k, v in parts.items() if k in WAIT_SYSCALLS)
        value = total - waits
        # strace's short pass is not judged: it slows the server (fewer waits and
        # EAGAIN reads) and amortises 50 accepts and closes over 2,000 requests.
        method = r.get("syscalls_method") or "strace"
        caveat = "" if method == "perf" else "; strace: slowed, and a short pass"
        if sc.CAPS[n].syscalls_target != "judged":
            caveat += "; reads on to EAGAIN: the classic drain, one read more"
        judged = method == "perf" and sc.CAPS[n].syscalls_target == "judged"
        out.append(Target("e", what, f"{value:.2f} ({method}: {total:.2f} in all, "
                                     f"{waits:.2f} waits; {r.get('syscalls_top')}{caveat})",
                          limit, _judge(value, lim["e"], True),
                          "target" if judged else "reported", value))
    # (f) a step's CPU per request against another's (step.toml: cpu_goal).
    def label(name: str) -> str:
        return name if name in sc.PEERS else f"step-{name}"

    for n, caps in sc.CAPS.items():
        if not caps.cpu_goal:
            continue
        other, at_most = caps.cpu_goal[0], float(caps.cpu_goal[1])
        what = f"http-c50: step-{n} ÷ {label(other)}, server CPU µs/request"
        mine, theirs = cells.get((f"step-{n}", "http-c50")), cells.get((label(other), "http-c50"))
        limit = f"≤ {at_most:.2f}×"
        if not mine or not theirs:
            out.append(Target("f", what, f"no step-{n} or {label(other)} row here", limit,
                              "not measured"))
            continue
        value = _num(mine, "cpu_us_per_req") / _num(theirs, "cpu_us_per_req")
        detail = _spread(mine, theirs, "cpu_us_per_req")
        out.append(Target("f", what, f"{value:.2f}× ({mine['cpu_us_per_req']} µs vs "
                                     f"{theirs['cpu_us_per_req']} µs"
                                     + (f"; {detail}" if detail else "") + ")",
                          limit, _judge(value, at_most, True), value=value))

    # (g) memory per idle connection against another server's (idle_memory_goal).
    def per_idle(name: str) -> float | None:
        base, idle = cells.get((name, "http-c50")), cells.get((name, "idle-15k"))
        held = _num(idle, "idle_held") if idle else None
        if not base or not idle or not held:
            return None
        rss_b, rss_i = _num(base, "peak_rss_kib"), _num(idle, "peak_rss_kib")
        return None if rss_b is None or rss_i is None else (rss_i - rss_b) / held

    for n, caps in sc.CAPS.items():
        if not caps.idle_memory_goal:
            continue
        other, at_most = caps.idle_memory_goal[0], float(caps.idle_memory_goal[1])
        what = f"idle-15k: step-{n} ÷ {label(other)}, resident memory per idle connection"
        limit = f"≤ {at_most:.2f}×"
        mine, theirs = per_idle(f"step-{n}"), per_idle(label(other))
        if mine is None or not theirs:
            out.append(Target("g", what, f"no idle-15k and http-c50 rows for step-{n} and "
                                         f"{label(other)} here", limit, "not measured"))
            continue
        value = mine / theirs
        out.append(Target("g", what, f"{value:.2f}× ({mine:.2f} KiB vs {theirs:.2f} KiB, "
                                     "user space only)", limit, _judge(value, at_most, True),
                          value=value))
    return out


def _tally(ts: list[Target]) -> str:
    judged = [t for t in ts if t.role == "target"]
    counts = {k: sum(t.result == k for t in judged) for k in ("pass", "fail", "not measured")}
    text = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing measured"
    if counts["not measured"]:
        text += " (every target's cells: `tools/bench/bench.py --set targets`)"
    return text


def targets_table(rows: list[dict]) -> str:
    """The targets as a Markdown table, for results/README.md."""
    ts = targets(rows)
    lines = ["| | what | measured | limit | result | from |", "|---|---|---:|---|---|---|"]
    for t in ts:
        result = f"**{t.result}**" if t.role == "target" and t.result != "not measured" \
            else t.shown_result
        lines.append(f"| {t.ref} | {t.what} | {t.figure} | {t.limit} | {result} | "
                     f"{t.detail} |")
    return "\n".join(lines) + f"\n\nTargets: {_tally(ts)}."


def targets_markdown(rows: list[dict]) -> str:
    """A short block for the top README: where the figures come from, and one
    line per target (value, limit, result)."""
    ts = targets(rows)
    r = rows[0] if rows else {}
    commits = ", ".join(f"`{c}`" for c in dict.fromkeys(x.get("commit", "") for x in rows))
    lines = ["The performance targets — the fastest rung's CPU per request against nginx "
             "and against the cheapest epoll server one file can be (tools/floor), idle "
             "connections that cost nothing, two system calls per request — measured by "
             f"the bench on {r.get('date', '?')} "
             f"(`{r.get('machine', '?')}`, {r.get('nproc', '?')} CPUs, commit {commits or '?'}; "
             f"pinning: {r.get('pinning', '?')}): {_tally(ts)}. What each figure is computed "
             "from, and its spread over the runs: [results/README.md](results/README.md); the "
             "method: [tools/bench/README.md](tools/bench/README.md#the-performance-targets).", "",
             "| target | measured | limit | result |", "|---|---:|---:|---|"]
    for t in ts:
        lines.append(f"| ({t.ref}) {t.what} | {t.figure} | {t.limit} | {t.shown_result} |")
    return "\n".join(lines)


README_BEGIN = "<!-- bench:begin "  # + the CSV's path, then " -->"
README_END = "<!-- bench:end -->"


def readme_block(rows: list[dict], csv_rel: str) -> str:
    """The top README's numbers, between its bench markers: a few columns per
    server, the two plots that carry the lessons, and the targets. plot.py
    writes it; the suite checks it still matches the committed CSV."""
    by = {(r["server"], r["scenario"]): r for r in rows
          if r["client"] == "loadgen" and r.get("rps") not in ("", None)
          and r.get("path", "/hello") in ("/hello", "")}
    servers = [s for s in dict.fromkeys(r["server"] for r in rows)
               if (s, "http-c50") in by or (s, "http-c1") in by]

    def cell(server, scenario, key, fmt):
        r = by.get((server, scenario))
        v = _num(r, key)
        return fmt(v) if v is not None else ""

    def held(server):
        r = by.get((server, "idle-15k"))
        if r and _num(r, "idle_held") is not None and _num(r, "idle_held") < _num(r, "idle"):
            return f" (held {int(_num(r, 'idle_held')):,})"
        return ""

    lines = [f"{README_BEGIN}{csv_rel} -->",
             "| server | req/s, 50 conns | server CPU µs/req | req/s, + 15k idle "
             "| CPU µs/req, + 15k idle | syscalls/req |",
             "|---|---:|---:|---:|---:|---:|"]
    for s in servers:
        lines.append("| " + " | ".join([
            s,
            cell(s, "http-c50", "rps", human) or cell(s, "http-c1", "rps", human) + " (1 conn)",
            cell(s, "http-c50", "cpu_us_per_req", lambda v: f"{v:.2f}"),
            cell(s, "idle-15k", "rps", human) + held(s),
            cell(s, "idle-15k", "cpu_us_per_req", lambda v: f"{v:.2f}"),
            cell(s, "http-c50", "syscalls_per_req", lambda v: f"{v:.2f}")]) + " |")
    lines += ["", "![throughput and CPU per request](results/rps-cpu.png)", "",
              "![idle scaling](results/idle-scaling.png)", "", targets_markdown(rows),
              README_END]
    return "\n".join(lines)


def replace_readme_block(readme: str, block: str) -> str | None:
    """readme with its bench block replaced, or None when it has no markers."""
    start = readme.find(README_BEGIN)
    end = readme.find(README_END, start)
    if start < 0 or end < 0:
        return None
    return readme[:start] + block + readme[end + len(README_END):]


def refresh_readme(csv_path: Path, rows: list[dict], any_csv: bool = False) -> Path | None:
    """Rewrites the top README's bench block from rows when csv_path is in the
    repository's results/ and is the CSV the block names (any_csv: or any
    CSV there: plot.py CSV makes that run the README's). The README path when
    it was rewritten."""
    root = Path(__file__).resolve().parents[2]
    readme = root / "README.md"
    if csv_path.resolve().parent != (root / "results").resolve() or not readme.exists():
        return None
    text = readme.read_text()
    name = f"results/{csv_path.name}"
    if not any_csv and f"{README_BEGIN}{name} -->" not in text:
        return None
    new = replace_readme_block(text, readme_block(rows, name))
    if new is None or new == text:
        return None
    readme.write_text(new)
    return readme


def targets_lines(rows: list[dict]) -> list[str]:
    """The targets for the terminal."""
    ts = targets(rows)
    out = []
    for t in ts:
        if t.value is None:
            continue
        result = t.result.upper() if t.role == "target" else t.shown_result
        out.append(f"  ({t.ref}) {result:17} {t.figure + ' ' + t.limit:16} {t.what}")
        out.append(f"      {'':17} {'':16} {t.detail}")
    missing = [t for t in ts if t.value is None]
    if missing:  # one line: a narrow run measures few targets
        out.append("  not measured here: " + "; ".join(dict.fromkeys(
            f"({t.ref}) {t.what.split(':')[0]}" for t in missing)))
    out.append(f"  targets: {_tally(ts)}")
    return out


def main(argv: list[str]) -> int:
    """report.py CSV [--table | --lines]: the performance targets from a bench CSV;
    by default the block for the top README (targets_markdown)."""
    import argparse
    p = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    p.add_argument("csv", type=Path)
    how = p.add_mutually_exclusive_group()
    how.add_argument("--table", action="store_true", help="results/README.md's table")
    how.add_argument("--lines", action="store_true", help="the terminal's lines")
    args = p.parse_args(argv)
    rows = read_csv(args.csv)
    if args.lines:
        print("\n".join(targets_lines(rows)))
    else:
        print(targets_table(rows) if args.table else targets_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
