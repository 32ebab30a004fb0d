#!/usr/bin/env python3
"""The soak: every step under a mix of good and bad clients, for minutes,
while its memory and descriptors are watched.

    make soak                             every step in turn, 10 minutes in all
    make soak SOAK_SECONDS=120
    .venv/bin/python tools/soak/soak.py --seconds 60 --parallel    every step at once (the test)
    .venv/bin/python tools/soak/soak.py --steps 05,09 --seconds 120

Each step runs two servers on loopback (http and echo, `--idle-timeout 4
--header-timeout 2`) for its share of the time, in rounds. A round is

  the mix    keep-alive clients (GET /hello, POST /echo, a last request with
             Connection: close), pipelined batches up to 16 deep, echo
             streams of random sizes in random fragments (half of them
             ending with a half-close), slowloris (a request one byte every
             0.15 s), resets (RST before, during and after a request, and in
             the middle of a large response or echo), HTTP half-closes (the
             request, SHUT_WR, the answer, EOF), clients that never read
             (a megabyte of requests or echo, nothing read, held 3 s), and
             tools/loadgen pipelining at a fixed rate beside them
  a burst    the server's RLIMIT_NOFILE lowered to a few above what it holds
             (prlimit), 40 clients at once, the limit restored: each client
             is served or turned away cleanly, and the server serves again
  quiet      every client gone: wait until the server's descriptors are back
             to their count at start, then sample RSS and descriptors

Every response is checked (status and body, in order) and every echoed byte
compared. The first third of each step's time is its warm-up; the claim is
about what follows: RSS at the quiet points, the median of the last third
<= 1.1 x the median of the first; descriptors back to their count at start at
every quiet point; 0 wrong responses, 0 lost echo bytes, nothing unanswered
outside the burst. Results: a table, build/soak/soak.png (RSS and
descriptors over time), samples.csv and summary.json (`--out`).

The servers run with GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4096
(SOAK_MALLOC= for glibc's defaults): blocks of 4 KiB and more are mapped and
unmapped, so RSS follows what a server holds, not the peak its heap once
had (tools/soak/README.md, "Memory, and glibc").
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import math
import os
import random
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "pylib"))
from ladder import steps as ladder_steps  # noqa: E402
from ladder.procfs import rss_kib, threads  # noqa: E402
from ladder.server import Server, bin_dir  # noqa: E402

HELLO = b"Hello, World!\n"
SERVER_FLAGS = ["--idle-timeout", "4", "--header-timeout", "2"]
FLAT = 1.1            # end <= FLAT x start, RSS and descriptors
# The first third of each step's time is its warm-up: thread arenas, the
# stacks glibc caches, io_uring's buffer ring (each buffer resident once it
# has been used) and the kernel's socket memory reach their working size.
WARMUP = 1 / 3
SAMPLE_EVERY = 0.5    # seconds between samples of every server
BURST_CLIENTS = 40
CROWD = 64            # clients at once in the warm-up
BURST_HOLD = 1.0      # seconds the lowered limit stays
NEVER_READ_HOLD = 3.0
SLOWLORIS_GAP = 0.15  # seconds between the bytes of a slow request
# What the soak measures is memory the server holds, not memory glibc keeps
# for later: a fixed mmap threshold sends every block of 64 KiB or more (a
# request body, a big output buffer) to its own mapping, returned when
# freed, instead of to an arena that keeps its peak (with a thread per
# connection, up to 8 arenas per core, each at its own peak).
MALLOC_TUNABLES = os.environ.get("SOAK_MALLOC", "glibc.malloc.mmap_threshold=4096")
LOADGEN_RATE = 3000   # requests/s of loadgen in all, shared by the steps running at once


# --------------------------------------------------------------------------
# What is counted

@dataclasses.dataclass
class Tally:
    http_ok: int = 0
    http_wrong: int = 0
    http_unanswered: int = 0
    echo_bytes: int = 0       # echoed bytes that came back right
    echo_lost: int = 0        # sent on a connection we did not abandon, never back
    echo_wrong: int = 0       # bytes that came back different
    resets: int = 0
    half_closes: int = 0
    slowloris_timed_out: int = 0  # the server closed it (header timeout)
    slowloris_served: int = 0     # steps without a header timeout: served, slowly
    never_read: int = 0
    burst_served: int = 0
    burst_refused: int = 0        # closed without a byte: the server said no
    burst_wrong: int = 0
    burst_unanswered: int = 0
    burst_recovered: int = 0      # served normally after the limit came back
    loadgen_requests: int = 0
    loadgen_wrong: int = 0        # bad_status, bad_response, wrong_bytes
    loadgen_failed: int = 0       # connect, reset, timeout, closed
    first_problems: list = dataclasses.field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.first_problems) < 5:
            self.first_problems.append(text)

    @property
    def wrong(self) -> int:
        return self.http_wrong + self.echo_wrong + self.burst_wrong + self.loadgen_wrong


@dataclasses.dataclass
class Target:
    """One step's pair of servers and what its clients counted."""
    number: str
    suite: dict
    http: Server
    echo: Server
    tally: Tally
    base_fds: dict
    flags: list
    quiet: list = dataclasses.field(default_factory=list)  # (round, mode, rss_kib, fds, when)
    warmup_until: float = 0.0  # time.monotonic() when the warm-up ends
    warmup_s: float = 0.0
    rounds: int = 0
    pace: float = 1.0  # think time between a client's requests, x this (steps at once share the CPU)
    stats: dict = dataclasses.field(default_factory=dict)
    exit_codes: dict = dataclasses.field(default_factory=dict)

    @property
    def concurrent(self) -> bool:
        return "concurrent" not in self.suite.get("lacks", {})

    @property
    def has_timeouts(self) -> bool:
        return bool(self.flags)

    @property
    def io(self) -> float:
        # A step that serves one client at a time makes every client wait
        # for the ones before it (a slow one holds it for seconds).
        return 10.0 if self.concurrent else 30.0

    def servers(self) -> dict[str, Server]:
        return {"http": self.http, "echo": self.echo}


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def lowest_free_fd(pid: int) -> int:
    """The number the server's next descriptor gets (RLIMIT_NOFILE bounds
    numbers, not a count: a limit of this leaves no room at all)."""
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(len(used) + 1)) - used)


