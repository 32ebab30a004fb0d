#!/usr/bin/env python3
"""What one keep-alive request costs a server, in figures that do not move
with the machine's noise: user-space instructions (valgrind's callgrind
counts them, the same total every run) and system calls (perf's syscall
tracepoints, which do not slow the server; strace -f -c when perf cannot).

    tools/profile/hotpath.py [--connections 50] [--mode http|echo] [BIN ...]

BIN defaults to the steps whose step.toml says `hotpath = true` in [bench]
(06, 08, 09 ...) and the floor. Instructions
per request are a slope: two runs of N1 and N2 requests on the same number
of connections, (I2 - I1) / (N2 - N1), so start-up and per-connection costs
cancel out. Loopback only; each run is bounded by its request count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "pylib"))
from ladder.steps import all_steps  # noqa: E402
BIN = ROOT / "build" / "bin"
SYSCALLS = ["read", "recvfrom", "sendto", "write", "writev", "epoll_wait", "epoll_ctl"]


def start(cmd: list[str], env=None) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(cmd + ["--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if m := re.search(r"listening on \S+:(\d+)", line):
            return proc, int(m.group(1))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"{cmd[-1]} did not print its ready line")


def load(port: int, args: argparse.Namespace, requests: int) -> int:
    out = subprocess.run([str(args.bin_dir / "loadgen"), "--port", str(port), "--mode",
                          args.mode, "--connections", str(args.connections), "--requests",
                          str(requests), "--timeout", "120"],
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    if sum(result.get("errors", {}).values()):
        raise RuntimeError(f"loadgen errors: {result['errors']}")
    return result["requests"]


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def instructions(binary: Path, args: argparse.Namespace, requests: int) -> int:
    """Total instructions (Ir) of one server run under callgrind."""
    with tempfile.TemporaryDirectory(prefix="ladder-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        proc, port = start(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            str(binary), "--mode", args.mode])
        try:
            load(port, args, requests)
        finally:
            stop(proc)
        text = out.read_text(errors="replace")
        m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if not m:
            raise RuntimeError("no totals in the callgrind output")
        return int(m.group(1))


def perf_works() -> bool:
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "not supported" not in r.stderr


def tids(pid: int) -> list[str]:
    return os.listdir(f"/proc/{pid}/task")


def syscalls(binary: Path, args: argparse.Namespace, requests: int) -> tuple[float, str, str]:
    """(system calls per request, the main ones, how they were counted)."""
    proc, port = start([str(binary), "--mode", args.mode])
    try:
        load(port, args, 2000)  # warm-up: connections, buffers
        with tempfile.TemporaryDirectory(prefix="ladder-sc-") as tmp:
            out = Path(tmp) / "counts"
            lg = [str(args.bin_dir / "loadgen"), "--port", str(port), "--mode", args.mode,
                  "--connections", str(args.connections), "--requests", str(requests),
                  "--timeout", "120"]
            if perf_works():
                # perf counts the server's threads for as long as the load runs.
                how = "perf tracepoints"
                events = ",".join(["raw_syscalls:sys_enter"] +
                                  [f"syscalls:sys_enter_{s}" for s in SYSCALLS])
                run = subprocess.run(["perf", "stat", "-x,", "-e", events, "-t",
                                      ",".join(tids(proc.pid)), "-o", str(out), "--", *lg],
                                     capture_output=True, text=True, check=True)
                n = json.loads(run.stdout)["requests"]
            else:
                how = "strace -c (slows the server: batches grow)"
                err = Path(tmp) / "stderr"  # a file: a full pipe would stall strace
                with open(err, "w") as errf:
                    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(proc.pid),
                                               "-o", str(out)], stdout=subprocess.DEVNULL,
                                              stderr=errf)
                deadline = time.monotonic() + 10
                while "attached" not in err.read_text():  # "strace: Process N attached"
                    if tracer.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"strace could not attach: {err.read_text()}")
                    time.sleep(0.05)
                time.sleep(0.2)  # the other threads' attach lines
                n = load(port, args, requests)
                tracer.send_signal(signal.SIGINT)
                tracer.wait(60)
            text = out.read_text()
    finally:
        stop(proc)
    counts: dict[str, int] = {}
    if how.startswith("perf"):
        for line in text.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[0].isdigit():
                counts[f[2].split("sys_enter_")[-1].replace("raw_syscalls:sys_enter",
                                                             "all")] = int(f[0])
        total = counts.pop("all", 0)
    else:
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 5 and f[-1] not in ("syscall", "total") and f[3].isdigit():
                counts[f[-1]] = int(f[3])
        total = sum(counts.values())
    top = " ".join(f"{k} {v / n:.2f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])
                   if v)
    return total / n, top, how


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("binaries", nargs="*",
                   help="server binaries (default: the hotpath steps of step.toml, floor)")
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--mode", choices=("http", "echo"), default="http")
    p.add_argument("--requests", type=int, default=20000, help="N2 (N1 is a tenth)")
    p.add_argument("--bin-dir", type=Path, default=BIN)
    args = p.parse_args(argv)
    names = args.binaries or [f"step-{n}" for n, s in all_steps().items()
                              if s.bench.get("hotpath")] + ["floor"]
    binaries = [Path(b) if "/" in b else args.bin_dir / b for b in names]
    missing = [str(b) for b in binaries + [args.bin_dir / "loadgen"] if not b.exists()]
    if missing:
        print(f"hotpath: not built: {', '.join(missing)} (run make build)", file=sys.stderr)
        return 2
    if not shutil.which("valgrind"):
        print("hotpath: needs valgrind: apt-get install -y valgrind", file=sys.stderr)
        return 2
    n1, n2 = args.requests // 10, args.requests
    print(f"{args.mode}, {args.connections} connections; instructions/request = slope "
          f"between {n1:,} and {n2:,} requests under callgrind")
    print(f"{'server':<10} {'instr/req':>10} {'syscalls/req':>13}  main calls per request")
    for b in binaries:
        slope = (instructions(b, args, n2) - instructions(b, args, n1)) / (n2 - n1)
        per, top, how = syscalls(b, args, n2)
        print(f"{b.name:<10} {slope:>10,.0f} {per:>13.2f}  {top}", flush=True)
    print(f"(system calls counted by {how})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
