#!/usr/bin/env python3
"""Lab faults: the event-loop steps on a lossy, slow, then cut network.

labs/faults/run.sh makes two network namespaces and runs this driver in the
client one. The driver gives every event-loop step (steps/NN/step.toml
[suite] has a `loop`) a link of its own, a veth pair 10.202.NN.1 (server
namespace) <-> 10.202.NN.2 (here), and puts the faults on it:

  loss   an nftables table in the server namespace drops packets at random
         (`numgen random mod 100 < 3 drop`) in both directions
  rate   tc tbf on both ends: 1 Mbit/s each way
  cut    the client's end set down in the middle of a transfer: from the
         server's side the cable is pulled, nothing arrives, no FIN, no RST

Three phases, every step at once (each on its own link, so each gets the
whole rate):

  echo   SIZE bytes through each step's echo mode, sent in random fragments
         and read back concurrently, then a half-close: every byte must come
         back, identical and in order, then the close
  http   REQUESTS requests over 10 keep-alive connections per step, pipelined
         up to 8 deep (GET /hello, POST /echo with random bodies, an unknown
         path): every response the right status and the right body, in order
  cut    servers with --idle-timeout/--header-timeout CUT_TIMEOUT; an echo
         connection mid-transfer and an HTTP connection with requests in
         flight; the links go down; how long until each server closed its
         socket (its descriptor is gone), then
         SIGTERM: `open` is 0 in its stats and no descriptor is left over

Each link carries one step's traffic, so the counters are per step. Every
wait is bounded; a phase that is not done by its deadline is a failure.

    labs/faults/run.sh build/bin                          the full claim (~2 min)
    labs/faults/run.sh build/bin --size 2M --rate 8 --requests 300 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "pylib"))
from ladder import steps as ladder_steps  # noqa: E402
from ladder.procfs import descendants  # noqa: E402

READY = re.compile(r"^listening on (\S+):(\d+)$")
HELLO = b"Hello, World!\n"
NFT_TABLE = "ladder_faults"
CONNECTIONS = 10       # HTTP keep-alive connections per step
NO_PROGRESS = 30.0     # seconds a socket may make no progress at all (RTO backoff fits)
SWEEP = 1.0            # the steps look for expired connections once a second


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)(i?B)?", text.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 10M, 512K)")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def run(*cmd: str, input: str | None = None) -> str:
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


# --------------------------------------------------------------------------
# The steps and their links

@dataclasses.dataclass
class Step:
    number: str
    binary: Path
    args: list[str]
    loop: str

    @property
    def srv_dev(self) -> str:
        return f"fl{self.number}s"

    @property
    def cli_dev(self) -> str:
        return f"fl{self.number}c"

    @property
    def srv_ip(self) -> str:
        return f"10.202.{int(self.number)}.1"

    @property
    def cli_ip(self) -> str:
        return f"10.202.{int(self.number)}.2"


def event_loop_steps(bin_dir: Path, only: set[str]) -> tuple[list[Step], dict[str, str]]:
    """The steps whose [suite] names a loop, and why any of them cannot run."""
    found, skipped = [], {}
    for number, info in ladder_steps.all_steps(ROOT).items():
        loop = info.suite.get("loop")
        if not loop or (only and number not in only):
            continue
        binary = bin_dir / f"step-{number}"
        if not os.access(binary, os.X_OK):
            skipped[number] = f"{binary} is not built"
            continue
        probe = info.suite.get("probe")
        if probe:  # step 11: io_uring may be missing or refused here
            p = subprocess.run([str(binary), *probe], capture_output=True, text=True, timeout=30)
            if p.returncode != 0:
                skipped[number] = (p.stderr.strip().splitlines() or [f"probe exit {p.returncode}"])[0]
                continue
        found.append(Step(number, binary, list(info.suite.get("args", [])), loop))
    return found, skipped


class Links:
    """A veth pair per step between the two namespaces, and the faults on them."""

    def __init__(self, srv_ns: str, cli_ns: str):
        self.srv_ns, self.cli_ns = srv_ns, cli_ns

    def add(self, s: Step) -> None:
        # This process runs in the client namespace: the first end stays here.
        run("ip", "link", "add", s.cli_dev, "type", "veth", "peer", "name", s.srv_dev,
            "netns", self.srv_ns)
        # One TCP segment per packet (no 64 KiB GSO super-packets), so that
        # "3 % of packets" is 3 % of segments.
        run("ip", "link", "set", s.cli_dev, "gso_max_segs", "1")
        run("ip", "-n", self.srv_ns, "link", "set", s.srv_dev, "gso_max_segs", "1")
        run("ip", "addr", "add", f"{s.cli_ip}/24", "dev", s.cli_dev)
        run("ip", "-n", self.srv_ns, "addr", "add", f"{s.srv_ip}/24", "dev", s.srv_dev)
        run("ip", "link", "set", s.cli_dev, "up")
        run("ip", "-n", self.srv_ns, "link", "set", s.srv_dev, "up")
        # Fixed neighbour entries: once the link is cut, packets are lost in
        # silence, as on a pulled cable, not turned into early errors by ARP.
        run("ip", "-n", self.srv_ns, "neigh", "replace", s.cli_ip, "lladdr", self.mac(s.cli_dev),
            "dev", s.srv_dev, "nud", "permanent")
        run("ip", "neigh", "replace", s.srv_ip, "lladdr", self.mac(s.srv_dev, self.srv_ns),
            "dev", s.cli_dev, "nud", "permanent")

    @staticmethod
    def mac(dev: str, ns: str | None = None) -> str:
        out = run("ip", *(["-n", ns] if ns else []), "-o", "link", "show", dev)
        return re.search(r"link/ether ([0-9a-f:]+)", out).group(1)

    def faults(self, steps: list[Step], loss: int, rate_mbit: float) -> None:
        """Loss in both directions (the server namespace's input and output
        hooks), and the same rate limit on both ends."""
        rules_in = "\n".join(f'    iifname "{s.srv_dev}" counter numgen random mod 100 < {loss} '
                             f'counter drop' for s in steps)
        rules_out = "\n".join(f'    oifname "{s.srv_dev}" counter numgen random mod 100 < {loss} '
                              f'counter drop' for s in steps)
        table = (f"table inet {NFT_TABLE} {{\n"
                 f"  chain input {{\n    type filter hook input priority 0;\n{rules_in}\n  }}\n"
                 f"  chain output {{\n    type filter hook output priority 0;\n{rules_out}\n  }}\n"
                 f"}}\n")
        run("ip", "netns", "exec", self.srv_ns, "nft", "-f", "-", input=table)
        rate_bytes = rate_mbit * 1e6 / 8
        # The bucket holds ~4 ms of the rate (at least 3 segments); the queue
        # ~200 ms: a slow link, not a dropping one (TCP's small queues keep
        # the queue short anyway).
        burst = max(4500, int(rate_bytes / 250))
        for ns, dev in [(self.srv_ns, s.srv_dev) for s in steps] + [(None, s.cli_dev) for s in steps]:
            run("tc", *(["-n", ns] if ns else []), "qdisc", "add", "dev", dev, "root", "tbf",
                "rate", f"{int(rate_mbit * 1e6)}bit", "burst", str(burst), "latency", "200ms")

    def counters(self) -> dict[str, dict[str, int]]:
        """dev -> packets seen and dropped by the loss rules, per direction."""
        out = json.loads(run("ip", "netns", "exec", self.srv_ns, "nft", "-j", "list", "table",
                             "inet", NFT_TABLE))
        counts: dict[str, dict[str, int]] = {}
        for item in out["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            dev, direction, seen = None, None, []
            for e in rule["expr"]:
                if "match" in e and "meta" in e["match"]["left"]:
                    direction = "in" if e["match"]["left"]["meta"]["key"] == "iifname" else "out"
                    dev = e["match"]["right"]
                if "counter" in e:
                    seen.append(e["counter"]["packets"])
            if dev and len(seen) == 2:
                c = counts.setdefault(dev, {})
                c[f"{direction}_packets"], c[f"{direction}_dropped"] = seen
        return counts

    def tbf_drops(self, s: Step) -> int:
        total = 0
        for ns, dev in ((self.srv_ns, s.srv_dev), (None, s.cli_dev)):
            for q in json.loads(run("tc", *(["-n", ns] if ns else []), "-s", "-j", "qdisc",
                                    "show", "dev", dev)):
                if q.get("kind") == "tbf":
                    total += q.get("drops", 0)
        return total

    def cut(self, s: Step) -> None:
        run("ip", "link", "set", s.cli_dev, "down")


# --------------------------------------------------------------------------
# A server in the server namespace

class Server:
    def __init__(self, step: Step, srv_ns: str, mode: str, extra: list[str]):
        self.step, self.mode = step, mode
        self.argv = ["ip", "netns", "exec", srv_ns, str(step.binary), "--host", step.srv_ip,
                     "--port", "0", "--mode", mode, *step.args, *extra]
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.stats: dict | None = None
        self.rc: int | None = None
        self._err = tempfile.TemporaryFile()

    def start(self) -> "Server":
        # `ip netns exec` execs the binary: the pid is the server's.
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True)
        line = read_line(self.proc.stdout, 10.0)
        m = READY.match(line.strip()) if line else None
        if not m:
            self.kill()
            raise RuntimeError(f"step {self.step.number} ({self.mode}): no ready line "
                               f"(got {line!r}): {self.stderr()[-500:]}")
        self.port = int(m.group(2))
        return self

    @property
    def address(self) -> tuple[str, int]:
        return (self.step.srv_ip, self.port)

    def fds(self) -> dict[str, str]:
        """Every descriptor of the server and its children: "pid/fd" -> target."""
        out = {}
        for pid in descendants(self.proc.pid):
            d = f"/proc/{pid}/fd"
            try:
                for fd in os.listdir(d):
                    try:
                        out[f"{pid}/{fd}"] = os.readlink(f"{d}/{fd}")
                    except OSError:
                        pass
            except OSError:
                pass
        return out

    def socket_inode(self, client_port: int) -> int | None:
        """The inode of the server's socket for the connection from client_port
        (0: the kernel still has the connection, but no descriptor holds it)."""
        want_local = (self.step.srv_ip, self.port)
        want_remote = (self.step.cli_ip, client_port)
        try:
            lines = Path(f"/proc/{self.proc.pid}/net/tcp").read_text().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            f = line.split()
            if hex_address(f[1]) == want_local and hex_address(f[2]) == want_remote:
                return int(f[9])
        return None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"step {self.step.number} ({self.mode}): still running "
                               f"{timeout:.0f} s after SIGTERM")
        self.rc = self.proc.returncode
        for line in out.splitlines():
            if line.startswith("{"):
                self.stats = json.loads(line)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")


def read_line(stream, timeout: float) -> str:
    import select
    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""


def hex_address(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    return socket.inet_ntoa(struct.pack("<I", int(host, 16))), int(port, 16)


def total_retrans(sock: socket.socket) -> int:
    """tcpi_total_retrans: segments this end sent again (struct tcp_info)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, 100)[0] if len(info) >= 104 else -1


def connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=NO_PROGRESS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# --------------------------------------------------------------------------
# The checks: echo, http, cut

def fragments(rng: random.Random, total: int):
    """A random mix of tiny, segment-sized and large writes covering `total`."""
    pos = 0
    while pos < total:
        kind = rng.random()
        n = (rng.randint(1, 8) if kind < 0.1 else
             rng.randint(9, 1460) if kind < 0.4 else rng.randint(1461, 65536))
        n = min(n, total - pos)
        yield pos, n
        pos += n


def echo_check(server: Server, size: int, seed: int) -> dict:
    """SIZE random bytes out, in fragments, while the echo is read back; then
    SHUT_WR and read to EOF. Identical means every byte, in order, then EOF."""
    data = random.Random(seed).randbytes(size)
    view = memoryview(data)
    result = {"size": size, "sent": 0, "received": 0, "first_mismatch": None, "eof": False,
              "error": None}
    start = time.monotonic()
    try:
        sock = connect(server.address)
    except OSError as e:
        result["error"] = f"connect: {e!r}"
        return result
    sender_error: list[BaseException] = []

    def sender():
        try:
            for pos, n in fragments(random.Random(seed + 1), size):
                sock.sendall(view[pos:pos + n])
                result["sent"] = pos + n
            sock.shutdown(socket.SHUT_WR)
        except BaseException as e:  # reported below
            sender_error.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = 0
    try:
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                result["eof"] = True
                break
            if result["first_mismatch"] is None:
                expect = view[got:got + len(chunk)]
                if chunk != expect:
                    at = next((i for i in range(min(len(chunk), len(expect)))
                               if chunk[i] != expect[i]), min(len(chunk), len(expect)))
                    result["first_mismatch"] = got + at
            got += len(chunk)
            result["received"] = got
    except OSError as e:
        result["error"] = f"after {got} bytes: {e!r}"
    t.join(NO_PROGRESS)
    if sender_error and not result["error"]:
        result["error"] = f"sending after {result['sent']} bytes: {sender_error[0]!r}"
    result["retrans"] = total_retrans(sock)
    sock.close()
    result["seconds"] = round(time.monotonic() - start, 2)
    result["identical"] = (result["received"] == size and result["first_mismatch"] is None
                           and result["eof"] and not result["error"])
    return result