# --------------------------------------------------------------------------
# Clients

async def connect(address, rcvbuf: int | None = None, limit: int = 1 << 16):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await asyncio.get_running_loop().sock_connect(sock, address)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=limit)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the server gets an RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def close(writer: asyncio.StreamWriter) -> None:
    writer.transport.close()


def get(path: str = "/hello", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: soak\r\n{extra}\r\n".encode()


def post(body: bytes, extra: str = "") -> bytes:
    return (f"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, dict]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or not parts[1].isdigit():
        raise ValueError(f"bad status line {status_line!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is None or not length.isdigit():
        raise ValueError(f"no Content-Length: {head[:200]!r}")
    body = await reader.readexactly(int(length))
    return int(parts[1]), body, headers


def request_mix(rng: random.Random, n: int) -> list[tuple[bytes, int, bytes | None]]:
    """n requests and what each must get: GET /hello, POST /echo, a 404."""
    out = []
    for _ in range(n):
        k = rng.random()
        if k < 0.6:
            out.append((get(), 200, HELLO))
        elif k < 0.95:
            body = rng.randbytes(rng.choice((0, 1, 100, 1460, 4000, 16000)))
            out.append((post(body), 200, body))
        else:
            out.append((get("/no-such-page"), 404, None))
    return out


class Checked:
    """Runs a client coroutine; an unexpected failure counts as unanswered."""

    def __init__(self, t: Target, what: str):
        self.t, self.what = t, what

    async def __aenter__(self):
        return self

    async def __aexit__(self, kind, exc, tb):
        if exc is None or not isinstance(exc, Exception):
            return False
        if isinstance(exc, (ValueError, asyncio.LimitOverrunError)):
            self.t.tally.http_wrong += 1  # not HTTP, or not what was asked
        else:
            self.t.tally.http_unanswered += 1  # reset, closed or silent mid-request
        self.t.tally.problem(f"{self.what}: {exc!r}")
        return True  # counted; the client carries on


async def check(t: Target, reader, expect: list) -> None:
    for want_status, want_body in expect:
        status, body, _ = await asyncio.wait_for(read_response(reader), t.io)
        if status == want_status and (want_body is None or body == want_body):
            t.tally.http_ok += 1
        else:
            t.tally.http_wrong += 1
            t.tally.problem(f"wanted {want_status} ({len(want_body or b'')} B), "
                            f"got {status} ({len(body)} B)")


async def keepalive(t: Target, until: float, rng: random.Random) -> None:
    """Sequential requests on one connection, the last with Connection: close."""
    while time.monotonic() < until:
        async with Checked(t, "keep-alive"):
            reader, writer = await asyncio.wait_for(connect(t.http.address), t.io)
            n = rng.randint(5, 40) if t.concurrent else rng.randint(2, 8)
            for i, (req, status, body) in enumerate(request_mix(rng, n)):
                if i == n - 1:
                    req = req.replace(b"Host: soak\r\n", b"Host: soak\r\nConnection: close\r\n", 1)
                writer.write(req)
                await check(t, reader, [(status, body)])
                await asyncio.sleep(t.pace * rng.uniform(0.002, 0.02))
            # After Connection: close the server closes: EOF, nothing more.
            extra = await asyncio.wait_for(reader.read(), t.io)
            if extra:
                t.tally.http_wrong += 1
                t.tally.problem(f"bytes after Connection: close: {extra[:80]!r}")
            close(writer)


async def pipelined(t: Target, until: float, rng: random.Random) -> None:
    while time.monotonic() < until:
        async with Checked(t, "pipelined"):
            reader, writer = await asyncio.wait_for(connect(t.http.address), t.io)
            for _ in range(rng.randint(2, 10) if t.concurrent else 2):
                batch = request_mix(rng, rng.randint(2, 16))
                writer.write(b"".join(r for r, _, _ in batch))
                await check(t, reader, [(s, b) for _, s, b in batch])
                await asyncio.sleep(t.pace * rng.uniform(0.005, 0.03))
            close(writer)


async def echo_stream(t: Target, until: float, rng: random.Random) -> None:
    """Random sizes in random fragments, read back concurrently; half of the
    connections end with SHUT_WR and must then see everything and EOF."""
    while time.monotonic() < until:
        size = rng.choice((1, 10, 1000, 20000, 100000, 300000))
        data = rng.randbytes(size)
        half_close = rng.random() < 0.5
        got = bytearray()
        sent = 0
        try:
            reader, writer = await asyncio.wait_for(connect(t.echo.address), t.io)

            async def send():
                nonlocal sent
                while sent < size:
                    n = min(size - sent, rng.choice((1, 7, 1460, 8192, 65536)))
                    writer.write(data[sent:sent + n])
                    await writer.drain()
                    sent += n
                if half_close:
                    writer.write_eof()

            async def receive():
                while len(got) < size:
                    chunk = await asyncio.wait_for(reader.read(1 << 16), t.io)
                    if not chunk:
                        return
                    got.extend(chunk)
                if half_close:
                    rest = await asyncio.wait_for(reader.read(), t.io)
                    got.extend(rest)

            await asyncio.gather(send(), receive())
            close(writer)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
            t.tally.problem(f"echo {size} B after {len(got)}: {e!r}")
        if bytes(got[:size]) == data[:len(got)] and len(got) <= size:
            t.tally.echo_bytes += len(got)
            t.tally.echo_lost += max(0, sent - len(got))
            if len(got) < sent:
                t.tally.problem(f"echo: {sent - len(got)} of {sent} B sent never came back")
        else:
            t.tally.echo_wrong += 1
            t.tally.problem(f"echo: {len(got)} B back for {size}, not the same bytes")
        await asyncio.sleep(t.pace * rng.uniform(0.005, 0.03))


async def slowloris(t: Target, until: float) -> None:
    """A request one byte at a time: a step with a header timeout closes it;
    one without (the blocking steps) serves it, late (the bytes come faster
    there, so that the request is whole before the round ends)."""
    req = get()
    gap = SLOWLORIS_GAP
    if not t.has_timeouts:
        gap = min(gap, max(0.01, (until - time.monotonic() - 1.5) / len(req)))
    reader = writer = None
    try:
        reader, writer = await asyncio.wait_for(connect(t.http.address), t.io)
        for i in range(len(req)):
            if time.monotonic() > until:
                close(writer)
                return  # out of time: neither closed nor served yet
            writer.write(req[i:i + 1])
            await writer.drain()
            await asyncio.sleep(gap)
        status, body, _ = await asyncio.wait_for(read_response(reader), t.io)
        if (status, body) == (200, HELLO):
            t.tally.slowloris_served += 1
        else:
            t.tally.http_wrong += 1
            t.tally.problem(f"slowloris: {status} {body[:40]!r}")
    except (ConnectionError, asyncio.IncompleteReadError):
        t.tally.slowloris_timed_out += 1  # closed by the server, no byte sent back
    except (OSError, asyncio.TimeoutError) as e:
        t.tally.problem(f"slowloris: {e!r}")
    if writer:
        close(writer)


async def resets(t: Target, until: float, rng: random.Random) -> None:
    """RST at every moment of a request's life, and of an echo."""
    while time.monotonic() < until:
        kind = rng.choice(("at-once", "half-request", "after-request", "mid-response", "echo"))
        server = t.echo if kind == "echo" else t.http
        try:
            reader, writer = await asyncio.wait_for(connect(server.address), t.io)
            if kind == "half-request":
                writer.write(get()[:12])
            elif kind == "after-request":
                writer.write(get())
            elif kind == "mid-response":
                writer.write(post(rng.randbytes(512 * 1024)))
                await asyncio.sleep(0.05)
            elif kind == "echo":
                writer.write(rng.randbytes(256 * 1024))
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.01)
            reset(writer)
            t.tally.resets += 1
        except (OSError, asyncio.TimeoutError) as e:
            t.tally.problem(f"reset {kind}: {e!r}")
        await asyncio.sleep(t.pace * rng.uniform(0.05, 0.2))


async def half_closes(t: Target, until: float, rng: random.Random) -> None:
    """The request, then SHUT_WR: the answer must still come, then EOF."""
    while time.monotonic() < until:
        async with Checked(t, "half-close"):
            reader, writer = await asyncio.wait_for(connect(t.http.address), t.io)
            writer.write(get())
            writer.write_eof()
            await check(t, reader, [(200, HELLO)])
            rest = await asyncio.wait_for(reader.read(), t.io)
            if rest:
                t.tally.http_wrong += 1
                t.tally.problem(f"half-close: bytes after the answer: {rest[:80]!r}")
            else:
                t.tally.half_closes += 1
            close(writer)
        await asyncio.sleep(t.pace * rng.uniform(0.1, 0.3))


async def never_read(t: Target, server: Server, rng: random.Random) -> None:
    """A megabyte of requests (or echo) and not a byte read: the server's
    output fills, it must stop reading this client and serve the others;
    after 3 s the client leaves (an RST: its unread input is dropped)."""
    try:
        reader, writer = await asyncio.wait_for(
            connect(server.address, rcvbuf=4096, limit=4096), t.io)
        payload = get() * 30000 if server is t.http else rng.randbytes(1 << 20)
        writer.write(payload)  # buffered here; goes out as the server reads
        await asyncio.sleep(NEVER_READ_HOLD)
        reset(writer)
        t.tally.never_read += 1
    except (OSError, asyncio.TimeoutError) as e:
        t.tally.problem(f"never-read: {e!r}")


async def loadgen(t: Target, seconds: float, rate: int) -> None:
    """tools/loadgen beside the Python clients: pipelined keep-alive GETs at
    a fixed rate; every status checked (not the body: the clients above do)."""
    binary = bin_dir() / "loadgen"
    if not binary.exists() or seconds < 1 or rate < 1:
        return
    proc = await asyncio.create_subprocess_exec(
        str(binary), "--port", str(t.http.port), "--connections", "4", "--pipeline", "4",
        "--rate", str(rate), "--duration", f"{seconds:.1f}", "--timeout", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:  # an interrupted soak leaves nothing running
        proc.kill()
        await proc.wait()
        raise
    try:
        r = json.loads(out)
    except ValueError:
        t.tally.problem(f"loadgen: no JSON (exit {proc.returncode})")
        return
    e = r["errors"]
    t.tally.loadgen_requests += r["requests"]
    t.tally.loadgen_wrong += e["bad_status"] + e["bad_response"] + e["wrong_bytes"]
    t.tally.loadgen_failed += e["connect"] + e["reset"] + e["timeout"] + e["closed"]
    if any(e.values()):
        t.tally.problem(f"loadgen errors: { {k: v for k, v in e.items() if v} }")


# --------------------------------------------------------------------------
# The EMFILE burst

async def burst(t: Target, mode: str, rng: random.Random) -> None:
    """RLIMIT_NOFILE a few above what the server holds, 40 clients at once,
    the limit back after a second: each client served or turned away, none
    answered wrong; then an ordinary client is served again."""
    server = t.servers()[mode]
    pid = server.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    payload = {c: rng.randbytes(1024) for c in range(BURST_CLIENTS)}

    async def client(c: int, out: list):
        try:
            reader, writer = await asyncio.wait_for(connect(server.address), t.io)
        except (OSError, asyncio.TimeoutError):
            out.append("refused")  # the handshake itself did not finish
            return
        try:
            if mode == "http":
                writer.write(get())
                status, body, _ = await asyncio.wait_for(read_response(reader), BURST_HOLD + t.io)
                out.append("served" if (status, body) == (200, HELLO) else "wrong")
            else:
                writer.write(payload[c])
                got = await asyncio.wait_for(reader.readexactly(1024), BURST_HOLD + t.io)
                out.append("served" if got == payload[c] else "wrong")
        except asyncio.IncompleteReadError as e:
            out.append("refused" if not e.partial else "wrong")
        except ConnectionError:
            out.append("refused")
        except asyncio.TimeoutError:
            out.append("unanswered")
        except ValueError:
            out.append("wrong")
        close(writer)

    outcomes: list[str] = []
    tasks = []
    # A few descriptors of room: some clients get in, the rest meet EMFILE. A
    # server of one client at a time needs one at a time: no room at all.
    room = 3 if t.concurrent else 0
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid) + room, hard))
    try:
        tasks = [asyncio.create_task(client(c, outcomes)) for c in range(BURST_CLIENTS)]
        await asyncio.sleep(BURST_HOLD)
    finally:  # whatever happens, the server gets its limit back
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    await asyncio.gather(*tasks)
    for o in outcomes:
        setattr(t.tally, f"burst_{o}", getattr(t.tally, f"burst_{o}") + 1)
    if "wrong" in outcomes or "unanswered" in outcomes:
        t.tally.problem(f"burst on {mode}: {sorted(outcomes)}")
    # The limit is back: an ordinary client is served as before (after 0.2 s:
    # a client in the first 100 ms may be turned away, tests/steps/test_soak.py
    # test_first_client_after_emfile_is_served says why).
    await asyncio.sleep(0.2)
    try:
        reader, writer = await asyncio.wait_for(connect(server.address), t.io)
        if mode == "http":
            writer.write(get())
            ok = (await asyncio.wait_for(read_response(reader), t.io))[:2] == (200, HELLO)
        else:
            writer.write(b"x" * 100)
            ok = await asyncio.wait_for(reader.readexactly(100), t.io) == b"x" * 100
        close(writer)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
        ok = False
        t.tally.problem(f"after the burst on {mode}: {e!r}")
    t.tally.burst_recovered += ok


