"""What the bench runs: the servers (discovered), the scenarios, and which
scenario makes sense for which server.

Steps come from build/bin/step-NN; nothing here lists them. What a step
cannot do is the [bench] section of its steps/NN-name/step.toml (and its
variants there): a step without one is an ordinary concurrent server and
runs everything.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from ladder import steps as step_info  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Caps:
    max_conns: int | None = None  # concurrent clients the model serves (01: one)
    max_idle: int | None = None   # idle crowd worth measuring (select: FD_SETSIZE)
    quick_max_idle: int | None = None  # the same, in the default set (time)
    modes: tuple[str, ...] = ("http", "echo")
    curve: bool = False           # in the default set's idle-scaling curve
    mix: bool = False             # runs the /work + /hello mix (a pool, or its contrast)
    pool: bool = False            # the pool step: the mix exists for it
    wrk: bool = False             # compared with wrk in the default set
    stats: bool = True            # answers GET /stats (wakeups per request)
    one_loop: bool = False        # serves every connection from one thread (workers = 1)
    loops_flag: str = ""          # the flag that sets its loop count: the bench passes --loops
    args: tuple[str, ...] = ()
    hotpath: bool = False         # in make hotpath's default list (tools/profile/hotpath.py)
    # Which performance targets name it (report.targets; cells in TARGET_CELLS):
    c10k: bool = False            # (d): 15k idle beside 50 active, against none
    syscalls_target: str = ""     # (e): "judged" or "reported" (a step that reads to EAGAIN)
    cpu_goal: tuple = ()          # (f): ("06", 1.10): CPU µs/request at most 1.10× step 06's
    idle_memory_goal: tuple = ()  # (g): ("go", 1.0): memory per idle connection ≤ go's
    compare: tuple = ()           # ("06", "floor"): beside it in every COMPARE_SCENARIOS cell
    why: str = ""                 # shown when a scenario is skipped for this server


def caps_of(section: dict) -> Caps:
    keys = {k: v for k, v in section.items() if k != "variants"}
    for key in ("args", "modes", "cpu_goal", "idle_memory_goal", "compare"):
        if key in keys:
            keys[key] = tuple(keys[key])
    return Caps(**keys)


# "NN" -> Caps, and "NN" -> {variant: Caps}, from every step's description.
STEPS = step_info.all_steps()
CAPS: dict[str, Caps] = {n: caps_of(s.bench) for n, s in STEPS.items()}
VARIANTS: dict[str, dict[str, Caps]] = {
    n: {name: caps_of(v) for name, v in step_info.variants(s.bench).items()}
    for n, s in STEPS.items()}
PEERS: dict[str, Caps] = {
    "floor": Caps(wrk=True, one_loop=True),  # HTTP /hello and echo (--mode echo)
    "nginx": Caps(modes=("http",), wrk=True, stats=False, why="HTTP only here"),
    # tools/reference/go: a goroutine per connection, Go's netpoller underneath:
    # step 10's model, built by Go's runtime. On the idle curve for its memory.
    "go": Caps(stats=False, curve=True),
}


@dataclasses.dataclass(frozen=True)
class Contender:
    """One server under test: a step (maybe a variant of it) or a peer."""

    name: str            # "05", "02-processes", "floor", "nginx"
    kind: str            # "step" | "peer"
    step: str            # "05", "floor", "nginx"
    variant: str         # "" or the variant's name
    binary: Path | None  # None for nginx (found on PATH)
    caps: Caps
    workers: int | None = None  # event loops / worker processes; None: not fixed (02, 07)

    @property
    def label(self) -> str:
        return f"step-{self.name}" if self.kind == "step" else self.name


def help_variants(binary: Path) -> list[str]:
    """`--variant a|b|c` in a step's --help: its variants, in order."""
    try:
        text = subprocess.run([str(binary), "--help"], capture_output=True, text=True,
                              timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    m = re.search(r"--variant\s+([\w-]+(?:\|[\w-]+)+)", text)
    return m.group(1).split("|") if m else []


def with_loops(caps: Caps, loops: int) -> tuple[Caps, int | None]:
    """The caps with the loop count on the command line, and the worker count."""
    if caps.one_loop:
        return caps, 1
    if caps.loops_flag:
        return dataclasses.replace(caps, args=(*caps.args, caps.loops_flag, str(loops))), loops
    return caps, (1 if caps.one_loop else None)


def discover(bin_dir: Path, full: bool, only: set[str] | None,
             peers: set[str], loops: int = 1, which: str = "") -> list[Contender]:
    """The servers to run. loops: the event loops of the multi-loop steps
    (08 --workers, 09 --io-threads) and nginx's worker_processes. Variants
    run in the full set, and in the targets set those that are target cells."""
    out = []
    for binary in sorted(bin_dir.glob("step-[0-9][0-9]")):
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            continue
        number = binary.name.removeprefix("step-")
        if only and number not in only:
            continue
        caps, workers = with_loops(CAPS.get(number, Caps()), loops)
        out.append(Contender(number, "step", number, "", binary, caps, workers))
        targeted = {c for cells in TARGET_CELLS.values() for c in cells}
        variants = dict(VARIANTS.get(number, {}))
        if full:
            for name in help_variants(binary):
                variants.setdefault(name, dataclasses.replace(caps, args=(*caps.args,
                                                                          "--variant", name)))
        for name, vcaps in variants.items():
            key = f"{number}-{name}"
            if not full and key not in targeted:
                continue
            vcaps, vworkers = with_loops(vcaps, loops)
            out.append(Contender(key, "step", number, name, binary, vcaps, vworkers))
    floor = bin_dir / "floor"
    if "floor" in peers and floor.is_file() and os.access(floor, os.X_OK):
        out.append(Contender("floor", "peer", "floor", "", floor, PEERS["floor"], 1))
    go = bin_dir / "reference-go"
    if "go" in peers and go.is_file() and os.access(go, os.X_OK):
        out.append(Contender("go", "peer", "go", "", go, PEERS["go"], None))
    if "nginx" in peers and nginx_binary():
        out.append(Contender("nginx", "peer", "nginx", "", None, PEERS["nginx"], loops))
    return out


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    group: str               # "keep-alive" | "echo" | "idle" | "new-conn" | "mix"
    mode: str = "http"
    connections: int = 50
    idle: int = 0
    size: int = 0            # echo message bytes
    new_conn: bool = False
    path: str = "/hello"
    mix: bool = False        # + an open-loop /work?ms= load beside an open-loop /hello
    about: str = ""

    def loadgen_args(self) -> list[str]:
        args = ["--mode", self.mode, "--connections", str(self.connections)]
        if self.mode == "echo":
            args += ["--size", str(self.size)]
        else:
            args += ["--path", self.path]
        if self.new_conn:
            args.append("--new-conn")
        return args


MIX_HELLO = ["--mode", "http", "--path", "/hello", "--connections", "10", "--rate", "2000"]
MIX_WORK_MS = 10
MIX_WORK = ["--mode", "http", "--path", f"/work?ms={MIX_WORK_MS}", "--connections", "5",
            "--rate", "50"]

SCENARIOS = [
    Scenario("http-c1", "keep-alive", connections=1,
             about="GET /hello, keep-alive, 1 connection, closed loop"),
    Scenario("http-c50", "keep-alive", connections=50,
             about="GET /hello, keep-alive, 50 connections (idle 0 of the idle curve)"),
    Scenario("http-c200", "keep-alive", connections=200,
             about="GET /hello, keep-alive, 200 connections"),
    Scenario("http-c500", "keep-alive", connections=500, about="GET /hello, 500 connections"),
    Scenario("echo-64", "echo", mode="echo", connections=100, size=64,
             about="echo ping-pong, 64 B messages, 100 connections"),
    Scenario("echo-16k", "echo", mode="echo", connections=100, size=16384,
             about="echo ping-pong, 16 KiB messages, 100 connections"),
    Scenario("idle-100", "idle", idle=100, about="50 active + 100 idle connections"),
    Scenario("idle-1k", "idle", idle=1000, about="50 active + 1,000 idle connections"),
    Scenario("idle-5k", "idle", idle=5000, about="50 active + 5,000 idle connections"),
    Scenario("idle-15k", "idle", idle=15000, about="50 active + 15,000 idle connections"),
    Scenario("newconn-c50", "new-conn", new_conn=True,
             about="a new connection per request, 50 at a time"),
    Scenario("mix-work", "mix", connections=10, mix=True,
             about=f"/hello at 2,000/s beside /work?ms={MIX_WORK_MS} at 50/s (open loop)"),
]
BY_NAME = {s.name: s for s in SCENARIOS}

def _target_cells() -> dict[str, set[str]]:
    """The cells the performance targets compare (report.targets): scenario
    -> servers. (a)-(c) are fixed: the multi-loop steps against nginx, and
    "08-one" (step 08 with one worker) against the one-loop floor; (d)-(g)
    name the steps whose step.toml asks for them. In this order: d compares
    idle-15k with http-c50, so they run back to back."""
    cells = {"http-c50": {"08", "08-one", "09", "floor", "nginx"},  # a, b
             "idle-15k": set(),
             "http-c200": {"08", "08-one", "09", "floor", "nginx"},  # a; b reported
             "echo-64": {"08-one", "floor"},                         # c
             "echo-16k": {"08-one", "floor"}}                        # c
    for n, caps in CAPS.items():
        if caps.c10k:
            cells["http-c50"].add(n)
            cells["idle-15k"].add(n)
        if caps.syscalls_target:
            cells["http-c50"].add(n)
        if caps.cpu_goal:
            cells["http-c50"] |= {n, caps.cpu_goal[0]}
        if caps.idle_memory_goal:
            cells["http-c50"] |= {n, caps.idle_memory_goal[0]}
            cells["idle-15k"] |= {n, caps.idle_memory_goal[0]}
    return cells


TARGET_CELLS: dict[str, set[str]] = _target_cells()

# A step's fair comparison (step.toml: compare): the servers that do the same
# work on the same loop count, beside it at 1, 50 and 200 connections, echo
# of 64 B and 16 KiB, and 15k idle — in the default set, so the committed run
# carries it.
COMPARE_SCENARIOS = ["http-c1", "http-c50", "http-c200", "echo-64", "echo-16k", "idle-15k"]


def _compare_cells() -> dict[str, set[str]]:
    cells: dict[str, set[str]] = {s: set() for s in COMPARE_SCENARIOS}
    for n, caps in CAPS.items():
        if caps.compare:
            for s in COMPARE_SCENARIOS:
                cells[s] |= {n, *caps.compare}
    return cells


COMPARE_CELLS: dict[str, set[str]] = _compare_cells()

# The default set (make bench, ~4 minutes on 2 cores) keeps every lesson
# once, measures the targets at http-c50 (a and b at 50 connections, d
# for 05 and 06, e), and the fair comparisons (COMPARE_CELLS; http-c200 and
# the echo cells run only those); the full set (make bench-full) is everything, longer and
# more often; the targets set (--set targets, ~4 minutes) only the cells of
# performance targets, every one of them, with more and longer runs: its
# ratios are judged to a few per cent.
SETS: dict[str, list[str]] = {
    "default": ["http-c1", "http-c50", "http-c200", "echo-64", "echo-16k", "idle-100",
                "idle-1k", "idle-5k", "idle-15k", "newconn-c50", "mix-work"],
    "full": [s.name for s in SCENARIOS],
    "targets": list(TARGET_CELLS),
}
DEFAULT_SET, FULL_SET, TARGETS_SET = SETS["default"], SETS["full"], SETS["targets"]
WRK_SCENARIOS = {"http-c50"}  # one comparison per server is enough


def applies(c: Contender, s: Scenario, full: bool | str, pool_present: bool) -> str | None:
    """None if contender c runs scenario s; otherwise why not. full: the
    set's name ("default", "full", "targets"), or a bool (full or default)."""
    which = full if isinstance(full, str) else ("full" if full else "default")
    full = which == "full"
    caps = c.caps
    if which == "targets" and c.name not in TARGET_CELLS.get(s.name, ()):
        return "not a cell of the performance targets"
    if s.mode not in caps.modes:
        return caps.why or f"no {s.mode} mode"
    if caps.max_conns is not None and s.connections > caps.max_conns:
        return caps.why
    if s.idle and caps.max_idle is not None and s.idle > caps.max_idle:
        return caps.why
    if s.idle and not full and caps.quick_max_idle is not None and s.idle > caps.quick_max_idle:
        return caps.why
    if s.mix:
        if not pool_present:
            return "the mix is for the pool step, which is not built"
        if not caps.mix and not (full and c.kind == "step"):
            return "the mix runs on the pool step and its single-loop contrast"
    compared = c.name in COMPARE_CELLS.get(s.name, ())
    if which == "default" and s.name not in ("http-c1", "http-c50") and \
            s.name in COMPARE_CELLS and not s.idle and not compared:
        return "in the default set a fair comparison's cell (step.toml compare; make bench-full: all)"
    if c.variant and c.name not in TARGET_CELLS.get(s.name, ()):
        if which != "full" or s.name not in ("http-c50", "newconn-c50"):
            return "a variant runs its target cells (and in the full set http-c50, newconn-c50)"
    if which == "default" and s.idle and not caps.curve and not compared:
        return "the default idle curve is 02 and the event loops 03-06 (make bench-full: all)"
    return None


def wrk_applies(c: Contender, s: Scenario, full: bool) -> bool:
    if s.name not in WRK_SCENARIOS or "http" not in c.caps.modes or c.variant:
        return False
    if c.caps.max_conns is not None and s.connections > c.caps.max_conns:
        return False
    return s.name == "http-c50" and (full or c.caps.wrk)
