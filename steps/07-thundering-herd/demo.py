"""Step 07 demo: every --variant with 4 idle workers, under low-rate and burst
arrivals; who wakes up and who gets the connection, from the server's own
per-worker counters. Writes its table to build/demo/herd-<date>.csv (a demo's
numbers: the notebooks plot the bench's committed run, not this)."""

from __future__ import annotations

import csv
import datetime
import os
import platform
import socket
import subprocess
import threading
import time
from pathlib import Path

from ladder.server import ROOT, Server

WORKERS = 4
VARIANTS = ["blocking", "shared-lt", "shared-et", "exclusive", "mutex", "acceptor",
            "reuseport"]
LOW_RATE, PAUSE = 300, 0.003           # one connection at a time; every worker idle
BURST_CLIENTS, BURST_EACH = 8, 40      # 8 clients at once, back to back
CLOSE = b"GET /hello HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n"
MARKS = "0123456789"


def hello_and_close(address) -> None:
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(CLOSE)
        while s.recv(65536):
            pass


def low_rate(address) -> None:
    for _ in range(LOW_RATE):
        hello_and_close(address)
        time.sleep(PAUSE)


def burst(address) -> None:
    start = threading.Barrier(BURST_CLIENTS)

    def one():
        start.wait()
        for _ in range(BURST_EACH):
            hello_and_close(address)

    threads = [threading.Thread(target=one) for _ in range(BURST_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


PATTERNS = {"low-rate": (low_rate, f"{LOW_RATE} connections one at a time, {PAUSE * 1000:.0f} ms"
                                   " apart: every worker is idle when one arrives"),
            "burst": (burst, f"{BURST_CLIENTS} clients at once, {BURST_EACH} connections each,"
                             " back to back: workers are busy when they arrive")}


def measure(variant: str, load) -> dict:
    srv = Server("07", ["--variant", variant, "--workers", str(WORKERS)]).start()
    try:
        load(srv.address)
        stopped = srv.stop()
    finally:
        srv.kill()
    assert stopped.code == 0 and stopped.stats, f"step-07 --variant {variant}: {stopped.stderr}"
    return stopped.stats


def row(pattern: str, stats: dict) -> dict:
    workers = stats["workers"]
    conns = stats["accepted"] or 1
    r = {"pattern": pattern, "variant": stats["variant"],
         "server": f"step-07-{stats['variant']} {pattern}", "workers": len(workers),
         "connections": stats["accepted"],
         "wakeups": sum(w["wakeups"] for w in workers),
         "wasted_eagain": sum(w["wasted_wakeups"] for w in workers),
         "wasted_in_kernel": sum(w["silent_wakeups"] for w in workers),
         "wasted_per_connection": stats["wasted_per_connection"] or 0.0,
         "fairness": stats["fairness"]}
    r["eagain_per_connection"] = r["wasted_eagain"] / conns
    for i, share in enumerate(stats["shares"]):
        r[f"share_{i}"] = share
    return r


def share_bar(shares: list[float], width: int = 40) -> str:
    """Each worker's share as a run of its number: 0000111122223333."""
    cells, used = [], 0
    for i, s in enumerate(shares):
        n = round(s * width) if i < len(shares) - 1 else width - used
        n = max(0, min(n, width - used))
        cells.append(MARKS[i % 10] * n)
        used += n
    return "".join(cells)


def write_csv(out: Path, rows: list[dict]) -> Path:
    path = out / f"herd-{datetime.date.today().isoformat()}.csv"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    about = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit,
             "nproc": os.cpu_count(), "kernel": platform.release()}
    fields = list(about) + list(rows[0])
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({**about, **{k: (f"{v:.4f}" if isinstance(v, float) else v)
                                    for k, v in r.items()}})
    return path


def run(demo):
    demo.title("the thundering herd")
    demo.say(f"One port, {WORKERS} workers, {len(VARIANTS)} ways to wait for the next client"
             " (herd.h).")
    demo.say("Per worker the server counts wake-ups that found nothing: accept() said")
    demo.say("EAGAIN, or the kernel woke it and put it back to sleep inside epoll_wait")
    demo.say("(seen only in the thread's context switches) — and the connections it served.")
    rows = []
    for pattern, (load, text) in PATTERNS.items():
        demo.say(f"\n{pattern}: {text}.\n")
        table = []
        for variant in VARIANTS:
            r = row(pattern, measure(variant, load))
            rows.append(r)
            shares = [r[f"share_{i}"] for i in range(r["workers"])]
            table.append([variant, f"{r['wasted_per_connection']:.2f}",
                          f"{r['eagain_per_connection']:.2f}",
                          f"{r['fairness']:.2f}" if r["fairness"] is not None else "-",
                          " ".join(f"{s:.2f}" for s in shares)])
        demo.table(["variant", "wasted wake-ups/conn", "of which EAGAIN", "fairness J",
                    "share per worker"], table)
        print()
        for r in rows[-len(VARIANTS):]:
            shares = [r[f"share_{i}"] for i in range(r["workers"])]
            print(f"  {r['variant']:>10} |{share_bar(shares)}|")
        demo.say(f"{'':10}  (each digit: that worker's share of the connections)")
    path = write_csv(demo.out_dir(), rows)
    demo.say(f"\n(the table: {path.relative_to(ROOT)})")
    low = {r["variant"]: r for r in rows if r["pattern"] == "low-rate"}
    herd = min(low[v]["wasted_per_connection"] for v in ("shared-lt", "shared-et"))
    cured = max(low[v]["wasted_per_connection"] for v in VARIANTS if not v.startswith("shared"))
    demo.say("")
    if herd >= 1 and cured < 0.5:
        demo.say(f"shared-lt/et: each client woke about {herd:.1f} workers in vain (of"
                 f" {WORKERS - 1} that could); most of those wake-ups")
        demo.say("are absorbed inside epoll_wait, which re-checks the listener. Blocking"
                 " accept(), EPOLLEXCLUSIVE,")
        demo.say("the mutex, the acceptor and SO_REUSEPORT wake one: the shares say who"
                 " gets the clients.")
    else:
        demo.say(f"This run: {herd:.2f} wasted wake-ups per client when shared, {cured:.2f}"
                 " at most otherwise —")
        demo.say("not the herd and its cures the variants show on a quiet machine: rerun.")
    demo.next(
        read=["steps/07-thundering-herd/README.md",
              "steps/07-thundering-herd/herd.h (the table), then one file per variant:"
              " shared.cpp, mutex.cpp, acceptor.cpp, reuseport.cpp, blocking.cpp"],
        tries=["build/bin/step-07 --variant shared-lt --workers 8, then compare"
               " voluntary_ctxt_switches in /proc/$(pgrep -n step-07)/task/*/status"
               " before and after `curl 127.0.0.1:8080/hello`",
               "make step-08: a listener and a loop per worker, with SO_REUSEPORT"],
    )