# --------------------------------------------------------------------------
# Rounds, samples, quiet points

class Sampler:
    def __init__(self, start: float):
        self.start = start
        self.rows: list[dict] = []
        self.active: dict[str, Target] = {}

    async def run(self) -> None:
        while True:
            now = round(time.monotonic() - self.start, 2)
            for t in list(self.active.values()):
                for mode, s in t.servers().items():
                    try:
                        self.rows.append({"t": now, "step": t.number, "mode": mode,
                                          "rss_kib": rss_kib(s.pid), "fds": fd_count(s.pid),
                                          "threads": threads(s.pid), "round": t.rounds,
                                          "quiet": 0})
                    except (OSError, KeyError, ValueError):
                        pass
            await asyncio.sleep(SAMPLE_EVERY)


async def wait_quiet(t: Target, sampler: Sampler, timeout: float = 8.0) -> None:
    """Every client is gone: wait until each server's descriptors are back to
    their count at start (or stay put for 2 s), then sample."""
    for mode, s in t.servers().items():
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            n = fd_count(s.pid)
            if n <= t.base_fds[mode]:
                break
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since > 2.0:
                break
            await asyncio.sleep(0.05)
        rss, fds = rss_kib(s.pid), fd_count(s.pid)
        t.quiet.append((t.rounds, mode, rss, fds, time.monotonic()))
        sampler.rows.append({"t": round(time.monotonic() - sampler.start, 2), "step": t.number,
                             "mode": mode, "rss_kib": rss, "fds": fds, "threads": threads(s.pid),
                             "round": t.rounds, "quiet": 1})


