"""One measured run, and what makes it trustworthy on a shared machine.

A run: wait for a quiet machine; start the server fresh (pinned); if the
scenario has an idle crowd, a separate loadgen holds it; a short warm-up
load; sample /proc; the measured load (loadgen or wrk, pinned to the other
CPUs); sample /proc again; stop everything. Between the two samples:

  server CPU       the server's process tree (threads and reaped children)
  own CPU          server + load generator(s) + idle holder + this script
                   (+ the ksoftirqd threads, where loopback TCP may be processed)
  foreign CPU      /proc/stat busy time of the whole machine minus own CPU
  steal            /proc/stat steal over total

A run with more than ~0.1 core of foreign CPU or more than ~2 % steal was
disturbed by someone else: the caller repeats it (and counts a rejection).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ladder import procfs
from ladder.client import get
from ladder.server import Server

import scenarios as sc


@dataclasses.dataclass
class Config:
    bin_dir: Path
    duration: float = 0.5
    warmup: float = 0.2
    repeats: int = 3
    patience: float = 3.0     # seconds to wait for a quiet machine before a run
    retries: int = 2          # re-runs of a disturbed run before keeping it anyway
    quiet_cores: float = 0.1  # foreign CPU above this disturbs a run
    quiet_steal: float = 0.02
    server_cpus: set[int] | None = None
    load_cpus: set[int] | None = None

    @property
    def load_threads(self) -> int:
        return len(self.load_cpus) if self.load_cpus else 1


KSOFTIRQD = procfs.kernel_threads("ksoftirqd/")


def own_cpu_seconds() -> float:
    """This script's CPU, plus the per-CPU softirq threads: when softirqs pile
    up, loopback TCP for our own load is processed there, not in our tasks."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    soft = 0.0
    for pid in KSOFTIRQD:
        try:
            soft += procfs.cpu_seconds(pid)
        except OSError:
            pass
    return r.ru_utime + r.ru_stime + soft


def reaped_children() -> resource.struct_rusage:
    """Totals of every child this process has reaped: the load generators'
    CPU and a stopped server's lifetime context switches (ended threads too)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN)


def pin(cpus: set[int] | None):
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


# --------------------------------------------------------------------------
# Servers under test

class Target:
    """A running server: pid, port, GET /stats, stop -> exit stats."""

    pid: int
    port: int

    def stats(self) -> dict | None:
        try:
            return json.loads(get(("127.0.0.1", self.port), "/stats", timeout=5).body)
        except (OSError, ValueError, AssertionError):
            return None

    def alive(self) -> bool:
        raise NotImplementedError

    def stop(self) -> dict | None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError


class StepTarget(Target):
    def __init__(self, c: sc.Contender, mode: str, cfg: Config):
        args = list(c.caps.args) if c.kind == "step" else []
        if "echo" in c.caps.modes:
            args = ["--mode", mode, *args]
        self.server = Server(c.step, args, binary=c.binary, cpus=cfg.server_cpus).start()
        self.pid, self.port = self.server.pid, self.server.port
        self.has_stats = c.caps.stats and mode == "http"

    def stats(self) -> dict | None:
        return super().stats() if self.has_stats else None

    def alive(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    def stop(self) -> dict | None:
        try:
            return self.server.stop().stats
        finally:
            self.server.kill()

    def kill(self) -> None:
        self.server.kill()


class NginxTarget(Target):
    """nginx from a config in a temp dir: `workers` worker processes (the
    bench's --loops, the multi-loop steps' loop count), `return 200` with the
    steps' body, keep-alive that never runs out. The master is pinned before
    exec; its workers inherit the affinity (no worker_cpu_affinity here)."""

    CONF = """daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {tmp}/nginx.pid;