class ResponseReader:
    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError(f"closed by the server with {len(self.buf)} bytes unparsed")
        self.buf += chunk

    def response(self) -> tuple[int, bytes, str]:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        status_line, *lines = head.split("\r\n")
        m = re.fullmatch(r"HTTP/1\.1 (\d{3}) .*", status_line)
        if not m:
            raise ValueError(f"bad status line {status_line!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "-1"))
        if length < 0:
            raise ValueError(f"no Content-Length in {head!r}")
        while len(self.buf) < length:
            self._fill()
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return int(m.group(1)), body, headers.get("connection", "")


def http_connection(server: Server, n: int, seed: int, tally: dict, lock: threading.Lock) -> None:
    """n requests on one keep-alive connection, in pipelined batches; each
    response checked against what its request must get, in order."""
    rng = random.Random(seed)
    done = 0
    try:
        sock = connect(server.address)
        reader = ResponseReader(sock)
        while done < n:
            batch, expect = [], []
            for _ in range(min(rng.choice((1, 1, 2, 4, 8)), n - done)):
                kind = rng.random()
                if kind < 0.55:
                    batch.append(b"GET /hello HTTP/1.1\r\nHost: faults\r\n\r\n")
                    expect.append((200, HELLO))
                elif kind < 0.95:
                    body = rng.randbytes(rng.randint(0, 4096))
                    batch.append(b"POST /echo HTTP/1.1\r\nHost: faults\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
                    expect.append((200, body))
                else:
                    batch.append(b"GET /no-such-page HTTP/1.1\r\nHost: faults\r\n\r\n")
                    expect.append((404, None))
            sock.sendall(b"".join(batch))
            for want_status, want_body in expect:
                status, body, _ = reader.response()
                good = status == want_status and (want_body is None or body == want_body)
                with lock:
                    tally["correct" if good else "wrong"] += 1
                    if not good and tally["first_wrong"] is None:
                        tally["first_wrong"] = (f"wanted {want_status} with {len(want_body or b'')} "
                                                f"bytes, got {status} with {len(body)} bytes")
                done += 1
        with lock:
            tally["retrans"] += total_retrans(sock)
        sock.close()
    except (OSError, ValueError) as e:
        with lock:
            tally["unanswered"] += n - done
            tally["errors"].append(f"after {done} of {n}: {e!r}")


def http_check(server: Server, requests: int, seed: int) -> dict:
    tally = {"requests": requests, "correct": 0, "wrong": 0, "unanswered": 0, "retrans": 0,
             "first_wrong": None, "errors": []}
    lock = threading.Lock()
    share = [requests // CONNECTIONS + (i < requests % CONNECTIONS) for i in range(CONNECTIONS)]
    start = time.monotonic()
    threads = [threading.Thread(target=http_connection, daemon=True,
                                args=(server, k, seed * 100 + i, tally, lock))
               for i, k in enumerate(share) if k]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tally["seconds"] = round(time.monotonic() - start, 2)
    tally["errors"] = tally["errors"][:3]
    return tally


class Streamer:
    """A connection kept busy until stopped: echo (a cyclic stream out, its
    echo read and checked) or http (pipelined GET /hello, the answers read).
    `progress` counts bytes received; `wrong` is set if the echo differs."""

    BLOCK = 16381  # not a power of two: a slipped or repeated piece shows

    def __init__(self, server: Server, kind: str, seed: int):
        self.kind = kind
        self.sock = connect(server.address)
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(1.0)
        self.stop = threading.Event()
        self.progress = 0
        self.wrong = False
        if kind == "echo":
            self.block = random.Random(seed).randbytes(self.BLOCK)
        else:
            self.block = b"GET /hello HTTP/1.1\r\nHost: faults\r\n\r\n" * 4
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._send, self._recv)]
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        stream = self.block * 2
        pos = 0
        while not self.stop.is_set():
            try:  # one send at a time: a timeout means nothing went out
                pos = (pos + self.sock.send(stream[pos:pos + len(self.block)])) % len(self.block)
            except socket.timeout:
                continue  # the window is shut: try again unless stopped
            except OSError:
                return
            time.sleep(0.005)

    def _recv(self) -> None:
        stream = self.block * 5
        while not self.stop.is_set():
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            if self.kind == "echo":
                at = self.progress % len(self.block)
                for i in range(0, len(chunk), 3 * len(self.block)):
                    piece = chunk[i:i + 3 * len(self.block)]
                    if stream[at:at + len(piece)] != piece:
                        self.wrong = True
            elif self.progress == 0 and not chunk.startswith(b"HTTP/1.1 200"):
                self.wrong = True
            self.progress += len(chunk)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(2.0)
        # The link is down: the RST this close makes never reaches the server.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def cut_check(links: Links, step: Step, servers: dict[str, Server], timeout: int,
              cut_at: threading.Barrier, result: dict) -> None:
    """Connections mid-transfer, the link down, then: how long until each
    server closed its end; and afterwards its descriptors and its stats."""
    base_fds = {mode: len(s.fds()) for mode, s in servers.items()}
    streamers = {mode: Streamer(s, mode, int(step.number)) for mode, s in servers.items()}
    deadline = time.monotonic() + 10
    while (time.monotonic() < deadline
           and min(st.progress for st in streamers.values()) < (1 << 14)):
        time.sleep(0.05)
    inodes = {mode: servers[mode].socket_inode(st.port) for mode, st in streamers.items()}
    if not all(inodes.values()):
        result["error"] = f"the server's socket was not found: {inodes}"
        try:
            cut_at.wait(30)  # the other steps still cut together
        except threading.BrokenBarrierError:
            pass
        for st in streamers.values():
            st.close()
        return
    result.update({"progress_before_cut": {m: st.progress for m, st in streamers.items()},
                   "wrong_before_cut": any(st.wrong for st in streamers.values())})
    cut_at.wait(30)  # every step's link goes down at the same moment
    links.cut(step)
    t0 = time.monotonic()
    for st in streamers.values():
        st.close()
    freed: dict[str, float | None] = {m: None for m in servers}
    limit = t0 + timeout + SWEEP + 10
    while time.monotonic() < limit and any(v is None for v in freed.values()):
        for mode, s in servers.items():
            if freed[mode] is not None:
                continue
            # The descriptor is gone: the server closed its end. (Not
            # /proc/PID/net/tcp here: it walks every TCP socket of the
            # machine, seconds when another lab holds 100,000 of them.)
            if f"socket:[{inodes[mode]}]" not in s.fds().values():
                freed[mode] = round(time.monotonic() - t0, 2)
        time.sleep(0.05)
    time.sleep(0.3)  # anything else the close would have freed
    result["freed_s"] = freed
    result["fds"] = {m: [base_fds[m], len(s.fds())] for m, s in servers.items()}
    result["inode_found"] = {m: bool(v) for m, v in inodes.items()}
    result["orphaned_after"] = {m: servers[m].socket_inode(st.port) in (None, 0)
                                for m, st in streamers.items()}