async def one_round(t: Target, seconds: float, rate: int, sampler: Sampler, seed: int) -> None:
    rng = random.Random(seed)
    mix_seconds = max(2.0, seconds - 3.0)  # the burst and the quiet point take the rest
    until = time.monotonic() + mix_seconds
    r = lambda: random.Random(rng.random())  # noqa: E731  each client its own stream
    clients = [keepalive(t, until, r()) for _ in range(3 if t.concurrent else 1)]
    clients += [pipelined(t, until, r()) for _ in range(2 if t.concurrent else 1)]
    clients += [echo_stream(t, until, r()) for _ in range(3 if t.concurrent else 1)]
    clients += [slowloris(t, until) for _ in range(2)]
    clients += [resets(t, until, r()), half_closes(t, until, r()),
                never_read(t, t.http, r()), never_read(t, t.echo, r())]
    if t.concurrent:  # loadgen's connections would hold a one-client server for the round
        clients.append(loadgen(t, mix_seconds, rate))
    await asyncio.gather(*clients)
    # Everywhere, also where a lowered limit cannot reach the accept (step
    # 11's multishot accept): there every client is served, and the table says so.
    for mode in ("http", "echo"):
        await burst(t, mode, r())
    t.rounds += 1
    await wait_quiet(t, sampler)