error_log stderr warn;
events {{ worker_connections {conns}; }}
http {{
  access_log off;
  server_tokens off;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type text/plain; return 200 "Hello, World!\\n"; }}
  }}
}}
"""

    def __init__(self, cfg: Config, workers: int = 1):
        self.tmp = tempfile.TemporaryDirectory(prefix="ladder-nginx-")
        self.port = free_port()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        conf = Path(self.tmp.name) / "nginx.conf"
        conf.write_text(self.CONF.format(tmp=self.tmp.name, port=self.port, nofile=nofile,
                                         conns=max(1024, nofile - 100), workers=workers))
        self.err = open(Path(self.tmp.name) / "stderr", "w+")
        self.proc = subprocess.Popen(
            [sc.nginx_binary(), "-p", self.tmp.name, "-c", str(conf), "-e", "stderr"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err,
            preexec_fn=pin(cfg.server_cpus))
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while True:
            # The master listens before it forks: wait for every worker too.
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if len(procfs.descendants(self.pid)) >= 1 + workers:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"nginx did not start {workers} workers: "
                                   f"{self.stderr()[-500:]}")
            time.sleep(0.02)

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stats(self) -> dict | None:
        return None

    def stop(self) -> dict | None:
        if self.alive():
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
        try:
            self.proc.wait(10)
        finally:
            self.kill()
        return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid in reversed(procfs.descendants(self.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait()
        self.err.close()
        self.tmp.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_target(c: sc.Contender, mode: str, cfg: Config) -> Target:
    return NginxTarget(cfg, c.workers or 1) if c.name == "nginx" else StepTarget(c, mode, cfg)


def pinning_problem(pid: int, cpus: set[int] | None) -> str:
    """"" when every thread of pid's process tree may run only on cpus (the
    server's half); otherwise which ones may run elsewhere."""
    if not cpus:
        return ""
    wrong = []
    for tid in sorted(procfs.tree_tids(pid)):
        try:
            got = os.sched_getaffinity(tid)
        except OSError:
            continue  # ended meanwhile
        if got != cpus:
            wrong.append(f"{tid} on cpus {','.join(map(str, sorted(got)))}")
    return f"not pinned: {'; '.join(wrong[:3])}" if wrong else ""


# --------------------------------------------------------------------------
# Load generators

@dataclasses.dataclass
class Load:
    """What one load generator reported."""

    path: str
    requests: int = 0
    rps: float = 0.0
    duration: float = 0.0
    lat: dict = dataclasses.field(default_factory=dict)  # p50 p90 p99 p999 max (µs)
    errors: dict = dataclasses.field(default_factory=dict)
    idle_held: int | None = None
    loop: str = "closed"
    rate: float | None = None
    failure: str = ""

    @property
    def error_total(self) -> int:
        return sum(self.errors.values())


def loadgen_argv(cfg: Config, port: int, args: list[str], duration: float) -> list[str]:
    return [str(cfg.bin_dir / "loadgen"), "--port", str(port), "--threads",
            str(cfg.load_threads), "--duration", f"{duration:g}", "--timeout", "5", *args]


def parse_loadgen(out: str, err: str, rc: int, path: str) -> Load:
    try:
        d = json.loads(out)
    except ValueError:
        return Load(path, failure=(err.strip().splitlines() or [f"loadgen exit {rc}"])[-1])
    lat = d.get("latency_us", {})
    return Load(path, d["requests"], d["rps"], d["duration_s"],
                {k: lat.get(k) for k in ("p50", "p90", "p99", "p999", "max")},
                {k: v for k, v in d.get("errors", {}).items() if v},
                d.get("idle_held"), d.get("loop", "closed"), d.get("rate"))


WRK_LAT = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk_us(value: str, unit: str) -> int:
    return round(float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit])


def parse_wrk(out: str, err: str, rc: int, path: str) -> Load:
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rc != 0 or not m or not rps:
        return Load(path, failure=(err.strip() or out.strip() or f"wrk exit {rc}")[-200:])
    lat = {f"p{p}": wrk_us(v, u) for p, v, u in WRK_LAT.findall(out)}
    mx = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out, re.M)
    errors = {}
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"),
                                            sock.groups()) if int(v)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors["bad_status"] = int(non2xx.group(1))
    unit = {"ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    return Load(path, int(m.group(1)), float(rps.group(1)), float(m.group(2)) * unit,
                {"p50": lat.get("p50"), "p90": lat.get("p90"), "p99": lat.get("p99"),
                 "p999": None, "max": wrk_us(*mx.groups()) if mx else None}, errors)


