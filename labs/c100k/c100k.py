"""lab-c100k: hold N established connections to one port on this machine,
keep 50 of them busy, and measure what the others cost, step by step.

Run by labs/c100k/run.sh inside a network namespace of its own (its
sysctls change nothing outside it); see labs/c100k/README.md.

    labs/c100k/run.sh build/bin                       0 … 100k, every step
    labs/c100k/run.sh build/bin --connections 2000 --steps 08 --server-procs 2
    labs/c100k/run.sh build/bin --push                then 250k, 500k, 1M on step 08

Per step and connection count it starts the server (steps 08, 10 and 11 as
several processes on one port, SO_REUSEPORT), has loadgen open the idle
connections (in child processes, from several 127.0.0.x sources), hold them
all quiet for a few seconds (the server's CPU then is what idle costs), then
run 50 connections closed-loop beside them. Rows are appended to
results/c100k-<date>-<machine>.csv.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import platform
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT = 8080  # the namespace is the lab's own: no one else is on it
LEVELS = [0, 10_000, 25_000, 50_000, 100_000]
POLL_LEVELS = [0, 1_000, 2_500, 5_000, 10_000, 15_000]
PUSH = [250_000, 500_000, 1_000_000]
# Steps whose listener always sets SO_REUSEPORT: several processes can bind
# the port, and the kernel spreads connections over them as over threads.
# The flag makes each process one loop (nginx: worker_processes N).
PROCESS_STEPS = {"08": ["--workers", "1"], "10": ["--threads", "1"], "11": ["--threads", "1"]}
PER_PROCESS = 15_000  # connections per server process, under its 20,000 descriptors
# No connection may time out during a run (1M take a while to open); the
# sweep still runs every second and still looks for expired connections.
SERVER_FLAGS = ["--idle-timeout", "600", "--header-timeout", "600"]
MEMORY_FLOOR_KIB = 4 << 20  # stop opening when MemAvailable falls below 4 GiB


# ---------------------------------------------------------------------------
# What the kernel says


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_ns(pids: list[int]) -> int:
    """CPU time of every thread of these processes, in ns (schedstat: exact,
    where utime/stime count 10 ms ticks)."""
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            fields = read(f"/proc/{pid}/task/{tid}/schedstat").split()
            if fields:
                total += int(fields[0])
    return total


def status_kib(pid: int, key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+) kB", read(f"/proc/{pid}/status"), re.M)
    return int(m.group(1)) if m else 0


def meminfo_kib(key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+) kB", read("/proc/meminfo"), re.M)
    return int(m.group(1)) if m else 0


def sockstat() -> dict:
    """/proc/net/sockstat's TCP line: inuse (this namespace's), mem (pages
    of socket buffers, the figure tcp_mem limits)."""
    m = re.search(r"^TCP: (.*)$", read("/proc/net/sockstat"), re.M)
    words = m.group(1).split() if m else []
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def slab_bytes() -> int:
    """Bytes of kernel objects a socket is made of (the socket itself, its
    inode, dentry and file, its epoll item): /proc/slabinfo, machine-wide."""
    total = 0
    for line in read("/proc/slabinfo").splitlines():
        f = line.split()
        if f and f[0] in ("TCP", "TCPv6", "sock_inode_cache", "dentry", "filp",
                          "eventpoll_epi", "eventpoll_pwq", "tcp_bind_bucket",
                          "request_sock_TCP"):
            total += int(f[1]) * int(f[3])
    return total


def server_skmem(n: int) -> tuple[int, int, int | None]:
    """ss -tm over the server's established sockets: (sockets, bytes of
    socket memory they hold — queued data, receive and send — , source
    addresses of their peers). Past 20,000 a sample, the peers whose port
    is in 1024-9999 (about one in seven): idle sockets all look alike, and
    dumping 100,000 takes ss seconds."""
    where = f"sport = :{PORT}" + (" and dport >= :1024 and dport <= :9999" if n > 20_000 else "")
    out = subprocess.run(["ss", "-tmnH", "state", "established", f"( {where} )"],
                         capture_output=True, text=True, timeout=120).stdout
    sockets = held = 0
    peers = set()
    for line in out.splitlines():
        m = re.search(r"skmem:\(([^)]*)\)", line)
        if m:
            sockets += 1
            for part in m.group(1).split(","):
                k = re.match(r"([a-z]+)(\d+)", part)
                if k and k.group(1) in ("r", "t", "f", "w", "o", "bl"):
                    held += int(k.group(2))
        cols = line.split()  # Recv-Q Send-Q Local Peer (the state is the filter's)
        if len(cols) >= 4 and ":" in cols[3]:
            peers.add(cols[3].rsplit(":", 1)[0])
    # A sample says nothing of the sources: each gets its ports in runs of its own.
    return sockets, held, len(peers) if n <= 20_000 else None


# ---------------------------------------------------------------------------
# Processes: every one the lab starts is in this list, and is stopped by it.

RUNNING: list[subprocess.Popen] = []
LOGS = Path(os.environ.get("TMPDIR", "/tmp")) / f"ladder-c100k-{os.getpid()}"


def spawn(cmd: list[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, **kw)
    RUNNING.append(p)
    return p


def stop_all() -> None:
    for p in RUNNING:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 8
    for p in RUNNING:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    RUNNING.clear()


class Servers:
    """One step's server: one process, or `procs` processes on one port."""

    def __init__(self, binary: Path, step: str, procs: int):
        self.step, self.procs = step, procs
        self.cmd = [str(binary), "--port", str(PORT), *PROCESS_STEPS.get(step, []),
                    *SERVER_FLAGS]
        self.list: list[subprocess.Popen] = []
        # stderr to files: a server that says much (EMFILE) must not block on a full pipe.
        LOGS.mkdir(parents=True, exist_ok=True)
        self.logs = [LOGS / f"step-{step}-{i}.err" for i in range(procs)]
        for log in self.logs:
            with log.open("w") as err:
                p = spawn(self.cmd, stderr=err)
            line = p.stdout.readline()
            if not line.startswith("listening on"):
                p.wait(timeout=5)
                raise RuntimeError(f"{' '.join(self.cmd)}: no ready line: {line!r} "
                                   f"{log.read_text().strip()}")
            self.list.append(p)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.list]

    def descriptors(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                total += len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                pass
        return total

    def wait_accepted(self, count: int, since: int, timeout: float) -> float | None:
        """Waits until the servers hold `count` more descriptors than `since`
        (the kernel finishes a handshake before the server accepts it: the
        client's count says nothing of the server's), or until their count
        stops growing. Returns when, or None on the timeout."""
        end = time.monotonic() + timeout
        last, still = -1, 0
        while time.monotonic() < end:
            now = self.descriptors() - since
            if now >= count:
                return time.monotonic()
            still = still + 1 if now == last else 0
            if still >= 5:  # 1 s without one more: it holds what it can
                return time.monotonic()
            last = now
            time.sleep(0.2)
        return None

    def rss_kib(self) -> int:
        return sum(status_kib(pid, "RssAnon") for pid in self.pids)

    def stop(self) -> dict:
        """SIGTERM each, and the sum of their stats lines."""
        for p in self.list:
            p.send_signal(signal.SIGTERM)
        total: dict = {"accepted_each": []}
        errors = []
        for p, log in zip(self.list, self.logs):
            try:
                out, _ = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            errors += [l for l in log.read_text().splitlines() if l.strip()]
            log.unlink()
            for line in out.splitlines():
                if line.startswith("{"):
                    stats = json.loads(line)
                    for k in ("accepted", "requests", "refused", "timeouts"):
                        total[k] = total.get(k, 0) + int(stats.get(k, 0))
                    total["accepted_each"].append(int(stats.get("accepted", 0)))
            RUNNING.remove(p) if p in RUNNING else None
        total["stderr"] = errors[:3]
        return total


class Loadgen:
    """loadgen, its stderr read line by line as it comes (with the time each
    line came), its JSON at the end."""

    def __init__(self, binary: Path, idle: int, args):
        self.cmd = [str(binary), "--port", str(PORT), "--connections", str(args.active),
                    "--idle", str(idle), "--idle-hold", str(args.establish_cap),
                    "--duration", str(args.duration), "--progress", "0.25",
                    "--timeout", str(args.handshake_timeout)]
        if args.sources:
            self.cmd += ["--idle-sources", str(args.sources)]
        if args.idle_procs:
            self.cmd += ["--idle-procs", str(args.idle_procs)]
        self.proc = spawn(self.cmd, stderr=subprocess.PIPE)
        self.lines: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    holding: int | None = None  # what loadgen says it holds, once all are open

    def _read(self) -> None:
        for line in self.proc.stderr:
            if m := re.search(r"holding (\d+) idle connections", line):
                self.holding = int(m.group(1))
            self.stderr.append(line.rstrip("\n"))
            self.lines.put((time.monotonic(), line))
        self.lines.put((time.monotonic(), None))

    def wait_for(self, phase: str, timeout: float, guard=None):
        """Waits for the progress line of `phase`; returns (when it came,
        the line), or None when loadgen ended first, the timeout passed or
        guard() said to stop (loadgen is then asked to stop)."""
        end = time.monotonic() + timeout
        while True:
            try:
                at, line = self.lines.get(timeout=0.2)
            except queue.Empty:
                reason = guard() if guard else None
                if reason or time.monotonic() > end:
                    self.stop_reason = reason or f"time to establish: over {timeout:.0f} s"
                    self.proc.send_signal(signal.SIGTERM)
                    return None
                continue
            if line is None:
                return None
            if f"phase={phase}" in line:
                return at, line

    stop_reason: str | None = None

    def result(self) -> dict:
        try:
            out, _ = self.proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        RUNNING.remove(self.proc) if self.proc in RUNNING else None
        for line in out.splitlines():
            if line.startswith("{"):
                d = json.loads(line)
                d.pop("histogram", None)
                return d
        return {}


# ---------------------------------------------------------------------------
# One measurement: a step at one connection count


@dataclass
class Row:
    step: str
    model: str
    server_procs: int
    connections: int
    held: int = 0
    lost: int = 0
    stopped_by: str = ""
    active: int = 0
    rps: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    errors: int = 0
    cpu_us_per_req: float | None = None
    idle_cpu_pct: float | None = None
    user_bytes_per_conn: float | None = None
    skmem_bytes_per_conn: float | None = None
    sockstat_mem_pages: int | None = None
    slab_bytes_per_conn: float | None = None
    establish_s: float | None = None    # loadgen started → the servers hold them all
    establish_per_s: float | None = None
    handshakes_s: float | None = None   # loadgen's own: first connect → last handshake
    rps_vs_0: float | None = None
    sources: int = 0
    peers_seen: int | None = None
    snapshot_s: float | None = None  # how long the memory figures took to read
    idle_procs: int = 0
    accepted_each: list = field(default_factory=list)
    mem_used_gib: float | None = None  # the machine's, all held (MemTotal - MemAvailable)
    label: str = ""


def why_stopped(held: int, want: int, lg: Loadgen, stats: dict, fd_limit: int) -> str:
    if lg.stop_reason:
        return lg.stop_reason
    if held >= want:
        return ""
    text = "\n".join(lg.stderr) + "\n".join(stats.get("stderr", []))
    if stats.get("refused", 0) > 0 or "EMFILE" in text:
        return (f"descriptors: a server process holds at most {fd_limit} (RLIMIT_NOFILE, "
                f"hard); it refused {stats.get('refused', 0)}")
    if "EADDRNOTAVAIL" in text:
        return "ports: no ephemeral port left for a source address (EADDRNOTAVAIL)"
    if "ETIMEDOUT" in text:
        return "time to establish: handshakes not done within --timeout (ETIMEDOUT)"
    m = re.search(r"failed: (\S+)", text)
    return f"connections lost ({m.group(1) if m else 'closed by the server'})"


def file_room() -> int:
    """Descriptors the whole machine may still open (fs.file-max minus fs.file-nr)."""
    allocated, _, most = (int(x) for x in read("/proc/sys/fs/file-nr").split())
    return most - allocated


def measure(args, step: str, binary: Path, procs: int, n: int) -> Row:
    model = "processes" if step in PROCESS_STEPS else "process"
    row = Row(step=step, model=model, server_procs=procs, connections=n, active=args.active,
              label=args.label)
    # fs.file-max is the machine's, not the namespace's: a run that took it
    # all would fail every other process here with ENFILE. Keep a tenth spare.
    need, room = 2 * n + 4 * procs + 1000, file_room()
    if need > room * 0.9:
        row.stopped_by = (f"descriptors: {n:,} loopback connections need {need:,}, "
                          f"fs.file-max leaves {room:,} on this machine (the lab keeps 10 % spare)")
        return row
    servers = Servers(binary, step, procs)
    base_rss = servers.rss_kib()
    base_sock = sockstat()
    base_slab = slab_bytes()
    base_fds = servers.descriptors()
    time.sleep(0.2)
    started = time.monotonic()
    lg = Loadgen(args.loadgen, n, args)

    def guard():
        avail = meminfo_kib("MemAvailable")
        if avail < MEMORY_FLOOR_KIB:
            return (f"memory: MemAvailable {avail / 2**20:.1f} GiB, under the lab's floor "
                    f"of {MEMORY_FLOOR_KIB / 2**20:.0f} GiB")
        return None

    hold = lg.wait_for("hold", timeout=args.establish_cap, guard=guard)
    if hold:
        accepted = servers.wait_accepted(args.active + (lg.holding or 0), base_fds,
                                         timeout=max(10.0, n / 2000))
        if accepted and n:
            row.establish_s = round(accepted - started, 2)
        # All connected, nothing sent: the server's CPU now is what idle costs.
        time.sleep(0.3)
        c0, t0 = cpu_ns(servers.pids), time.monotonic()
        time.sleep(args.idle_window)
        c1, t1 = cpu_ns(servers.pids), time.monotonic()
        row.idle_cpu_pct = round(100 * (c1 - c0) / 1e9 / (t1 - t0), 3)
        snap = time.monotonic()
        row.mem_used_gib = round((meminfo_kib("MemTotal") - meminfo_kib("MemAvailable")) / 2**20, 2)
        held = lg.holding or 0  # per connection held, which a server at its limit is not all
        if held:
            row.user_bytes_per_conn = round((servers.rss_kib() - base_rss) * 1024 / held, 1)
            sock = sockstat()
            row.sockstat_mem_pages = sock.get("mem", 0) - base_sock.get("mem", 0)
            # Both ends of each connection are on this machine: the slab
            # objects of two sockets, and of the epoll items watching them.
            row.slab_bytes_per_conn = round((slab_bytes() - base_slab) / held, 1)
            sockets, skmem, peers = server_skmem(n)
            row.skmem_bytes_per_conn = round(skmem / max(sockets, 1), 1)
            row.peers_seen = peers
        row.snapshot_s = round(time.monotonic() - snap, 2)
        lg.proc.send_signal(signal.SIGUSR1)  # measured: the hold ends, the load starts
    measure_at = lg.wait_for("measure", timeout=60) if hold else None
    cm0 = cpu_ns(servers.pids)
    late = measure_at and time.monotonic() - measure_at[0] > 0.1
    done = lg.wait_for("done", timeout=args.duration + 60) if measure_at else None
    cm1 = cpu_ns(servers.pids)
    result = lg.result()
    stats = servers.stop()
    row.held = int(result.get("idle_held", 0))
    row.lost = int(result.get("idle_lost", n if not hold else 0))
    row.sources = int(result.get("idle_sources", 0))
    row.idle_procs = int(result.get("idle_procs", 0))
    row.accepted_each = stats.get("accepted_each", [])
    row.errors = sum(result.get("errors", {}).values())
    if result.get("idle_connect_s") and n:
        row.handshakes_s = round(float(result["idle_connect_s"]), 2)
    if row.establish_s and row.held:
        row.establish_per_s = round(row.held / row.establish_s)
    if done and result.get("requests"):
        row.rps = round(float(result["rps"]), 1)
        row.p50_us = result["latency_us"]["p50"]
        row.p99_us = result["latency_us"]["p99"]
        if not late:
            row.cpu_us_per_req = round((cm1 - cm0) / 1e3 / result["requests"], 2)
    row.stopped_by = why_stopped(row.held, n, lg, stats, args.fd_limit)
    return row


# ---------------------------------------------------------------------------
# The plan, the table, the results file


def fmt(v, spec="") -> str:
    if v is None or v == "":
        return "—"
    return format(v, spec) if spec else str(v)


HEADER = (f"{'step':<5} {'procs':>5} {'conns':>9} {'held':>9} {'rps':>8} {'p99 µs':>7} "
          f"{'µs/req':>7} {'idle cpu%':>9} {'user B':>7} {'skmem B':>7} {'slab B':>7} "
          f"{'open s':>7}  stopped by")


def print_row(r: Row) -> None:
    print(f"{r.step:<5} {r.server_procs:>5} {r.connections:>9,} {r.held:>9,} "
          f"{fmt(r.rps, ',.0f'):>8} {fmt(r.p99_us):>7} {fmt(r.cpu_us_per_req, '.1f'):>7} "
          f"{fmt(r.idle_cpu_pct, '.2f'):>9} {fmt(r.user_bytes_per_conn, '.0f'):>7} "
          f"{fmt(r.skmem_bytes_per_conn, '.0f'):>7} {fmt(r.slab_bytes_per_conn, '.0f'):>7} "
          f"{fmt(r.establish_s, '.1f'):>7}  {r.stopped_by}", flush=True)


def machine() -> dict:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"date": datetime.date.today().isoformat(), "machine": socket.gethostname(),
            "nproc": os.cpu_count(), "kernel": platform.release(), "commit": commit,
            "mem_gib": round(meminfo_kib("MemTotal") / 2**20, 1)}