async def crowd(t: Target, rng: random.Random) -> None:
    """The warm-up's first act: more clients at once than the mix or a burst
    ever holds, each with three big bodies, so that every thread's arena,
    cached stack and buffer has been about as busy as it will be."""
    async def one(c: int):
        async with Checked(t, "warm-up"):
            reader, writer = await asyncio.wait_for(connect(t.http.address), t.io)
            body = rng.randbytes(rng.choice((16000, 60000)))
            for _ in range(3):
                writer.write(post(body))
                await check(t, reader, [(200, body)])
            close(writer)

    await asyncio.gather(*(one(c) for c in range(CROWD)))


async def soak_step(t: Target, seconds: float, round_s: float, rate: int,
                    sampler: Sampler) -> None:
    sampler.active[t.number] = t
    until = time.monotonic() + seconds
    t.warmup_s = seconds * WARMUP
    t.warmup_until = time.monotonic() + t.warmup_s
    seed = int(t.number) * 1000
    try:
        await crowd(t, random.Random(seed - 1))
        while True:
            left = until - time.monotonic()
            if left < round_s * 0.5 and t.rounds >= 3:
                break
            await one_round(t, min(round_s, max(left, 4.0)), rate, sampler, seed + t.rounds)
    finally:
        del sampler.active[t.number]