LIVE: set[subprocess.Popen] = set()  # load generators still running (see kill_all)


def kill_all() -> None:
    """Ctrl-C: no load generator outlives the bench (servers stop in run_once's finally)."""
    for proc in list(LIVE):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        LIVE.discard(proc)


class Running:
    """A load generator process; .result() waits for it and parses its output."""

    def __init__(self, argv: list[str], parse, path: str, cpus: set[int] | None):
        self.parse, self.path = parse, path
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=pin(cpus))
        LIVE.add(self.proc)
        self.out = self.err = ""
        self.done = False

    def poll(self, timeout: float) -> bool:
        """Waits up to timeout; True once the process has exited (output read)."""
        if self.done:
            return True
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
            self.done = True
            LIVE.discard(self.proc)
        except subprocess.TimeoutExpired:
            pass
        return self.done

    def stop(self, sig=signal.SIGINT) -> None:
        if not self.done and self.proc.poll() is None:
            self.proc.send_signal(sig)  # loadgen: ends the run early, still prints its JSON

    def result(self, timeout: float = 30) -> Load:
        if not self.poll(timeout):
            self.proc.kill()
            self.poll(5)
            return Load(self.path, failure="load generator did not stop; killed")
        return self.parse(self.out, self.err, self.proc.returncode, self.path)


def start_loadgen(cfg: Config, port: int, args: list[str], duration: float,
                  path: str) -> Running:
    return Running(loadgen_argv(cfg, port, args, duration), parse_loadgen, path, cfg.load_cpus)


def start_wrk(cfg: Config, port: int, s: sc.Scenario, duration: float) -> Running:
    seconds = max(1, round(duration))  # wrk takes whole seconds
    argv = ["wrk", "-t", str(min(cfg.load_threads, s.connections)), "-c", str(s.connections),
            "-d", f"{seconds}s", "--latency", "--timeout", "5s",
            f"http://127.0.0.1:{port}{s.path}"]
    return Running(argv, parse_wrk, s.path, cfg.load_cpus)


# --------------------------------------------------------------------------
# Quiet machine

def wait_quiet(cfg: Config, window: float = 0.25) -> tuple[float, bool]:
    """Waits until a `window` with less than quiet_cores of foreign CPU and
    quiet_steal steal, for at most cfg.patience seconds. Nothing of ours
    runs now, so everything busy but this script is someone else's.
    Returns (seconds waited, quiet?)."""
    start = time.monotonic()
    while True:
        m0, s0, t0 = procfs.machine_cpu(), own_cpu_seconds(), time.monotonic()
        time.sleep(window)
        m = procfs.machine_cpu() - m0
        wall = time.monotonic() - t0
        foreign = (m.busy - (own_cpu_seconds() - s0)) / wall
        steal = m.steal / m.total if m.total > 0 else 0.0
        waited = time.monotonic() - start
        if foreign < cfg.quiet_cores and steal < cfg.quiet_steal:
            return waited, True
        if waited >= cfg.patience:
            return waited, False


# --------------------------------------------------------------------------
# One run

@dataclasses.dataclass
class Run:
    loads: list[Load]
    server_cpu: float = 0.0
    load_cpu: float = 0.0
    cpu_us_per_req: float | None = None
    user_share: float | None = None  # of the server's CPU, the part in user space (ticks)
    threads: int = 0
    peak_rss_kib: int = 0
    ctx_switches: int | None = None
    ctx_per_req: float | None = None
    wakeups: int | None = None
    wakeups_per_req: float | None = None
    stats: dict | None = None
    idle_held: int | None = None
    foreign_cores: float = 0.0
    steal_pct: float = 0.0
    quiet_wait: float = 0.0
    quiet_before: bool = True
    failure: str = ""
    warning: str = ""     # kept, but worth a note (a server thread outside its CPUs)
    seq: int = 0          # position in the bench's sequence of runs
    started: float = 0.0  # seconds since the bench started

    def disturbed(self, cfg: Config) -> bool:
        return (self.foreign_cores > cfg.quiet_cores
                or self.steal_pct > cfg.quiet_steal * 100)

    @property
    def requests(self) -> int:
        return sum(l.requests for l in self.loads)