# --------------------------------------------------------------------------
# The run

def run_phase(name: str, jobs: dict[str, threading.Thread], deadline: float) -> list[str]:
    for t in jobs.values():
        t.start()
    late = []
    for number, t in jobs.items():
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            late.append(number)
    return late


def stop_all(servers: list[Server], into: dict, key: str) -> None:
    for s in servers:
        try:
            s.stop()
        except RuntimeError as e:
            into.setdefault(s.step.number, {}).setdefault("stop_errors", []).append(str(e))
        r = into.setdefault(s.step.number, {})
        r.setdefault(key, {})[s.mode] = {
            "rc": s.rc, "open": (s.stats or {}).get("open"),
            "timeouts": (s.stats or {}).get("timeouts"), "accepted": (s.stats or {}).get("accepted")}


def interrupted(signum, frame):
    raise KeyboardInterrupt


def mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n / 1024:g} KiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", type=Path, required=True, help="the step binaries' directory")
    ap.add_argument("--srv-ns", required=True)
    ap.add_argument("--cli-ns", required=True)
    ap.add_argument("--size", type=parse_size, default=10 << 20, help="echo bytes per step (10M)")
    ap.add_argument("--requests", type=int, default=1000, help="HTTP requests per step (1000)")
    ap.add_argument("--rate", type=float, default=1.0, help="Mbit/s each way (1)")
    ap.add_argument("--loss", type=int, default=3, help="percent of packets dropped each way (3)")
    ap.add_argument("--cut-timeout", type=int, default=2,
                    help="--idle-timeout and --header-timeout of the cut servers (2)")
    ap.add_argument("--steps", default="", help="only these, e.g. 05,06")
    ap.add_argument("--json", action="store_true", help="a last line `facts: {...}`")
    args = ap.parse_args()
    # run.sh stops the driver with SIGTERM: clean up as on Ctrl-C.
    signal.signal(signal.SIGTERM, interrupted)

    only = {n.strip() for n in args.steps.split(",") if n.strip()}
    steps, skipped = event_loop_steps(args.bin.resolve(), only)
    if not steps:
        print(f"no event-loop step to run (skipped: {skipped})", file=sys.stderr)
        return 1
    links = Links(args.srv_ns, args.cli_ns)
    servers: list[Server] = []
    results: dict[str, dict] = {s.number: {} for s in steps}
    transfer_s = args.size * 8 / (args.rate * 1e6)
    try:
        for s in steps:
            links.add(s)
        links.faults(steps, args.loss, args.rate)
        print(f"Faults on {len(steps)} links (a veth pair per step, two namespaces): "
              f"{args.loss} % of packets dropped at random each way (nftables numgen), "
              f"{args.rate:g} Mbit/s each way (tc tbf).")
        print(f"Steps: {' '.join(s.number for s in steps)}"
              + (f"; skipped: {skipped}" if skipped else ""))

        # Echo: each step's link carries SIZE each way; about transfer_s at the rate.
        print(f"\necho: {mib(args.size)} through every step at once, "
              f"~{transfer_s:.0f} s at the rate ...", flush=True)
        echo = {s.number: Server(s, args.srv_ns, "echo", []).start() for s in steps}
        servers += echo.values()
        jobs = {n: threading.Thread(target=lambda n=n: results[n].update(
                    echo=echo_check(echo[n], args.size, int(n))), daemon=True) for n in echo}
        for n in run_phase("echo", jobs, time.monotonic() + 3 * transfer_s + 60):
            results[n]["echo"] = {"identical": False, "error": "not done by the phase's deadline",
                                  "size": args.size}
        stop_all(list(echo.values()), results, "echo_stop")

        print(f"http: {args.requests} requests per step on {CONNECTIONS} keep-alive "
              f"connections, pipelined ...", flush=True)
        http = {s.number: Server(s, args.srv_ns, "http", []).start() for s in steps}
        servers += http.values()
        jobs = {n: threading.Thread(target=lambda n=n: results[n].update(
                    http=http_check(http[n], args.requests, int(n))), daemon=True) for n in http}
        for n in run_phase("http", jobs, time.monotonic() + 120 + args.requests / 10):
            results[n]["http"] = {"requests": args.requests, "correct": 0,
                                  "errors": ["not done by the phase's deadline"]}
        stop_all(list(http.values()), results, "http_stop")
        counts = links.counters()
        for s in steps:
            c = counts.get(s.srv_dev, {})
            results[s.number]["loss"] = {**c, "tbf_drops": links.tbf_drops(s)}

        print(f"cut: every link down mid-transfer; servers with --idle-timeout "
              f"{args.cut_timeout} --header-timeout {args.cut_timeout} ...", flush=True)
        flags = ["--idle-timeout", str(args.cut_timeout), "--header-timeout", str(args.cut_timeout)]
        cut_servers = {s.number: {m: Server(s, args.srv_ns, m, flags).start()
                                  for m in ("echo", "http")} for s in steps}
        for pair in cut_servers.values():
            servers += pair.values()
        barrier = threading.Barrier(len(steps))
        cut = {s.number: {} for s in steps}
        jobs = {s.number: threading.Thread(target=cut_check, daemon=True, args=(
                    links, s, cut_servers[s.number], args.cut_timeout, barrier, cut[s.number]))
                for s in steps}
        for n in run_phase("cut", jobs, time.monotonic() + args.cut_timeout + 60):
            cut[n]["error"] = "not done by the phase's deadline"
        for n in cut:
            results[n]["cut"] = cut[n]
        stop_all([s for pair in cut_servers.values() for s in pair.values()], results, "cut_stop")
    finally:
        for s in servers:
            s.kill()

    verdicts = report(steps, results, args)
    facts = {"steps": [s.number for s in steps], "skipped": skipped, "size": args.size,
             "requests": args.requests, "rate_mbit": args.rate, "loss_percent": args.loss,
             "cut_timeout": args.cut_timeout, "results": results, "failures": verdicts}
    if verdicts:
        print(f"verdict: {'; '.join(verdicts)}: did not behave as the claim says")
    else:
        print(f"verdict: every event-loop step ({len(steps)}) echoed {mib(args.size)} byte for byte "
              f"and answered {args.requests} of {args.requests} requests correctly under "
              f"{args.loss} % loss at {args.rate:g} Mbit/s; after the cut each freed its "
              f"connections by its {args.cut_timeout} s timeout (bound: + a 1 s sweep + 1 s), "
              f"no descriptor left")
    if args.json:
        print("facts: " + json.dumps(facts))
    return 0