# --------------------------------------------------------------------------
# The run

def steps_to_soak(only: set[str]) -> tuple[list[tuple[str, dict]], dict[str, str]]:
    found, skipped = [], {}
    binaries = {p.name[5:]: p for p in bin_dir().glob("step-[0-9][0-9]")}
    for number, info in ladder_steps.all_steps(ROOT).items():
        if only and number not in only:
            continue
        if number not in binaries:
            skipped[number] = f"{bin_dir()}/step-{number} is not built"
            continue
        probe = info.suite.get("probe")
        if probe:  # step 11: io_uring may be missing or refused here
            p = subprocess.run([str(binaries[number]), *probe], capture_output=True, text=True,
                               timeout=30)
            if p.returncode != 0:
                skipped[number] = (p.stderr.strip().splitlines() or ["probe failed"])[0]
                continue
        found.append((number, info.suite))
    return found, skipped


def timeout_flags(number: str) -> list[str]:
    """SERVER_FLAGS where the step has them: the blocking steps (01, 02)
    sleep in read() for their client and have no timeouts at all."""
    p = subprocess.run([str(bin_dir() / f"step-{number}"), "--help"], capture_output=True,
                       text=True, timeout=10)
    return SERVER_FLAGS if "--idle-timeout" in p.stdout + p.stderr else []


def start_target(number: str, suite: dict) -> Target:
    flags = timeout_flags(number)
    args = [*suite.get("args", []), *flags]
    saved = os.environ.get("GLIBC_TUNABLES")
    if MALLOC_TUNABLES:
        os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES  # the servers inherit it
    try:
        http = Server(number, ["--mode", "http", *args]).start()
        try:
            echo = Server(number, ["--mode", "echo", *args]).start()
        except BaseException:
            http.kill()
            raise
    finally:
        if saved is None:
            os.environ.pop("GLIBC_TUNABLES", None)
        else:
            os.environ["GLIBC_TUNABLES"] = saved
    return Target(number, suite, http, echo, Tally(), {}, flags)


def stop_target(t: Target) -> None:
    for mode, s in t.servers().items():
        try:
            r = s.stop(timeout=15)
            t.stats[mode], t.exit_codes[mode] = r.stats or {}, r.code
        except RuntimeError as e:
            t.exit_codes[mode] = None
            t.tally.problem(str(e))