def hold_idle(cfg: Config, target: Target, idle: int) -> Running:
    """A loadgen that holds `idle` connections (and one slow active one) for
    as long as the run lasts, so the measured load's CPU excludes the
    crowd's handshakes. Returns once the server's descriptors stop growing."""
    base = procfs.fd_count(target.pid)
    holder = start_loadgen(cfg, target.port, ["--connections", "1", "--rate", "1",
                                              "--idle", str(idle)], 3600, "/hello")
    deadline = time.monotonic() + 30
    last, still_since = -1, time.monotonic()
    try:
        while time.monotonic() < deadline and not holder.poll(0.05):
            n = procfs.fd_count(target.pid) - base
            if n >= idle + 1:
                break
            if n != last:
                last, still_since = n, time.monotonic()
            elif n > 0 and time.monotonic() - still_since > 1.0:
                break  # the server holds no more (select's FD_SETSIZE): that is the wall
        time.sleep(0.05)
    except BaseException:
        holder.proc.kill()
        holder.result(5)
        raise
    return holder


def stats_delta(a: dict | None, b: dict | None, key: str) -> int | None:
    if a is None or b is None or key not in a or key not in b:
        return None
    return b[key] - a[key]


def run_once(c: sc.Contender, s: sc.Scenario, client: str, cfg: Config,
             wait: bool = True) -> Run:
    """One run. wait=False skips the quiet-machine wait (the caller's previous
    run was undisturbed a moment ago); the disturbance check after it stays."""
    waited, quiet = wait_quiet(cfg) if wait else (0.0, True)
    try:
        target = start_target(c, s.mode, cfg)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        return Run([], failure=f"server did not start: {str(e).splitlines()[0][:200]}")
    run, holder, exit_stats = Run([]), None, None
    try:
        if s.idle:
            holder = hold_idle(cfg, target, s.idle)
        # Warm-up: caches, page faults, the allocator's first arenas.
        warm = sc.MIX_HELLO if s.mix else s.loadgen_args()
        start_loadgen(cfg, target.port, warm, cfg.warmup, s.path).result()
        run = measured(s, client, cfg, target, holder)
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as e:
        run.failure = f"{type(e).__name__}: {e}"[:200]
    finally:
        if holder:
            holder.stop()
            run.idle_held = holder.result(15).idle_held
        if target.alive():
            before = reaped_children()
            try:
                exit_stats = target.stop()
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                run.failure = run.failure or f"server did not stop: {e}"
            after = reaped_children()
            # The server's whole life, ended threads and reaped children included.
            run.ctx_switches = ((after.ru_nvcsw - before.ru_nvcsw)
                                + (after.ru_nivcsw - before.ru_nivcsw))
        else:
            run.failure = run.failure or "the server died during the run"
        target.kill()
    run.quiet_wait, run.quiet_before = waited, quiet
    lifetime_requests = run.requests
    if exit_stats:
        run.stats = exit_stats
        lifetime_requests = exit_stats.get("requests") or lifetime_requests
        if run.wakeups is None and exit_stats.get("requests") and "wakeups" in exit_stats:
            run.wakeups = exit_stats["wakeups"]
            run.wakeups_per_req = run.wakeups / exit_stats["requests"]
    if run.ctx_switches is not None and lifetime_requests:
        run.ctx_per_req = run.ctx_switches / lifetime_requests
    return run


