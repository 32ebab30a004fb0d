"""Step 08 demo: the kernel spreads connections over the workers' listeners;
a listener that closes loses its queue; 1 worker vs nproc workers."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import time

from ladder.server import Server, bin_dir
from quiet import Watch, wait_quiet

CLOSE = b"GET /hello HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
SPREAD, QUEUED = 1000, 40
CPU_PATH, SECONDS = "/cpu?n=300000", 2.0


def hello_and_close(address) -> None:
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(CLOSE)
        while s.recv(65536):
            pass


def all_stopped(pid: int) -> bool:
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/stat") as f:
            stat = f.read()
        states.append(stat[stat.rfind(")") + 2])
    return all(s == "T" for s in states)


def spread(demo) -> None:
    demo.say(f"{SPREAD} connections, one after the other, to 4 workers:\n")
    srv = Server("08", ["--workers", "4"]).start()
    try:
        for _ in range(SPREAD):
            hello_and_close(srv.address)
        stats = srv.stop().stats
    finally:
        srv.kill()
    counts = [w["connections"] for w in stats["workers"]]
    for i, n in enumerate(counts):
        demo.bar(f"worker {i}", n, SPREAD / 2)
    demo.say("\nEach listener got its share by a hash of the client's address and port;")
    demo.say("each worker's epoll set watches its own listener only: one waiter per client.\n")


def lost_queue(demo) -> None:
    a = Server("08", ["--workers", "2"]).start()
    b = Server("08", ["--workers", "2", "--port", str(a.port)]).start()
    demo.say(f"Two servers share port {a.port}: A (pid {a.pid}) and B (pid {b.pid}),"
             " 2 listeners each.")
    socks = []
    try:
        os.kill(a.pid, signal.SIGSTOP)
        while not all_stopped(a.pid):
            time.sleep(0.01)
        demo.say(f"A is stopped (SIGSTOP). {QUEUED} clients connect and send GET /hello:")
        for _ in range(QUEUED):
            s = socket.create_connection(a.address, timeout=5)
            s.sendall(CLOSE)
            socks.append(s)
        answered = set()
        while True:  # until no new answer for 0.5 s
            r, _, _ = select.select([s for s in socks if s not in answered], [], [], 0.5)
            if not r:
                break
            answered.update(r)
        demo.say(f"  {len(answered)} answered by B; {QUEUED - len(answered)} wait, handshake done,"
                 " in A's accept queues.")
        os.kill(a.pid, signal.SIGKILL)
        a.proc.wait()
        reset = 0
        for s in socks:
            if s in answered:
                continue
            try:
                reset += s.recv(100) == b""
            except ConnectionResetError:
                reset += 1
        demo.say(f"A is killed: its listeners close, and {reset} of those clients get a reset,")
        demo.say("although B's listeners were idle the whole time: the queue was A's own.")
        demo.say("(net.ipv4.tcp_migrate_req=1, Linux 5.14, would move them to B instead; it is "
                 f"{open('/proc/sys/net/ipv4/tcp_migrate_req').read().strip()} here.)\n")
    finally:
        for s in socks:
            s.close()
        for srv in (a, b):
            if srv.proc and srv.proc.poll() is None:
                srv.stop()
            srv.kill()


def throughput(demo) -> None:
    loadgen = bin_dir() / "loadgen"
    nproc = os.cpu_count() or 1
    if not loadgen.exists():
        demo.say("(build/bin/loadgen is not built: skipping 1 vs N workers)")
        return
    demo.say(f"CPU-bound requests (GET {CPU_PATH}), 16 connections, {SECONDS:.0f} s each;"
             f" this machine has nproc = {nproc}:\n")
    rows, rps = [], {}
    watch = Watch()
    for workers in sorted({1, nproc}):
        srv = Server("08", ["--workers", str(workers)]).start()
        try:
            wait_quiet()
            with Watch() as w:
                out = subprocess.run([str(loadgen), "--port", str(srv.port), "--connections",
                                      "16", "--duration", str(SECONDS), "--path", CPU_PATH],
                                     capture_output=True, text=True, timeout=SECONDS + 30)
            watch = w if w.busy else watch
            stats = srv.stop().stats
        finally:
            srv.kill()
        result = json.loads(out.stdout)
        rps[workers] = result["rps"]
        rows.append([workers, f"{result['rps']:.0f}",
                     " ".join(str(w["requests"]) for w in stats["workers"])])
    demo.table(["workers", "requests/s", "requests per worker"], rows)
    demo.say("")
    if nproc == 1:
        demo.say("One CPU here: nothing to spread over. The shares above are the lesson.")
        return
    gain = rps[nproc] / rps[1]
    demo.claim(gain > 1.15, watch,
               f"{nproc} workers answered {gain:.1f}x the requests of one: CPU-bound work"
               " spreads over the cores.",
               f"This run: {gain:.2f}x with {nproc} workers — the load generator shares these"
               " cores; make bench pins it apart.")


def run(demo):
    demo.title("SO_REUSEPORT: a listener and a loop per worker")
    spread(demo)
    lost_queue(demo)
    throughput(demo)
    demo.next(
        read=["steps/08-reuseport/README.md",
              "docs/diffs/06-08.diff"],
        tries=["build/bin/step-08 --workers 4, then `ss -ltnp 'sport = :8080'`:"
               " four listeners, one port",
               "make step-09: one acceptor, N I/O loops, M workers for slow requests"],
    )