def flatness(t: Target) -> dict:
    """RSS and descriptors at the quiet points after the warm-up. RSS: the
    median of the first third of them against the median of the last third
    (a single point is noisy: a round that buffered more leaves a higher
    heap top for a while; a leak moves the whole level). Descriptors: the
    first point against the last, and every point against the count at
    start."""
    out = {}
    for mode in ("http", "echo"):
        every = [q for q in t.quiet if q[1] == mode]
        points = [(q[2], q[3]) for q in every if q[4] >= t.warmup_until]
        if len(points) < 2:
            points = [(q[2], q[3]) for q in every[-2:]]
        if len(points) < 2:
            out[mode] = None
            continue
        # A third of the points, at least two where there are four: one
        # round that just ended big is not the level.
        k = max(2 if len(points) >= 4 else 1, len(points) // 3)
        rss0 = statistics.median(p[0] for p in points[:k])
        rss1 = statistics.median(p[0] for p in points[-k:])
        fds0, fds1 = points[0][1], points[-1][1]
        out[mode] = {"rss_start_kib": rss0, "rss_end_kib": rss1, "rss_ratio": round(rss1 / rss0, 3),
                     "fds_start": fds0, "fds_end": fds1, "fds_ratio": round(fds1 / fds0, 3),
                     "fds_at_start": t.base_fds[mode],
                     "fds_max_quiet": max(q[3] for q in every),
                     "quiet_points": len(points), "warmup_points": len(every) - len(points),
                     "window": k, "rss_quiet_kib": [q[2] for q in every],
                     "fds_quiet": [q[3] for q in every]}
    return out


def summary_of(t: Target) -> dict:
    tally = dataclasses.asdict(t.tally)
    tally["wrong"] = t.tally.wrong
    return {"rounds": t.rounds, "tally": tally, "flat": flatness(t), "exit": t.exit_codes,
            "warmup_s": round(t.warmup_s, 1),
            "stats": {m: {k: s.get(k) for k in ("accepted", "closed", "open", "requests",
                                                "refused", "timeouts", "bytes_in", "bytes_out")}
                      for m, s in t.stats.items()},
            "emfile_at_run_time": t.suite.get("lacks", {}).get("emfile_at_run_time")}


def failures(number: str, s: dict) -> list[str]:
    out = []
    tally = s["tally"]
    for mode, f in s["flat"].items():
        if f is None:
            out.append(f"step {number} {mode}: fewer than two quiet points after the warm-up")
            continue
        if f["rss_ratio"] > FLAT:
            out.append(f"step {number} {mode}: RSS {f['rss_start_kib']} -> {f['rss_end_kib']} KiB")
        if f["fds_ratio"] > FLAT or f["fds_max_quiet"] > f["fds_at_start"]:
            out.append(f"step {number} {mode}: descriptors {f['fds_at_start']} at start, "
                       f"{f['fds_start']} -> {f['fds_end']} at the quiet points")
    for key in ("wrong", "echo_lost", "http_unanswered", "burst_unanswered", "loadgen_failed"):
        if tally[key]:
            out.append(f"step {number}: {key} {tally[key]}")
    if tally["burst_recovered"] != 2 * s["rounds"]:
        out.append(f"step {number}: served again after {tally['burst_recovered']} of "
                   f"{2 * s['rounds']} bursts")
    for mode in ("http", "echo"):
        st = s["stats"].get(mode, {})
        if s["exit"].get(mode) != 0 or st.get("open") != 0:
            out.append(f"step {number} {mode}: exit {s['exit'].get(mode)}, open {st.get('open')}")
    return out


def table(results: dict[str, dict]) -> list[str]:
    print(f"\n{'step':<5} {'rounds':>6} {'answers':>8} {'wrong':>6} {'echo MiB':>9} {'lost':>5} "
          f"{'resets':>6} {'slow: closed/served':>20} {'burst: served/refused':>22}  "
          f"{'RSS http / echo (KiB, end/start)':<36} {'fds http / echo'}")
    verdicts = []
    for number, s in results.items():
        tl = s["tally"]
        answers = tl["http_ok"] + tl["loadgen_requests"]
        flat = s["flat"]

        def cell(mode, key_start, key_end, key_ratio, fmt="{:.2f}"):
            f = flat.get(mode)
            return "-" if not f else f"{f[key_end]} ({fmt.format(f[key_ratio])})"

        rss = " / ".join(cell(m, "rss_start_kib", "rss_end_kib", "rss_ratio") for m in ("http", "echo"))
        fds = " / ".join(cell(m, "fds_start", "fds_end", "fds_ratio") for m in ("http", "echo"))
        refused = sum(s["stats"].get(m, {}).get("refused") or 0 for m in ("http", "echo"))
        burst = f"{tl['burst_served']}/{tl['burst_refused']}" + ("" if refused else " (0 EMFILE)")
        print(f"{number:<5} {s['rounds']:>6} {answers:>8} {tl['wrong']:>6} "
              f"{tl['echo_bytes'] / (1 << 20):>9.1f} {tl['echo_lost']:>5} {tl['resets']:>6} "
              f"{str(tl['slowloris_timed_out']) + '/' + str(tl['slowloris_served']):>20} "
              f"{burst:>22}  {rss:<36} {fds}")
        verdicts += failures(number, s)
    print(f"\nanswers: responses checked (status and body) plus loadgen's (status). "
          f"lost: echoed bytes that never came back.\nslow: slowloris closed by the header "
          f"timeout / served late (steps without one). burst: clients served / turned away "
          f"while RLIMIT_NOFILE was low;\n(0 EMFILE): the server's stats count no refusal. RSS: "
          f"the median of the last third of the quiet points after the warm-up (end/start: its\n"
          f"ratio to the first third's); fds: at the last quiet point (last/first).")
    return verdicts


def plot(rows: list[dict], numbers: list[str], out: Path,
         warmups: dict[str, float]) -> Path | None:
    """One panel per step: RSS and descriptors of both servers over the
    step's time, the quiet points as dots, the warm-up shaded."""
    rows_start = {n: min((r["t"] for r in rows if r["step"] == n), default=0.0) for n in numbers}
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: no plot; apt-get install python3-matplotlib)", file=sys.stderr)
        return None
    cols = min(4, len(numbers))
    nrows = math.ceil(len(numbers) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.8 * nrows), squeeze=False)
    for ax, number in zip(axes.flat, numbers):
        ax2 = ax.twinx()
        top_rss = top_fds = 1.0
        for mode, colour in (("http", "tab:blue"), ("echo", "tab:orange")):
            pts = [r for r in rows if r["step"] == number and r["mode"] == mode]
            if not pts:
                continue
            t0 = rows_start[number]
            xs = [p["t"] - t0 for p in pts]
            ax.plot(xs, [p["rss_kib"] / 1024 for p in pts], color=colour, lw=1,
                    label=f"{mode} RSS")
            ax2.plot(xs, [p["fds"] for p in pts], color=colour, lw=0.6, ls=":",
                     label=f"{mode} fds")
            q = [p for p in pts if p["quiet"]]
            ax.plot([p["t"] - t0 for p in q], [p["rss_kib"] / 1024 for p in q], "o",
                    color=colour, ms=3)
            top_rss = max(top_rss, max(p["rss_kib"] for p in pts) / 1024)
            top_fds = max(top_fds, max(p["fds"] for p in pts))
        if number in warmups:
            ax.axvspan(0, warmups[number], color="0.9", zorder=0)
        ax.set_title(f"step {number}", fontsize=9)
        ax.set_xlabel("s (grey: warm-up)", fontsize=8)
        ax.set_ylabel("RSS MiB", fontsize=8)
        ax2.set_ylabel("descriptors", fontsize=8)
        ax.set_ylim(0, top_rss * 1.1)
        ax2.set_ylim(0, top_fds * 1.1)
        ax.tick_params(labelsize=7)
        ax2.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(numbers):]:
        ax.axis("off")
    lines, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[0].legend(lines, labels, fontsize=6, loc="lower right")
    fig.suptitle("soak: server RSS (solid; dots: quiet points) and descriptors (dotted)",
                 fontsize=10)
    fig.tight_layout()
    path = out / "soak.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