def measured(s: sc.Scenario, client: str, cfg: Config, target: Target,
             holder: Running | None) -> Run:
    stats_a = target.stats()
    tree_a = procfs.tree_cpu_seconds(target.pid)
    split_a = procfs.tree_user_system_seconds(target.pid)
    ns_a = procfs.tree_runtime_ns(target.pid)
    holder_a = procfs.cpu_seconds(holder.proc.pid) if holder else 0.0
    kids_a = reaped_children()
    self_a, mach_a, t_a = own_cpu_seconds(), procfs.machine_cpu(), time.monotonic()

    if s.mix:
        loads = [start_loadgen(cfg, target.port, sc.MIX_HELLO, cfg.duration, "/hello"),
                 start_loadgen(cfg, target.port, sc.MIX_WORK, cfg.duration,
                               f"/work?ms={sc.MIX_WORK_MS}")]
    elif client == "wrk":
        loads = [start_wrk(cfg, target.port, s, cfg.duration)]
    else:
        loads = [start_loadgen(cfg, target.port, s.loadgen_args(), cfg.duration, s.path)]
    threads = rss = 0
    same_threads = True  # no thread or process came or went while we watched
    deadline = time.monotonic() + cfg.duration + 60
    while not all(l.poll(0.1 / len(loads)) for l in loads):
        try:
            tids = procfs.tree_tids(target.pid)
            same_threads = same_threads and tids == ns_a.keys()
            threads = max(threads, len(tids))
            rss = max(rss, procfs.tree_rss_kib(target.pid))
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            for l in loads:
                l.stop(signal.SIGKILL)
    results = [l.result() for l in loads]

    t_b, mach_b, self_b = time.monotonic(), procfs.machine_cpu(), own_cpu_seconds()
    kids_b = reaped_children()
    try:
        tree_b = procfs.tree_cpu_seconds(target.pid)
        split_b = procfs.tree_user_system_seconds(target.pid)
        ns_b = procfs.tree_runtime_ns(target.pid)
        holder_b = procfs.cpu_seconds(holder.proc.pid) if holder else 0.0
        threads = max(threads, procfs.tree_threads(target.pid))
        hwm = procfs.peak_rss_kib(target.pid)
    except (FileNotFoundError, ProcessLookupError):
        return Run(results, failure="the server died during the run")
    pinned = pinning_problem(target.pid, cfg.server_cpus)
    stats_b = target.stats()

    run = Run(results)
    run.failure = "; ".join(l.failure for l in results if l.failure)
    run.warning = pinned
    # The same threads throughout: their exact runtimes. Threads came or went
    # (a thread or process per connection): the tick-granular totals, which
    # keep what ended threads used.
    if same_threads and ns_a.keys() == ns_b.keys():
        run.server_cpu = sum(ns_b[t] - ns_a[t] for t in ns_b) / 1e9
    else:
        run.server_cpu = tree_b - tree_a
    run.load_cpu = ((kids_b.ru_utime + kids_b.ru_stime) - (kids_a.ru_utime + kids_a.ru_stime))
    if run.requests:
        run.cpu_us_per_req = run.server_cpu * 1e6 / run.requests
    user, system = split_b[0] - split_a[0], split_b[1] - split_a[1]
    if user + system > 0:
        run.user_share = user / (user + system)
    run.threads = threads
    run.peak_rss_kib = max(hwm, rss)
    wakeups = stats_delta(stats_a, stats_b, "wakeups")
    served = stats_delta(stats_a, stats_b, "requests")
    if wakeups is not None and served:
        run.wakeups, run.wakeups_per_req = wakeups, wakeups / served
    own = run.server_cpu + run.load_cpu + (holder_b - holder_a) + (self_b - self_a)
    m = mach_b - mach_a
    run.foreign_cores = max(0.0, (m.busy - own) / (t_b - t_a))
    run.steal_pct = 100 * m.steal / m.total if m.total > 0 else 0.0
    return run


# --------------------------------------------------------------------------
# System calls per request, from a separate pass: perf's syscall tracepoints
# (counted in the kernel: ~15 % more server CPU on the 2-core VM) or strace
# -c -f (slows the server ~10x)

MAX_TRACED_THREADS = 1000  # a thread per idle connection: attaching takes longer than it tells

