"""What the bench runs: the servers (discovered), the scenarios, and which
scenario makes sense for which server.

Steps come from build/bin/step-NN; nothing here lists them. What a step
cannot do lives in CAPS, one line per step, like tests/steps/conftest.py: a
step without a line is an ordinary concurrent server and runs everything.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from pathlib import Path


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
    why: str = ""                 # shown when a scenario is skipped for this server


CAPS: dict[str, Caps] = {
    "01": Caps(max_conns=1, one_loop=True, why="one client at a time: measured at 1 connection"),
    "02": Caps(max_idle=5000, why="a thread per idle connection: not at 15k"),
    "03": Caps(max_idle=1000, curve=True, one_loop=True,
               why="select() stops at FD_SETSIZE (1024)"),
    "04": Caps(curve=True, quick_max_idle=5000, one_loop=True,
               why="poll() takes ~30 s to accept 15k: make bench-full measures it"),
    "05": Caps(curve=True, wrk=True, one_loop=True),
    "06": Caps(curve=True, mix=True, one_loop=True),
    # Their default loop count is the step's own guess (08: every CPU of the
    # machine; 09: the CPUs it may run on, 1 when pinned): the bench sets it,
    # the same as nginx's worker_processes, so the comparison says what it ran.
    "08": Caps(loops_flag="--workers"),
    "09": Caps(mix=True, pool=True, loops_flag="--io-threads"),
}
# Variants worth measuring besides a step's default (full set only). Steps
# whose --help lists `--variant a|b|c` get those too.
VARIANTS: dict[str, dict[str, Caps]] = {
    "02": {"processes": Caps(max_idle=1000, args=("--processes",),
                             why="a process per idle connection: not past 1k")},
}
PEERS: dict[str, Caps] = {
    "floor": Caps(wrk=True, one_loop=True),  # HTTP /hello and echo (--mode echo)
    "nginx": Caps(modes=("http",), wrk=True, stats=False, why="HTTP only here"),
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
    if caps.loops_flag:
        return dataclasses.replace(caps, args=(*caps.args, caps.loops_flag, str(loops))), loops
    return caps, (1 if caps.one_loop else None)


def discover(bin_dir: Path, full: bool, only: set[str] | None,
             peers: set[str], loops: int = 1) -> list[Contender]:
    """The servers to run. loops: the event loops of the multi-loop steps
    (08 --workers, 09 --io-threads) and nginx's worker_processes."""
    out = []
    for binary in sorted(bin_dir.glob("step-[0-9][0-9]")):
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            continue
        number = binary.name.removeprefix("step-")
        if only and number not in only:
            continue
        caps, workers = with_loops(CAPS.get(number, Caps()), loops)
        out.append(Contender(number, "step", number, "", binary, caps, workers))
        if not full:
            continue
        variants = dict(VARIANTS.get(number, {}))
        for name in help_variants(binary):
            variants.setdefault(name, dataclasses.replace(caps, args=(*caps.args,
                                                                      "--variant", name)))
        for name, vcaps in variants.items():
            out.append(Contender(f"{number}-{name}", "step", number, name, binary, vcaps,
                                 workers))
    floor = bin_dir / "floor"
    if "floor" in peers and floor.is_file() and os.access(floor, os.X_OK):
        out.append(Contender("floor", "peer", "floor", "", floor, PEERS["floor"], 1))
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
    Scenario("idle-1k", "idle", idle=1000, about="50 active + 1,000 idle connections"),
    Scenario("idle-5k", "idle", idle=5000, about="50 active + 5,000 idle connections"),
    Scenario("idle-15k", "idle", idle=15000, about="50 active + 15,000 idle connections"),
    Scenario("newconn-c50", "new-conn", new_conn=True,
             about="a new connection per request, 50 at a time"),
    Scenario("mix-work", "mix", connections=10, mix=True,
             about=f"/hello at 2,000/s beside /work?ms={MIX_WORK_MS} at 50/s (open loop)"),
]
BY_NAME = {s.name: s for s in SCENARIOS}

# The cells issue #9's targets compare (report.targets): scenario -> servers.
# In this order: d compares idle-15k with http-c50, so they run back to back.
TARGET_CELLS: dict[str, set[str]] = {
    "http-c50": {"05", "06", "08", "09", "floor", "nginx"},  # a, b, e, and d's no-idle point
    "idle-15k": {"05", "06", "08", "09"},                    # d
    "http-c200": {"06", "08", "09", "floor", "nginx"},       # a; b reported
    "echo-64": {"06", "floor"},                              # c
    "echo-16k": {"06", "floor"},                             # c
}

# The default set (make bench, ~3 minutes on 2 cores) keeps every lesson
# once, and measures the targets at http-c50 (a and b at 50 connections, d
# for 05 and 06, e); the full set (make bench-full) is everything, longer and
# more often; the targets set (--set targets, ~4 minutes) only the cells of
# issue #9's targets, every one of them, with more and longer runs: its
# ratios are judged to a few per cent.
SETS: dict[str, list[str]] = {
    "default": ["http-c1", "http-c50", "idle-1k", "idle-5k", "idle-15k", "newconn-c50",
                "mix-work"],
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
        return "not a cell of issue #9's targets"
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
    if c.variant and s.name not in ("http-c50", "newconn-c50"):
        return "variants run http-c50 and newconn-c50"
    if which == "default" and s.idle and not caps.curve:
        return "the default idle curve is the event loops 03-06 (make bench-full: all)"
    return None


def wrk_applies(c: Contender, s: Scenario, full: bool) -> bool:
    if s.name not in WRK_SCENARIOS or "http" not in c.caps.modes or c.variant:
        return False
    if c.caps.max_conns is not None and s.connections > c.caps.max_conns:
        return False
    return s.name == "http-c50" and (full or c.caps.wrk)
