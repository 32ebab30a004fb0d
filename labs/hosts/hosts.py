"""lab-hosts: three hosts behind HAProxy, on one machine.

Run by labs/hosts/run.sh, which makes the namespaces (client, lb, host1..3,
and a switch holding the bridge) and removes them; see labs/hosts/README.md.

    labs/hosts/run.sh build/bin            every measurement (~1.5 min)
    labs/hosts/run.sh build/bin --quick    the topology, the shares, one failover

What it measures, with loadgen in `client` and step 08 on each host:
  shares     per-host requests through HAProxy: TCP and HTTP mode, roundrobin
             and leastconn (what an L4 and an L7 balancer each balance)
  failover   host2's server killed mid-run: requests that failed before HAProxy
             marked it down, how long that took, failures after (none); then
             host2 started again, how long until it is back, what it serves
  cost       the CPU and latency HAProxy adds per request, against client →
             host directly, at the same fixed rate
  veth       one host's server under the same load over the veth pair and
             bridge, and over loopback inside the host
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT = 8080  # each host's server
LB = "10.201.0.2"
HOSTS = {1: "10.201.0.11", 2: "10.201.0.12", 3: "10.201.0.13"}
# HAProxy's frontends: (mode, balance) -> port on the balancer.
FRONTENDS = {("tcp", "roundrobin"): 8001, ("tcp", "leastconn"): 8002,
             ("http", "roundrobin"): 8003, ("http", "leastconn"): 8004}
CHECK_MS = 200  # health checks every 200 ms; 2 failures mark a server down, 2 passes up

RUNNING: list[subprocess.Popen] = []


def read(path) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_ns(pid: int) -> int:
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        fields = read(f"/proc/{pid}/task/{tid}/schedstat").split()
        total += int(fields[0]) if fields else 0
    return total


def in_ns(ns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def spawn(cmd: list[str], **kw) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, **kw)
    RUNNING.append(p)
    return p


def stop_all() -> None:
    for p in RUNNING:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in RUNNING:
        try:
            p.wait(timeout=8)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    RUNNING.clear()


class Lab:
    def __init__(self, args):
        self.args = args
        self.ns = {name: f"{args.prefix}-{name}" for name in
                   ("client", "lb", "host1", "host2", "host3")}
        self.servers: dict[int, subprocess.Popen] = {}
        self.tmp = Path(args.tmp)
        self.haproxy: subprocess.Popen | None = None

    # -- the hosts' servers

    def start_server(self, i: int) -> None:
        p = spawn(in_ns(self.ns[f"host{i}"],
                        [str(self.args.bin / "step-08"), "--host", "0.0.0.0", "--port", str(PORT),
                         "--workers", "1"]), stderr=subprocess.DEVNULL)
        line = p.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError(f"host{i}: step-08 did not start: {line!r}")
        self.servers[i] = p

    def kill_server(self, i: int) -> None:
        """A crash: SIGKILL, no drain; the kernel resets its connections."""
        p = self.servers.pop(i)
        p.kill()
        p.wait()
        RUNNING.remove(p)

    def requests(self, i: int) -> int:
        """Host i's request count, from its own /stats (which counts the
        requests before it: each reading adds one to the next)."""
        code = ("import socket,json;s=socket.create_connection(('127.0.0.1',%d),2);"
                "s.sendall(b'GET /stats HTTP/1.0\\r\\n\\r\\n');b=b''\n"
                "while True:\n d=s.recv(65536)\n if not d: break\n b+=d\n"
                "print(json.loads(b.split(b'\\r\\n\\r\\n',1)[1])['requests'])" % PORT)
        for _ in range(3):
            out = subprocess.run(in_ns(self.ns[f"host{i}"], [sys.executable, "-c", code]),
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                return int(out.stdout.strip())
            time.sleep(0.2)
        raise RuntimeError(f"host{i}'s /stats: {out.stderr.strip().splitlines()[-1:]}")

    def all_requests(self) -> dict[int, int]:
        return {i: self.requests(i) for i in HOSTS if i in self.servers}

    # -- HAProxy

    def haproxy_config(self) -> str:
        lines = [
            "global",
            "    maxconn 4000",
            "    nbthread 1",
            f"    stats socket {self.tmp}/haproxy.sock mode 600 level admin",
            "defaults",
            "    timeout connect 1s",
            "    timeout client 30s",
            "    timeout server 30s",
            # A refused connect is retried, on another server (redispatch):
            # a dead server that is not yet marked down costs only the
            # requests already sent to it.
            "    retries 2",
            "    option redispatch",
            f"    default-server inter {CHECK_MS}ms fastinter {CHECK_MS}ms "
            f"downinter {CHECK_MS}ms fall 2 rise 2",
        ]
        for (mode, balance), port in FRONTENDS.items():
            name = f"{mode}_{balance}"
            lines += ["", f"frontend fe_{name}", f"    mode {mode}", f"    bind {LB}:{port}",
                      f"    default_backend {name}", "", f"backend {name}", f"    mode {mode}",
                      f"    balance {balance}"]
            # Keep-alive through in HTTP mode (no http-server-close). The
            # checks connect and close, in both modes: an HTTP check (option
            # httpchk) would be counted by the host's /stats as a request.
            if mode == "http" and self.args.retry_on:
                # A request whose server connection died is sent again, elsewhere.
                lines += ["    retry-on all-retryable-errors"]
            lines += [f"    server host{i} {ip}:{PORT} check" for i, ip in HOSTS.items()]
        return "\n".join(lines) + "\n"

    def start_haproxy(self) -> None:
        cfg = self.tmp / "haproxy.cfg"
        cfg.write_text(self.haproxy_config())
        check = subprocess.run([self.args.haproxy, "-c", "-f", str(cfg)], capture_output=True,
                               text=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c: {check.stdout}{check.stderr}")
        self.haproxy = spawn(in_ns(self.ns["lb"], [self.args.haproxy, "-db", "-f", str(cfg)]),
                             stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.haproxy.poll() is not None:
                raise RuntimeError("haproxy exited at start")
            try:
                states = self.server_states()
                if states and all(s == "UP" for s in states.values()):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"haproxy: not every server up: {self.server_states()}")

    def haproxy_pid(self) -> int:
        """The haproxy process itself (`ip netns exec` has exec'd it)."""
        return self.haproxy.pid

    def admin(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(self.tmp / "haproxy.sock"))
            s.sendall(command.encode() + b"\n")
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out.decode()

    def stat(self) -> list[dict]:
        text = self.admin("show stat").lstrip("# ")
        lines = [l for l in text.splitlines() if l.strip()]
        names = lines[0].split(",")
        return [dict(zip(names, l.split(","))) for l in lines[1:]]

    def server_states(self, backend: str | None = None) -> dict[tuple[str, str], str]:
        return {(r["pxname"], r["svname"]): r["status"].split()[0] for r in self.stat()
                if r["svname"] not in ("FRONTEND", "BACKEND")
                and (backend is None or r["pxname"] == backend)}

    # -- loadgen in the client namespace

    def loadgen(self, host: str, port: int, *flags: str, ns: str = "client") -> subprocess.Popen:
        return spawn(in_ns(self.ns[ns], [str(self.args.bin / "loadgen"), "--host", host,
                                         "--port", str(port), *flags]),
                     stderr=subprocess.PIPE)

    @staticmethod
    def result(p: subprocess.Popen, timeout: float = 60) -> dict:
        out, err = p.communicate(timeout=timeout)
        RUNNING.remove(p)
        for line in out.splitlines():
            if line.startswith("{"):
                d = json.loads(line)
                d.pop("histogram", None)
                d["stderr"] = err
                return d
        raise RuntimeError(f"loadgen gave no JSON: {err}")


def errors(result: dict) -> int:
    return sum(result["errors"].values())


# ---------------------------------------------------------------------------
# The measurements


def shares(lab: Lab, args) -> dict:
    """Per-host request shares through each frontend."""
    out = {}
    for (mode, balance), port in FRONTENDS.items():
        if args.quick and balance == "leastconn":
            continue
        before = lab.all_requests()
        r = Lab.result(lab.loadgen(LB, port, "--connections", str(args.connections),
                                   "--duration", str(args.duration)))
        after = lab.all_requests()
        served = {i: after[i] - before[i] - 1 for i in after}  # the first reading itself
        total = sum(served.values()) or 1
        sessions = {row["svname"]: int(row["stot"]) for row in lab.stat()
                    if row["pxname"] == f"{mode}_{balance}" and row["svname"].startswith("host")}
        out[f"{mode}_{balance}"] = {
            "rps": r["rps"], "errors": errors(r), "requests": r["requests"],
            "served": served, "share": {i: round(n / total, 3) for i, n in served.items()},
            "haproxy_sessions": sessions}
        print(f"  {mode:<4} {balance:<10} {r['rps']:>8,.0f} req/s  errors {errors(r)}  shares "
              + "  ".join(f"host{i} {served[i] / total:5.1%}" for i in sorted(served))
              + "   HAProxy sessions " + " ".join(f"{k} {v}" for k, v in sorted(sessions.items())),
              flush=True)
    return out


def progress_series(stderr: str) -> list[tuple[float, int, int]]:
    """loadgen's progress lines: (CLOCK_MONOTONIC s, requests, errors)."""
    return [(float(m.group(1)), int(m.group(2)), int(m.group(3))) for m in
            re.finditer(r"mono=([\d.]+) t=\S+ phase=\S+ requests=(\d+) errors=(\d+)", stderr)]


def failover(lab: Lab, args, mode: str) -> dict:
    """host2's server killed mid-run, then started again."""
    backend = f"{mode}_roundrobin"
    port = FRONTENDS[(mode, "roundrobin")]
    duration = 6.0 if not args.quick else 4.5
    lg = lab.loadgen(LB, port, "--connections", str(args.connections), "--duration",
                     str(duration), "--progress", "0.05")
    time.sleep(1.5)
    killed = time.monotonic()
    lab.kill_server(2)
    down = None
    while time.monotonic() - killed < 5:
        if lab.server_states(backend)[(backend, "host2")] in ("DOWN", "MAINT"):
            down = time.monotonic()
            break
        time.sleep(0.01)
    time.sleep(max(0.0, killed + 1.5 - time.monotonic()))
    restarted = time.monotonic()
    lab.start_server(2)
    up = None
    while time.monotonic() - restarted < 5:
        if lab.server_states(backend)[(backend, "host2")] == "UP":
            up = time.monotonic()
            break
        time.sleep(0.01)
    r = Lab.result(lg)
    after_rejoin = lab.requests(2)  # host2's fresh server counts only what came after
    series = progress_series(r["stderr"])

    def errors_at(t: float) -> int:
        seen = [e for (m, _, e) in series if m <= t]
        return seen[-1] if seen else 0

    total = errors(r)
    # Errors counted by the first progress line well after the mark.
    settled = (down or killed) + 0.1
    before_down = errors_at(settled)
    # When they happened: the progress lines (every 50 ms) where the count grew.
    grew = [m for (m, _, e), (_, _, prev) in zip(series[1:], series) if e > prev]
    out = {"mode": mode, "detect_ms": round((down - killed) * 1000) if down else None,
           "failed_before_down": before_down, "failed_after_down": total - before_down,
           "errors_from_ms": round((grew[0] - killed) * 1000) if grew else None,
           "errors_until_ms": round((grew[-1] - killed) * 1000) if grew else None,
           "error_kinds": {k: v for k, v in r["errors"].items() if v},
           "rejoin_ms": round((up - restarted) * 1000) if up else None,
           "host2_after_rejoin": after_rejoin, "requests": r["requests"], "rps": r["rps"]}
    print(f"  {mode:<4} kill host2: {before_down} requests failed before HAProxy marked it down "
          f"({out['detect_ms']} ms after the kill; checks every {CHECK_MS} ms, fall 2), "
          f"{out['failed_after_down']} after; {out['error_kinds']}"
          + (f", seen {out['errors_from_ms']}..{out['errors_until_ms']} ms after the kill"
             if grew else ""), flush=True)
    print(f"  {mode:<4} restart host2: up again after {out['rejoin_ms']} ms (rise 2); "
          f"it served {after_rejoin:,} requests since", flush=True)
    return out


def cost(lab: Lab, args) -> dict:
    """The same fixed rate straight to host1, and through HAProxy (TCP, HTTP)."""
    rate = str(args.rate)
    legs = {"direct": (HOSTS[1], PORT), "tcp": (LB, FRONTENDS[("tcp", "roundrobin")]),
            "http": (LB, FRONTENDS[("http", "roundrobin")])}
    out = {k: [] for k in legs}
    for _ in range(args.repeat):  # alternated: the machine's noise falls on each alike
        for leg, (host, port) in legs.items():
            hp0 = cpu_ns(lab.haproxy_pid())
            srv0 = sum(cpu_ns(p.pid) for p in lab.servers.values())
            r = Lab.result(lab.loadgen(host, port, "--connections", str(args.connections),
                                       "--rate", rate, "--duration", str(args.duration)))
            hp = cpu_ns(lab.haproxy_pid()) - hp0
            srv = sum(cpu_ns(p.pid) for p in lab.servers.values()) - srv0
            n = max(r["requests"], 1)
            out[leg].append({"p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
                             "haproxy_us": hp / 1e3 / n, "servers_us": srv / 1e3 / n,
                             "errors": errors(r)})
    summary = {}
    for leg, runs in out.items():
        med = lambda k: sorted(x[k] for x in runs)[len(runs) // 2]  # noqa: E731
        summary[leg] = {k: round(med(k), 1) for k in ("p50", "p99", "haproxy_us", "servers_us")}
        summary[leg]["errors"] = sum(x["errors"] for x in runs)
    for leg in ("tcp", "http"):
        s, d = summary[leg], summary["direct"]
        summary[leg]["added_p50_us"] = round(s["p50"] - d["p50"], 1)
        print(f"  {leg:<6} at {args.rate}/s: HAProxy {s['haproxy_us']:.1f} µs CPU per request; "
              f"p50 {s['p50']:.0f} µs vs {d['p50']:.0f} µs direct (+{s['p50'] - d['p50']:.0f}), "
              f"p99 {s['p99']:.0f} vs {d['p99']:.0f} µs", flush=True)
    return summary


def veth_vs_loopback(lab: Lab, args) -> dict:
    """host1's server, closed loop, from the client over veth + bridge, and
    from inside host1 over loopback."""
    legs = {"veth": ("client", HOSTS[1]), "loopback": ("host1", "127.0.0.1")}
    out = {k: [] for k in legs}
    for _ in range(args.repeat):
        for leg, (ns, host) in legs.items():
            srv0 = cpu_ns(lab.servers[1].pid)
            r = Lab.result(lab.loadgen(host, PORT, "--connections", str(args.connections),
                                       "--duration", str(args.duration), ns=ns))
            srv = cpu_ns(lab.servers[1].pid) - srv0
            out[leg].append({"rps": r["rps"], "p50": r["latency_us"]["p50"],
                             "p99": r["latency_us"]["p99"],
                             "server_us": srv / 1e3 / max(r["requests"], 1)})
    summary = {}
    for leg, runs in out.items():
        summary[leg] = {k: round(sorted(x[k] for x in runs)[len(runs) // 2], 1)
                        for k in ("rps", "p50", "p99", "server_us")}
    v, lo = summary["veth"], summary["loopback"]
    summary["rps_ratio"] = round(lo["rps"] / max(v["rps"], 1), 2)
    summary["server_us_ratio"] = round(v["server_us"] / max(lo["server_us"], 1e-9), 2)
    print(f"  loopback {lo['rps']:,.0f} req/s, p50 {lo['p50']:.0f} µs, server "
          f"{lo['server_us']:.1f} µs/req;  veth {v['rps']:,.0f} req/s, p50 {v['p50']:.0f} µs, "
          f"server {v['server_us']:.1f} µs/req  (loopback {summary['rps_ratio']}x the rps)",
          flush=True)
    return summary


def parse_args(argv):
    p = argparse.ArgumentParser(prog="lab-hosts", description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", type=Path, required=True)
    p.add_argument("--prefix", required=True, help="the namespaces' common prefix")
    p.add_argument("--tmp", required=True, help="a directory for HAProxy's config and socket")
    p.add_argument("--haproxy", default="haproxy")
    p.add_argument("--connections", type=int, default=30)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--rate", type=int, default=3000, help="requests/s for the cost legs")
    p.add_argument("--repeat", type=int, default=3, help="runs of each cost and veth leg")
    p.add_argument("--quick", action="store_true", help="topology, shares, one failover")
    p.add_argument("--retry-on", action="store_true",
                   help="HTTP backends retry a request whose server died (retry-on)")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def on_term(signum, frame):
    raise KeyboardInterrupt


def main(argv) -> int:
    signal.signal(signal.SIGTERM, on_term)
    args = parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 1.5)
    lab = Lab(args)
    facts: dict = {}
    try:
        for i in HOSTS:
            lab.start_server(i)
        lab.start_haproxy()
        print(f"lab-hosts: client → HAProxy ({LB}) → host1..3 ({', '.join(HOSTS.values())}), "
              f"step 08 on each, one bridge; health checks every {CHECK_MS} ms")
        print("shares (per-host requests, from each host's own /stats):")
        facts["shares"] = shares(lab, args)
        print("failover:")
        facts["failover"] = [failover(lab, args, "http")]
        if not args.quick:
            facts["failover"].append(failover(lab, args, "tcp"))
            print("what HAProxy adds per request (open loop, the same rate):")
            facts["cost"] = cost(lab, args)
            print("veth pair and bridge vs loopback (closed loop, host1's server):")
            facts["veth"] = veth_vs_loopback(lab, args)
    except KeyboardInterrupt:
        print("\nlab-hosts: interrupted; stopping what it started", file=sys.stderr)
        return 130
    finally:
        stop_all()
    http = facts["failover"][0]
    served = facts["shares"]["http_roundrobin"]["served"]
    ok = (all(n > 0 for n in served.values()) and http["detect_ms"] is not None
          and http["failed_after_down"] == 0 and http["rejoin_ms"] is not None)
    words = (f"all three hosts served through HAProxy; host2 killed: {http['failed_before_down']} "
             f"requests failed before it was marked down ({http['detect_ms']} ms), "
             f"{http['failed_after_down']} after; back in {http['rejoin_ms']} ms")
    print("verdict: " + (words if ok else "did not behave as the claim says: " + words))
    if args.json:
        print("facts: " + json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