# The syscalls counted one by one (with perf; strace -c counts every one):
# what a server does per request, the waits, and the per-connection rest.
# The rest is in the total (raw_syscalls) only: perf takes ~40 ms per
# tracepoint to let go of it when it stops, so the list stays short.
PERF_SYSCALLS = ("read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto",
                 "sendmsg", "epoll_wait", "epoll_pwait", "poll", "ppoll", "select",
                 "accept4", "epoll_ctl", "close", "io_uring_enter")
TRACEFS = (Path("/sys/kernel/tracing/events/syscalls"),
           Path("/sys/kernel/debug/tracing/events/syscalls"))


def perf_works(event: str = "raw_syscalls:sys_enter") -> bool:
    """`perf stat -e EVENT true` counts something: perf is installed and the
    kernel lets us use its tracepoints (hardware counters are not needed)."""
    try:
        r = subprocess.run(["perf", "stat", "-x,", "-e", event, "true"], capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    counts = [line.split(",")[0] for line in r.stderr.splitlines() if event in line]
    return r.returncode == 0 and any(c.isdigit() for c in counts)


def syscall_method(wanted: str = "auto") -> str | None:
    """"perf", "strace" or None (not counted): what wanted asks for, if it works."""
    if wanted == "none":
        return None
    if wanted in ("auto", "perf") and shutil.which("perf") and perf_works():
        return "perf"
    if wanted in ("auto", "strace") and shutil.which("strace"):
        return "strace"
    return None


_PERF_EVENTS: list[str] | None = None


def perf_events() -> list[str]:
    """raw_syscalls:sys_enter (every syscall) and the PERF_SYSCALLS tracepoints
    this kernel has."""
    global _PERF_EVENTS
    if _PERF_EVENTS is None:
        base = next((d for d in TRACEFS if d.is_dir()), None)
        names = [n for n in PERF_SYSCALLS if base is None or (base / f"sys_enter_{n}").is_dir()]
        events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{n}" for n in names]
        if base is None and not perf_works(",".join(events)):
            events = events[:1]  # tracefs unreadable and some name unknown: the total only
        _PERF_EVENTS = events
    return _PERF_EVENTS


def parse_perf(text: str) -> tuple[int | None, dict[str, int]]:
    """perf stat -x, output -> (every syscall, {syscall: calls})."""
    total, calls = None, {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 3 or not fields[0].strip().isdigit():
            continue
        count, event = int(fields[0]), fields[2]
        if event == "raw_syscalls:sys_enter":
            total = count
        elif event.startswith("syscalls:sys_enter_"):
            calls[event.removeprefix("syscalls:sys_enter_")] = count
    return total, calls


def syscalls_pass(method: str, c: sc.Contender, s: sc.Scenario,
                  cfg: Config) -> tuple[float, str, str] | None:
    """(syscalls per request, the ones that matter "read 1.00 sendto 1.00 ...",
    method) for scenario s with every server thread and process counted.

    perf: a warm-up, then tracepoint counts over a cfg.duration load (at
    least 0.5 s); the server pays ~15 % more CPU for the tracepoints, so its
    event batches stay close to the untraced ones. strace: a fixed number of
    requests under strace -c -f; tracing slows the server, so event batches
    grow and epoll_wait/poll, and the read that finds EAGAIN, come out lower
    than untraced. None when it could not be measured."""
    target = start_target(c, s.mode, cfg)
    holder = None
    try:
        if s.idle:
            holder = hold_idle(cfg, target, s.idle)
        if procfs.tree_threads(target.pid) > MAX_TRACED_THREADS:
            return None
        if method == "perf":
            counted = perf_count(c, s, cfg, target)
        else:
            counted = strace_count(s, cfg, target)
    finally:
        if holder:
            holder.stop()
            holder.result(15)
        try:
            target.stop()
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        target.kill()
    if counted is None:
        return None
    requests, total, calls = counted
    if not requests or not total:
        return None
    top = sorted(((n, k) for n, k in calls.items() if k / requests >= 0.005),
                 key=lambda kv: -kv[1])[:8 if method == "perf" else 4]
    return (total / requests, " ".join(f"{name} {n / requests:.2f}" for name, n in top),
            method)


def perf_count(c: sc.Contender, s: sc.Scenario, cfg: Config,
               target: Target) -> tuple[int, int, dict[str, int]] | None:
    """(requests, syscalls, {syscall: calls}) over a timed load, counted by
    perf stat on every process of the server (-p follows their threads, and
    the threads and processes they start later: perf's counters inherit)."""
    start_loadgen(cfg, target.port, s.loadgen_args(), cfg.warmup, s.path).result()
    tmp = tempfile.TemporaryDirectory(prefix="ladder-perf-")
    out = Path(tmp.name) / "counts"
    perf = None
    try:
        pids = ",".join(str(p) for p in procfs.descendants(target.pid))
        stats_a = target.stats()
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", ",".join(perf_events()),
                                 "-p", pids, "-o", str(out)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, preexec_fn=pin(cfg.load_cpus))
        time.sleep(0.2)  # attached (~40 ms): the server is idle meanwhile, nothing is lost
        if perf.poll() is not None:
            raise RuntimeError(f"perf stat: {perf.stderr.read().strip()[-200:]}")
        lg = start_loadgen(cfg, target.port, s.loadgen_args(), max(0.5, cfg.duration),
                           s.path).result(60)
        perf.send_signal(signal.SIGINT)  # perf stat prints its counts and exits
        perf.wait(30)
        stats_b = target.stats()
        text = out.read_text() if out.exists() else ""
    except subprocess.TimeoutExpired:
        return None
    finally:
        if perf and perf.poll() is None:
            perf.kill()
            perf.wait()
        tmp.cleanup()
    # The server's own count when it has one (exact, whatever loadgen had in
    # flight at its end; the /stats request itself is one more); else loadgen's.
    served = stats_delta(stats_a, stats_b, "requests")
    requests = served - 1 if served and c.caps.stats and s.mode == "http" else lg.requests
    total, calls = parse_perf(text)
    if total is None:
        return None
    return requests, total, calls


def strace_count(s: sc.Scenario, cfg: Config,
                 target: Target) -> tuple[int, int, dict[str, int]] | None:
    """(requests, syscalls, {syscall: calls}) for a fixed number of requests
    under strace -c -f."""
    requests = max(2000, 40 * s.connections) if not s.new_conn else 1000
    tracer = None
    tmp = tempfile.TemporaryDirectory(prefix="ladder-strace-")
    out, err = Path(tmp.name) / "summary", Path(tmp.name) / "stderr"
    try:
        pids = ",".join(str(p) for p in procfs.descendants(target.pid))
        with open(err, "w") as errf:  # a file: a pipe could fill with attach lines and stall strace
            tracer = subprocess.Popen(["strace", "-c", "-f", "-p", pids, "-o", str(out)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=errf)
        deadline = time.monotonic() + 10
        while "attached" not in err.read_text():
            if tracer.poll() is not None or time.monotonic() > deadline:
                return None
            time.sleep(0.05)
        time.sleep(0.2)  # the other threads' attach lines
        lg = Running([str(cfg.bin_dir / "loadgen"), "--port", str(target.port), "--requests",
                      str(requests), "--timeout", "30", *s.loadgen_args()], parse_loadgen,
                     s.path, cfg.load_cpus).result(120)
        tracer.send_signal(signal.SIGINT)  # detach: the summary is written then
        tracer.wait(60)
        text = out.read_text() if out.exists() else ""
    except subprocess.TimeoutExpired:
        return None
    finally:
        if tracer and tracer.poll() is None:
            tracer.kill()  # its tracees are detached by the kernel
            tracer.wait()
        tmp.cleanup()
    calls = parse_strace(text)
    return lg.requests, sum(calls.values()), calls


def parse_strace(text: str) -> dict[str, int]:
    """strace -c's table -> {syscall: calls}."""
    calls = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[0][0].isdigit() or fields[-1] == "total":
            continue
        try:
            calls[fields[-1]] = int(fields[3])
        except ValueError:
            continue
    return calls
