"""Step 11 demo: system calls per request, epoll (06) against io_uring (11),
at 1, 50 and 200 keep-alive connections; and what one io_uring_submit_and_wait
carried."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ladder.server import bin_dir

CONNECTIONS = [1, 50, 200]
REQUESTS = 20_000
READINESS_CALLS = ("read", "recvfrom", "sendto", "write", "epoll_wait")


def loadgen(port: int, connections: int, requests: int) -> list[str]:
    return [str(bin_dir() / "loadgen"), "--port", str(port), "--connections",
            str(connections), "--requests", str(requests), "--timeout", "60"]


def perf_works() -> bool:
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "not supported" not in r.stderr


def count(pid: int, port: int, connections: int, how: str) -> tuple[int, dict[str, int]]:
    """(requests, {call: count}) of every thread of `pid` while loadgen runs."""
    tids = ",".join(os.listdir(f"/proc/{pid}/task"))
    with tempfile.TemporaryDirectory(prefix="ladder-11-") as tmp:
        out = Path(tmp) / "counts"
        lg = loadgen(port, connections, REQUESTS)
        if how == "perf":
            events = ["raw_syscalls:sys_enter", "syscalls:sys_enter_io_uring_enter"] + \
                     [f"syscalls:sys_enter_{c}" for c in READINESS_CALLS]
            run = subprocess.run(["perf", "stat", "-x,", "-e", ",".join(events), "-t", tids,
                                  "-o", str(out), "--", *lg], capture_output=True, text=True,
                                 check=True)
            made = json.loads(run.stdout)["requests"]
            counts = {}
            for line in out.read_text().splitlines():
                f = line.split(",")
                if len(f) > 2 and f[0].isdigit():
                    counts[f[2].split("sys_enter_")[-1].replace("raw_syscalls:sys_enter",
                                                                 "all")] = int(f[0])
            return made, counts
        err = Path(tmp) / "stderr"
        with open(err, "w") as errf:  # a file: a full pipe would stall strace
            tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", str(out)],
                                      stdout=subprocess.DEVNULL, stderr=errf)
        while "attached" not in err.read_text() and tracer.poll() is None:
            time.sleep(0.05)
        time.sleep(0.2)
        made = json.loads(subprocess.run(lg, capture_output=True, text=True,
                                         check=True).stdout)["requests"]
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        counts = {}
        for line in out.read_text().splitlines():
            f = line.split()
            if len(f) >= 5 and f[-1] not in ("syscall", "total") and f[3].isdigit():
                counts[f[-1]] = int(f[3])
        counts["all"] = sum(counts.values())
        return made, counts


def run(demo):
    demo.title("io_uring: the kernel does the I/O, one call carries a batch")
    how = "perf" if perf_works() else "strace"
    if how == "strace" and not shutil.which("strace"):
        demo.say("Neither perf nor strace can count system calls here: apt-get install strace")
        return
    demo.say(f"GET /hello on keep-alive connections, {REQUESTS:,} requests per cell; every")
    demo.say(f"system call of the server's threads counted by "
             f"{'perf tracepoints' if how == 'perf' else 'strace -c (it slows each call)'}.\n")
    rows, batches = [], []
    for step in ["06", "11"]:
        for n in CONNECTIONS:
            with demo.server(step=step) as srv:
                subprocess.run(loadgen(srv.port, n, 1000), capture_output=True, check=True)
                made, counts = count(srv.pid, srv.port, n, how)
            stats = srv.result.stats if srv.result else {}
            readiness = sum(counts.get(c, 0) for c in READINESS_CALLS)
            rows.append([f"step-{step}", n, f"{counts.get('all', 0) / made:.2f}",
                         f"{readiness / made:.2f}",
                         f"{counts.get('io_uring_enter', 0) / made:.2f}"])
            if step == "11" and stats.get("wakeups"):
                w = stats["wakeups"]
                batches.append([n, f"{stats['submits'] / w:.1f}", f"{stats['completions'] / w:.1f}",
                                f"{stats['requests'] / w:.1f}", stats.get("nobufs", 0)])
    demo.say("")
    demo.table(["server", "connections", "syscalls / request", "read+send+epoll_wait",
                "io_uring_enter"], rows)
    demo.say("\nWhat one io_uring_submit_and_wait carried (step 11's own stats, whole run):\n")
    demo.table(["connections", "SQEs in", "CQEs out", "requests", "ring ran dry"], batches)
    demo.say("\nEpoll pays a read and a send per request, whatever the load. io_uring pays one")
    demo.say("io_uring_enter per pass: two passes per request alone (the receive's completion,")
    demo.say("then the send's), a fraction of one when many connections are busy at once.")
    demo.next(
        read=["steps/11-io-uring/README.md (reactor vs proactor, who owns a buffer)",
              "docs/diffs/08-11.diff"],
        tries=["build/bin/step-11 --buffers 4, then a 1 MiB POST /echo: nobufs in /stats",
               "make test-steps PYTEST_ARGS='-k \"11 and uring\"'"],
    )