async def soak(numbers: list[tuple[str, dict]], seconds: float, parallel: bool,
               round_s: float | None) -> tuple[dict, list[dict]]:
    start = time.monotonic()
    sampler = Sampler(start)
    sampling = asyncio.create_task(sampler.run())
    results: dict[str, dict] = {}
    groups = [numbers] if parallel else [[n] for n in numbers]
    per_step = seconds if parallel else seconds / len(numbers)
    rs = round_s or min(20.0, max(6.0, per_step / 8))
    rate = LOADGEN_RATE // (len(numbers) if parallel else 1)
    try:
        for group in groups:
            targets = []
            try:
                for number, suite in group:
                    targets.append(start_target(number, suite))
                # What each opens at start, before any client (steps 10 and 11
                # with --threads set up their other loops after the ready line).
                time.sleep(0.5)
                for t in targets:
                    t.base_fds = {m: fd_count(s.pid) for m, s in t.servers().items()}
                for t in targets:
                    t.pace = max(1.0, len(targets) / 3)
                names = " ".join(t.number for t in targets)
                print(f"steps {names}: {per_step:.0f} s, rounds of ~{rs:.0f} s ...", flush=True)
                await asyncio.gather(*(soak_step(t, per_step, rs, rate, sampler) for t in targets))
            finally:
                for t in targets:
                    stop_target(t)
                    t.http.kill()
                    t.echo.kill()
                    results[t.number] = summary_of(t)
    finally:
        sampling.cancel()
    return results, sampler.rows


def interrupted(signum, frame):
    raise KeyboardInterrupt  # the finally clauses stop every server


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float,
                    default=float(os.environ.get("SOAK_SECONDS", 600)),
                    help="in all (SOAK_SECONDS, default 600): split between the steps, "
                         "or each step's with --parallel")
    ap.add_argument("--parallel", action="store_true", help="every step at once")
    ap.add_argument("--steps", default="", help="only these, e.g. 05,09")
    ap.add_argument("--round", type=float, default=None, help="seconds per round")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "soak")
    ap.add_argument("--json", action="store_true", help="a last line `facts: {...}`")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, interrupted)

    only = {n.strip() for n in args.steps.split(",") if n.strip()}
    numbers, skipped = steps_to_soak(only)
    if not numbers:
        print(f"no step to soak in {bin_dir()} (skipped: {skipped}); make build", file=sys.stderr)
        return 1
    print(f"Soak: {len(numbers)} steps {'at once' if args.parallel else 'in turn'}, "
          f"{args.seconds:.0f} s{' each' if args.parallel else ' in all'}; servers "
          f"{' '.join(SERVER_FLAGS)}" + (f"; skipped: {skipped}" if skipped else ""), flush=True)
    results, rows = asyncio.run(soak(numbers, args.seconds, args.parallel, args.round))

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "samples.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["t", "step", "mode", "rss_kib", "fds", "threads",
                                          "round", "quiet"])
        w.writeheader()
        w.writerows(rows)
    verdicts = table(results)
    png = plot(rows, list(results), args.out,
               {n: r["warmup_s"] for n, r in results.items()})
    facts = {"seconds": args.seconds, "parallel": args.parallel, "skipped": skipped,
             "flat_limit": FLAT, "results": results, "failures": verdicts}
    (args.out / "summary.json").write_text(json.dumps(facts, indent=1))
    print(f"\nWritten: {args.out / 'samples.csv'}, {args.out / 'summary.json'}"
          + (f", {png}" if png else ""))
    if verdicts:
        print("verdict: " + "; ".join(verdicts) + ": did not hold")
    else:
        print(f"verdict: every step ({len(results)}) flat after the warm-up (RSS and descriptors "
              f"end <= {FLAT} x start), 0 wrong responses, 0 lost echo bytes")
    if args.json:
        print("facts: " + json.dumps(facts))
    return 1 if verdicts else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every server stopped", file=sys.stderr)
        sys.exit(130)