def failures(number: str, r: dict, args) -> list[str]:
    out = []
    e = r.get("echo", {})
    if not e.get("identical"):
        out.append(f"step {number} echo: {e.get('received', 0)} of {e.get('size')} bytes back, "
                   f"first mismatch {e.get('first_mismatch')}, {e.get('error') or 'no error'}")
    h = r.get("http", {})
    if h.get("correct") != args.requests:
        out.append(f"step {number} http: {h.get('correct')} of {args.requests} correct "
                   f"({h.get('wrong')} wrong: {h.get('first_wrong')}; {h.get('errors')})")
    c = r.get("cut", {})
    bound = args.cut_timeout + SWEEP + 1
    for mode, t in (c.get("freed_s") or {}).items():
        if t is None or t > bound:
            out.append(f"step {number} cut {mode}: not freed within {bound:g} s (freed: {t})")
    for mode, (before, after) in (c.get("fds") or {}).items():
        if after != before:
            out.append(f"step {number} cut {mode}: {after} descriptors after, {before} before")
    if c.get("wrong_before_cut"):
        out.append(f"step {number} cut: bytes came back wrong before the cut")
    if c.get("error"):
        out.append(f"step {number} cut: {c['error']}")
    for key in ("echo_stop", "http_stop", "cut_stop"):
        for mode, st in r.get(key, {}).items():
            if st["rc"] != 0 or st["open"] != 0:
                out.append(f"step {number} {key} {mode}: exit {st['rc']}, open {st['open']}")
    out += r.get("stop_errors", [])
    return out