def append_csv(rows: list[Row], where: Path) -> Path:
    """Appends to results/c100k-<date>-<machine>.csv; a file written by an
    older lab with other columns is rewritten with both sets."""
    m = machine()
    path = where / f"c100k-{m['date']}-{m['machine']}.csv"
    where.mkdir(parents=True, exist_ok=True)
    fields = list(m) + [k for k in asdict(rows[0]) if k != "accepted_each"]
    old: list[dict] = []
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            old = list(reader)
            fields += [k for k in reader.fieldnames or [] if k not in fields]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(old)
        for r in rows:
            d = asdict(r)
            d.pop("accepted_each")
            w.writerow({**m, **{k: ("" if v is None else v) for k, v in d.items()}})
    return path


def parse_args(argv: list[str]):
    p = argparse.ArgumentParser(prog="lab-c100k", description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", type=Path, required=True, help="the build's bin/ (steps and loadgen)")
    p.add_argument("--server-bin", type=Path, help="the steps from another build (default --bin)")
    p.add_argument("--connections", type=int, default=100_000,
                   help="the most connections (default 100,000); the levels are 0, 10k, 25k, "
                        "50k, 100k up to it, and it")
    p.add_argument("--levels", help="connection counts, comma-separated (instead)")
    p.add_argument("--steps", default="05,06,08,09,10,11",
                   help="steps, comma-separated (none: only --push)")
    p.add_argument("--poll", action=argparse.BooleanOptionalAction, default=True,
                   help="step 04 up to where it collapses (default on)")
    p.add_argument("--push", action="store_true",
                   help="then 250k, 500k and 1M on --push-step, until one does not get there")
    p.add_argument("--push-levels", default=",".join(map(str, PUSH)))
    p.add_argument("--push-step", default="08")
    p.add_argument("--server-procs", type=int, default=0,
                   help="processes of steps 08/10/11 (default: one per 15,000 connections)")
    p.add_argument("--sources", type=int, default=0,
                   help="loopback source addresses (default: loadgen's, one per 2,000)")
    p.add_argument("--idle-procs", type=int, default=0,
                   help="loadgen's idle processes (default: as many as needed)")
    p.add_argument("--active", type=int, default=50)
    p.add_argument("--duration", type=float, default=4.0, help="seconds of load per cell")
    p.add_argument("--idle-window", type=float, default=3.0,
                   help="seconds the idle CPU is measured over")
    p.add_argument("--handshake-timeout", type=float, default=30.0)
    p.add_argument("--establish-cap", type=float, default=600.0,
                   help="seconds all the connections may take to open")
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--no-results", action="store_true")
    p.add_argument("--label", default="", help="a word for the rows (e.g. which sweep)")
    p.add_argument("--json", action="store_true", help="a facts line at the end")
    args = p.parse_args(argv)
    args.loadgen = args.bin / "loadgen"
    args.server_bin = args.server_bin or args.bin
    args.fd_limit = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[1]
    # The quiet: 0.5 s to settle, the idle CPU window, then the memory figures.
    return args


def levels_for(args) -> list[int]:
    if args.levels:
        return [int(x) for x in args.levels.split(",")]
    return sorted({l for l in LEVELS if l <= args.connections} | {args.connections})


def step_binary(args, step: str) -> tuple[Path | None, str]:
    b = args.server_bin / f"step-{step}"
    if not b.exists():
        return None, "not built"
    if step == "11":
        probe = subprocess.run([str(b), "--probe"], capture_output=True, text=True)
        if probe.returncode != 0:
            return None, (probe.stdout + probe.stderr).strip().splitlines()[-1]
    return b, ""


def run_ladder(args, step: str, levels: list[int], rows: list[Row], collapse=False) -> None:
    binary, why = step_binary(args, step)
    if not binary:
        print(f"{step:<5} skipped: {why}")
        return
    procs = 1
    if step in PROCESS_STEPS:
        procs = args.server_procs or max(1, math.ceil(max(levels) / PER_PROCESS))
    zero = None
    for n in levels:
        r = measure(args, step, binary, procs, n)
        if n == 0:
            zero = r.rps
        if zero and r.rps:
            r.rps_vs_0 = round(r.rps / zero, 3)
        rows.append(r)
        print_row(r)
        if r.stopped_by:
            break
        if collapse and r.rps_vs_0 is not None and r.rps_vs_0 < 0.5:
            r.stopped_by = f"collapsed: rps {r.rps_vs_0:.2f}x its 0-idle rps"
            print(f"      step {step} collapses here: {r.stopped_by}")
            break


def verdict(rows: list[Row], most: int) -> tuple[str, dict]:
    pushed = [r for r in rows if r.connections > most]
    push = "; ".join(f"{r.connections:,}: held {r.held:,}" + (f" ({r.establish_s:.0f} s to open)"
                                                            if r.establish_s else "")
                     + (f", stopped by {r.stopped_by}" if r.stopped_by else "") for r in pushed)
    top = [r for r in rows if r.connections == most and r.step != "04"]
    if not top and pushed:
        return f"pushed on step {pushed[0].step}: {push}", {"push": [asdict(r) for r in pushed]}
    held = [r for r in top if r.held >= most and r.errors == 0 and not r.stopped_by]
    facts: dict = {"most": most, "held_all": sorted({r.step for r in held})}
    if not held:
        return (f"no step held {most:,} connections here; see 'stopped by'", facts)
    best = max(held, key=lambda r: r.rps_vs_0 or 0)
    facts.update(best=best.step, rps_vs_0=best.rps_vs_0, user_bytes=best.user_bytes_per_conn,
                 idle_cpu_pct=best.idle_cpu_pct)
    goals = [
        (f"{most:,} held with 0 errors by {', '.join(facts['held_all'])}", True),
        (f"the {best.active} active keep {fmt(best.rps_vs_0, '.2f')}x their 0-idle rps on step "
         f"{best.step} (goal >= 0.85)", (best.rps_vs_0 or 0) >= 0.85),
        (f"{fmt(best.user_bytes_per_conn, '.0f')} B of user memory per idle connection "
         f"(goal <= 1024)", (best.user_bytes_per_conn or 1e9) <= 1024),
        (f"{fmt(best.idle_cpu_pct, '.2f')} % of a core while all are idle (goal < 2)",
         (best.idle_cpu_pct or 1e9) < 2),
    ]
    facts["goals_met"] = all(ok for _, ok in goals)
    text = "; ".join(("" if ok else "MISSED: ") + text for text, ok in goals)
    return text + (f"; pushed on step {pushed[0].step}: {push}" if pushed else ""), facts


def on_term(signum, frame):
    raise KeyboardInterrupt  # a SIGTERM stops what the lab started, as Ctrl-C does


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, on_term)
    args = parse_args(argv)
    if not args.loadgen.exists():
        print(f"lab-c100k: {args.loadgen} is not built", file=sys.stderr)
        return 1
    levels = levels_for(args)
    print(f"lab-c100k: {max(levels):,} connections to port {PORT} in this namespace; "
          f"{args.active} of them active for {args.duration:g} s per cell; RLIMIT_NOFILE "
          f"{args.fd_limit} per process, fs.file-max {read('/proc/sys/fs/file-max').strip()}")
    print(HEADER)
    rows: list[Row] = []
    try:
        for step in filter(None, args.steps.replace("none", "").split(",")):
            run_ladder(args, step.strip(), levels, rows)
        if args.poll:
            run_ladder(args, "04", [l for l in POLL_LEVELS if l <= max(levels)] or [0], rows,
                       collapse=True)
        if args.push:
            push = [int(x) for x in args.push_levels.split(",")]
            for n in push:
                before = len(rows)
                run_ladder(args, args.push_step, [n], rows)
                if rows[before:] and rows[-1].stopped_by:
                    print(f"      {n:,}: stopped by {rows[-1].stopped_by}; not trying more")
                    break
    except KeyboardInterrupt:
        print("\nlab-c100k: interrupted; stopping what it started", file=sys.stderr)
        stop_all()
        return 130
    finally:
        stop_all()
    if rows and not args.no_results:
        path = append_csv(rows, args.results)
        print(f"rows appended to {os.path.relpath(path, ROOT)}")
    text, facts = verdict(rows, max(levels))
    print(f"verdict: {text}")
    if args.json:
        facts["rows"] = [asdict(r) for r in rows]
        print("facts: " + json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
