"""Step 10 demo: step 02's handler as a coroutine; threads vs coroutines at
1,000 and 5,000 idle connections; a running /cpu stalls its scheduler, a
parked /work does not."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from clients import raise_fd_limit
from ladder.client import Reader, connect, request
from ladder.procfs import cpu_seconds, rss_kib, threads
from ladder.server import bin_dir

STEPS = Path(__file__).resolve().parents[1]
CROWDS = [1000, 5000]
WIDTH = 52  # each column of the side-by-side listing


def function(path: Path, head: str) -> list[str]:
    """The lines of the function that starts with `head`, to its closing brace."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    # Without end-of-line comments and ladder:: prefixes: the code is compared.
    return [re.sub(r"\s+//.*$", "", line).replace("ladder::", "")
            for line in lines[start:end + 1]]


def row_of(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def side_by_side() -> None:
    step02 = STEPS / "02-thread-per-conn" / "server.cpp"
    right = function(STEPS / "10-coroutines" / "server.cpp", "Task serve(")
    # Step 02's send_all() and serve(), in their order, the reads side by side.
    left = function(step02, "void send_all(") + [""] + function(step02, "void serve(")
    pad = row_of(right, "read(") - row_of(left, "::read(")
    left, right = [""] * pad + left, [""] * -pad + right
    cut = lambda s: (s if len(s) <= WIDTH else s[:WIDTH - 1] + "…").ljust(WIDTH)  # noqa: E731
    print(f"  {cut('step 02: a thread sleeps in read() and send()')} | "
          "step 10: the coroutine parks instead")
    print(f"  {'-' * WIDTH}-+-{'-' * WIDTH}")
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        print(f"  {cut(a)} | {cut(b).rstrip()}")
    print()


def hold(address, socks: list, n: int) -> None:
    """Opens connections until there are n, each answered one GET /hello."""
    while len(socks) < n:
        s = connect(address, timeout=30)
        socks.append(s)
        s.sendall(request("/hello"))
        Reader(s).response()


def cpu_us_per_request(srv) -> float | None:
    """Server CPU per request under 2 s of load (50 connections, closed loop)."""
    loadgen = bin_dir() / "loadgen"
    if not loadgen.exists():
        return None
    before = cpu_seconds(srv.pid)
    r = subprocess.run([str(loadgen), "--port", str(srv.port), "--connections", "50",
                        "--duration", "2"], capture_output=True, text=True, timeout=60)
    requests = json.loads(r.stdout)["requests"] if r.returncode == 0 else 0
    return (cpu_seconds(srv.pid) - before) * 1e6 / requests if requests else None


def crowd_rows(demo, step: str) -> list[list[object]]:
    rows = []
    with demo.server(step=step) as srv:
        socks: list = []
        try:
            hold(srv.address, socks, 100)  # the allocator and tables settle first
            time.sleep(0.2)
            base = rss_kib(srv.pid)
            for n in CROWDS:
                hold(srv.address, socks, 100 + n)
                time.sleep(0.2)
                grown = rss_kib(srv.pid) - base
                cpu = cpu_us_per_request(srv)
                rows.append([f"step-{step}", n, threads(srv.pid), f"{grown / 1024:.1f} MiB",
                             f"{grown / n:.2f} KiB", "-" if cpu is None else f"{cpu:.0f} µs"])
        finally:
            for s in socks:
                s.close()
    return rows


def hello_behind(address, path: str) -> float:
    """Client A asks `path`; 50 ms later client B (already connected) asks
    GET /hello. Seconds B waited."""
    with connect(address, timeout=30) as a, connect(address, timeout=30) as b:
        rb = Reader(b)
        b.sendall(request("/hello"))
        rb.response()
        a.sendall(request(path))
        time.sleep(0.05)
        sent = time.monotonic()
        b.sendall(request("/hello"))
        rb.response()
        waited = time.monotonic() - sent
        Reader(a).response()
        return waited


def cpu_rounds(address, probe: int = 20_000_000) -> int:
    """Rounds of /cpu that take about 300 ms here."""
    with connect(address, timeout=30) as s:
        t0 = time.monotonic()
        s.sendall(request(f"/cpu?n={probe}"))
        Reader(s).response()
        took = time.monotonic() - t0
    return int(min(200_000_000, probe * 0.3 / max(took, 1e-3)))


def run(demo):
    demo.title("coroutines on epoll: Go's netpoller, in C++20")
    demo.say("The same handler, twice: step 02's thread sleeps in read(); step 10's")
    demo.say("coroutine parks on its descriptor when read() says EAGAIN, and epoll_wait")
    demo.say("resumes it when the socket is readable.\n")
    side_by_side()
    raise_fd_limit()
    demo.say("Idle keep-alive connections (each answered once, then left open), and the")
    demo.say("server's CPU per request for 50 busy clients beside them:\n")
    rows = crowd_rows(demo, "02") + crowd_rows(demo, "10")
    demo.table(["server", "idle connections (+100)", "threads", "RSS growth", "per connection",
                "CPU / request"], rows)
    demo.say("\nA thread keeps a stack and a kernel task per connection; a coroutine keeps")
    demo.say("its frame (about half a KiB) and the bytes its session holds.\n")
    demo.say("The cost: nothing preempts a coroutine. Client A asks for ~300 ms of CPU")
    demo.say("(/cpu) or for a 300 ms wait (/work); 50 ms later client B asks /hello.\n")
    rows = []
    for step in ["02", "10"]:
        with demo.server(step=step) as srv:
            rounds = cpu_rounds(srv.address)
            rows.append([f"step-{step}",
                         f"{hello_behind(srv.address, f'/cpu?n={rounds}') * 1000:.1f} ms",
                         f"{hello_behind(srv.address, '/work?ms=300') * 1000:.1f} ms"])
    demo.table(["server", "/hello behind a /cpu", "/hello behind a /work"], rows)
    demo.say("\nStep 02: the kernel's scheduler preempts the busy thread. Step 10: the /cpu")
    demo.say("runs on the scheduler's only thread until it is done, and everyone on it")
    demo.say("waits; the /work is parked on a timer, and holds no one.")
    demo.next(
        read=["steps/10-coroutines/README.md (each piece and its Go counterpart)",
              "docs/diffs/08-10.diff"],
        tries=["make test-steps PYTEST_ARGS='-k \"10 and coroutines\"'",
               "cut /cpu into slices with co_await sleep_for(s, 0ms) between them"
               " (Go's runtime.Gosched), and rerun the last table",
               "build/bin/step-10 --threads 2: a scheduler and a listener per thread"],
    )