def report(steps: list[Step], results: dict, args) -> list[str]:
    """The table, one line per step; returns what broke the claim."""
    print(f"\n{'':5} {'echo ' + mib(args.size):<28} {'http':<18} {'packets dropped':<23} "
          f"{'after the cut':<24}")
    print(f"{'step':<5} {'back':<10} {'time':>6} {'rate':>10}  {'correct':<10} {'time':>6}  "
          f"{'at random':<14} {'queue':>7}  {'freed echo/http':<16} {'fds echo/http'}")
    verdicts = []
    for s in steps:
        r = results[s.number]
        e, h, c, loss = r.get("echo", {}), r.get("http", {}), r.get("cut", {}), r.get("loss", {})
        if e.get("identical"):
            echo = (f"{'identical':<10} {e['seconds']:>4.0f} s "
                    f"{e['size'] * 8 / e['seconds'] / 1e6:>5.2f} Mb/s")
        else:
            echo = f"{'LOST ' + str(e.get('size', 0) - e.get('received', 0)) + ' B':<28}"
        http = f"{h.get('correct', 0):>4}/{args.requests:<5} {h.get('seconds', 0):>4.1f} s"
        dropped = loss.get("in_dropped", 0) + loss.get("out_dropped", 0)
        seen = max(1, loss.get("in_packets", 0) + loss.get("out_packets", 0))
        random_drops = f"{dropped} ({100 * dropped / seen:.1f} %)"
        freed = c.get("freed_s") or {}
        cut = "/".join("never" if freed.get(m) is None else f"{freed[m]:.1f}" for m in ("echo", "http"))
        fds = "  ".join(f"{a}->{b}" for a, b in (c.get("fds") or {}).values())
        print(f"{s.number:<5} {echo:<28}  {http:<18} {random_drops:<14} "
              f"{loss.get('tbf_drops', 0):>7}  {cut + ' s':<16} {fds}")
        verdicts += failures(s.number, r, args)
    print(f"\nback: the whole stream, in order, then EOF after the client's half-close. "
          f"correct: status and body as sent, in order.\nat random: the nftables rule, both "
          f"directions; queue: tbf's queue full (TCP's own congestion loss, on top).\n"
          f"after the cut: seconds until the server closed its socket (descriptor gone), "
          f"descriptors before -> after;\n`open` is 0 in every server's SIGTERM stats line "
          f"unless a line below says otherwise.")
    return verdicts


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: servers stopped; run.sh removes the namespaces", file=sys.stderr)
        sys.exit(130)
