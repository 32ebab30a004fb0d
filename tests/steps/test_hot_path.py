"""The hot path of every event loop: once a keep-alive connection is warm,
a request costs

  - no heap allocation: malloc & co. counted by an LD_PRELOAD library
    (tools/alloccount) in a file this test reads while the server runs;
  - its reads, one write and the wait, and nothing else: every system call
    of every thread, logged by strace between two marker requests. One read
    where a short read ends the drain (08, 09) or the loop reads once per
    readiness (03-05); two where the drain reads on to EAGAIN (06, 07: the
    step's `reads_per_request` in its step.toml);
  - one write for a pipelined batch: 16 requests in, one send() out.

Counted, never timed. The loads stay on 127.0.0.1 and end by themselves."""

import collections
import dataclasses
import os
import re
import shutil
import signal
import struct
import subprocess
import time

import pytest

from conftest import (IO_TIMEOUT, SANITIZER, STOP_TIMEOUT, Client, bin_dir, proc_children,
                      request_bytes)

pytestmark = pytest.mark.only(event_loop=True)

HELLO = request_bytes("GET", "/hello")
CONNECTIONS = 20
WARM_UP = 300            # requests before counting: buffers and tables reach their size
REQUESTS = 20_000        # counted, over the same connections
PER_1000 = 1             # allocations allowed per 1,000 requests: "none", with room for
                         # one-off growth (a buffer doubling, a table resizing)
SEQUENTIAL = 300         # requests in the strace window, one at a time
TIMER_TICKS = 0.1        # per request: the odd timer tick or sweep in the window
EAGAIN_READS = 5         # "a handful" where a read that only says "empty" is not the rule
PIPELINED = 16

# Several loops, so that a quiet second one is part of what is counted; a
# fixed number, so that a big machine's timer ticks do not swamp the count
# (`two_loops` in the step's step.toml).
def thread_args(step):
    return step.caps.two_loops


# --------------------------------------------------------------------------
# Helpers: the exact bytes of /hello, and rounds of requests on many clients

def hello_response(client: Client) -> bytes:
    """One GET /hello, answered; its bytes (every /hello's answer is the same)."""
    before = client.received
    assert client.get("/hello").status == 200
    size = client.received - before
    client.send(HELLO)
    raw = client.read_exactly(size)
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"\r\n\r\nHello, World!\n"), raw
    return raw


def hello_rounds(clients, answer: bytes, rounds: int, pipelined: int = 1) -> int:
    """Each round: `pipelined` requests in one send on every client, then
    every answer read and compared. Returns the requests made."""
    batch = HELLO * pipelined
    for _ in range(rounds):
        for c in clients:
            c.send(batch)
        for c in clients:
            got = c.read_exactly(len(answer) * pipelined)
            assert got == answer * pipelined, f"unexpected answer: {got[:200]!r}"
    return rounds * len(clients) * pipelined


def echo_rounds(clients, size: int, rounds: int) -> int:
    """Ping-pong: one message of `size` bytes per client per round, echoed back."""
    for r in range(rounds):
        message = bytes([r % 256]) * size
        for c in clients:
            c.send(message)
        for c in clients:
            assert c.read_exactly(size) == message, "the echo differs"
    return rounds * len(clients)


# --------------------------------------------------------------------------
# 1. No heap allocation per request

needs_preload = pytest.mark.skipif(
    bool(SANITIZER), reason=f"the {SANITIZER} runtime owns malloc and must load first: "
                            "an LD_PRELOAD counter of malloc cannot run beside it")


class AllocCounter:
    """The counter file of tools/alloccount: 8 bytes the server's every
    malloc, calloc, realloc, aligned_alloc, posix_memalign and memalign add 1 to."""

    def __init__(self, tmp_path):
        self.lib = bin_dir() / "liballoccount.so"
        assert self.lib.is_file(), (f"{self.lib} is not built (tools/alloccount): "
                                    "cmake --build build")
        self.path = tmp_path / "allocations"

    @property
    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(self.lib), "ALLOCCOUNT_FILE": str(self.path)}

    def read(self) -> int:
        with open(self.path, "rb") as f:
            return struct.unpack("=Q", f.read(8))[0]


def start_counted(start_server, tmp_path, mode, step):
    counter = AllocCounter(tmp_path)
    server = start_server(mode, *thread_args(step), env=counter.env)
    assert counter.path.exists() and counter.read() > 0, (
        f"the server ran without the counter: LD_PRELOAD did not load\n{server.stderr}")
    return server, counter


def assert_no_allocations(counter, before, requests, what):
    allocations = counter.read() - before
    per_1000 = allocations * 1000 / requests
    print(f"{allocations} allocations in {requests} {what} ({per_1000:.2f} per 1,000)")
    assert per_1000 < PER_1000, (f"{allocations} heap allocations in {requests} {what} "
                                 f"({per_1000:.2f} per 1,000): the hot path allocates")
    return per_1000


@needs_preload
def test_http_requests_on_warm_connections_allocate_nothing(start_server, tmp_path, step):
    """20,000 GET /hello on 20 warm keep-alive connections, some pipelined:
    the buffers and tables grew during the warm-up, the requests reuse them."""
    server, counter = start_counted(start_server, tmp_path, "http", step)
    clients = [Client(server.address) for _ in range(CONNECTIONS)]
    try:
        answer = hello_response(clients[0])
        hello_rounds(clients, answer, WARM_UP // CONNECTIONS)
        hello_rounds(clients, answer, 2, pipelined=PIPELINED)
        before = counter.read()
        # Mostly one at a time; a fifth of them pipelined, 4 per send.
        made = hello_rounds(clients, answer, REQUESTS * 4 // 5 // CONNECTIONS)
        made += hello_rounds(clients, answer, REQUESTS // 5 // CONNECTIONS // 4, pipelined=4)
        assert made == REQUESTS
        assert_no_allocations(counter, before, made, "GET /hello")
    finally:
        for c in clients:
            c.close()


@needs_preload
def test_echo_messages_on_warm_connections_allocate_nothing(start_server, tmp_path, step):
    """Ping-pong of 64-byte messages, then of 16 KiB ones: the buffers that
    grew during the warm-up carry every message after it."""
    server, counter = start_counted(start_server, tmp_path, "echo", step)
    clients = [Client(server.address) for _ in range(CONNECTIONS)]
    try:
        for size, messages in ((64, REQUESTS), (16 * 1024, REQUESTS // 10)):
            echo_rounds(clients, size, WARM_UP // CONNECTIONS)
            before = counter.read()
            made = echo_rounds(clients, size, messages // CONNECTIONS)
            assert_no_allocations(counter, before, made, f"echoes of {size} bytes")
    finally:
        for c in clients:
            c.close()


# --------------------------------------------------------------------------
# 2 and 3. The system calls of a request, from strace

@dataclasses.dataclass
class Call:
    """One system call in strace's log: `text` is everything after "name(",
    the arguments and " = result" (an unfinished call and its resumption are
    joined: other threads' calls may come between them)."""
    tid: int
    name: str
    text: str

    @property
    def result(self) -> str:
        """What it returned: "41", "-1 EAGAIN (Resource temporarily unavailable)"."""
        before, equals, after = self.text.rpartition(" = ")
        return after if equals else "?"

    @property
    def fd(self) -> int | None:
        m = re.match(r"(\d+),", self.text)
        return int(m.group(1)) if m else None


STARTED = re.compile(r"(\d+)\s+(\w+)\((.*)$")
RESUMED = re.compile(r"(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
UNFINISHED = " <unfinished ...>"
WRITES = {"write", "writev", "send", "sendto", "sendmsg"}
READS = {"read", "readv", "recv", "recvfrom", "recvmsg"}


def parse_strace(text: str) -> list[Call]:
    """The calls of `strace -f -o` in the order they began."""
    calls: list[Call] = []
    pending: dict[int, Call] = {}
    for line in text.splitlines():
        if m := RESUMED.fullmatch(line):
            if (call := pending.pop(int(m.group(1)), None)) is not None:
                call.text += m.group(3)
        elif m := STARTED.fullmatch(line):
            call = Call(int(m.group(1)), m.group(2), m.group(3))
            calls.append(call)
            if call.text.endswith(UNFINISHED):
                call.text = call.text.removesuffix(UNFINISHED)
                pending[call.tid] = call
    return calls


def window(calls: list[Call], begin: str, end: str) -> list[Call]:
    """The calls from the read that took the request marked `begin` up to
    (not including) the read that took the one marked `end`."""
    def read_of(marker, after=0):
        for i in range(after, len(calls)):
            if calls[i].name in READS and marker in calls[i].text:
                return i
        raise AssertionError(f"no read of the request marked {marker!r} in strace's log")
    first = read_of(begin)
    return calls[first:read_of(end, first + 1)]


def marked(name: str) -> bytes:
    """GET /hello with a query string to find in strace's log (the same answer)."""
    return request_bytes("GET", f"/hello?{name}")


@pytest.fixture(scope="module")
def strace():
    """strace's path, once it has shown that it can trace here."""
    path = shutil.which("strace")
    if path is None:
        pytest.skip("strace is not installed: tools/deps.sh test")
    probe = subprocess.run([path, "-f", "-qq", "-o", os.devnull, "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:  # no ptrace in this container, or a seccomp rule
        pytest.skip(f"strace cannot trace here: {probe.stderr.strip()[:300]}")
    return path


class Traced:
    """An http server under `strace -f -o LOG`: every call of every thread
    logged, with enough of each buffer (-s) to find the marked requests."""

    def __init__(self, start_server, strace, log, step):
        wrapper = (strace, "-f", "-qq", "-s", "64", "-o", str(log), "--")
        self.server = start_server("http", *thread_args(step), wrapper=wrapper)
        self.log = log

    @property
    def address(self):
        return self.server.address

    @property
    def pid(self) -> int:
        """The server's own pid: strace's one child."""
        children = list(proc_children(self.server.pid))
        assert len(children) == 1, f"strace's children: {children}"
        return children[0]

    def calls(self) -> list[Call]:
        """Stops the server; the calls strace saw."""
        # SIGTERM to the server itself: strace, its parent, blocks fatal
        # signals while it writes to a file. It exits once the server has.
        os.kill(self.pid, signal.SIGTERM)
        self.server.proc.wait(STOP_TIMEOUT)
        return parse_strace(self.log.read_text(errors="replace"))


@pytest.fixture
def traced(start_server, strace, tmp_path, step):
    return Traced(start_server, strace, tmp_path / "strace.log", step)


def wait_until_asleep(pid: int) -> None:
    """Until every thread of `pid` sleeps in a system call (state S): the
    server has done all it does for the last request and waits for the
    next. Sending sooner would race it: a read it makes only to hear EAGAIN
    would find the next request instead, and hide."""
    deadline = time.monotonic() + IO_TIMEOUT
    while True:
        states = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    states[tid] = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:  # a thread that just ended
                pass
        if all(state == "S" for state in states.values()):
            return
        assert time.monotonic() < deadline, f"threads of {pid} never all asleep: {states}"
        time.sleep(0.0002)


@pytest.mark.claim("few_syscalls")
@pytest.mark.claim("syscall_io")  # strace finds the request by the read() that took it
def test_a_keep_alive_request_costs_its_reads_a_write_and_a_wait(traced, step):
    """300 GET /hello one after another, each sent once the server sleeps
    again: per request the step's reads (one, or two where the drain reads
    on to EAGAIN), one send, one wait — counted over every thread."""
    reads = step.caps.reads_per_request
    with Client(traced.address) as c:
        answer = hello_response(c)
        hello_rounds([c], answer, 50)
        pid = traced.pid
        for i in range(SEQUENTIAL + 2):
            wait_until_asleep(pid)
            c.send({0: marked("begin"), SEQUENTIAL + 1: marked("end")}.get(i, HELLO))
            assert c.read_exactly(len(answer)) == answer
    calls = window(traced.calls(), "begin", "end")
    requests = SEQUENTIAL + 1  # the "begin" request is in the window too
    names = collections.Counter(c.name for c in calls)
    per_request = len(calls) / requests
    print(f"{per_request:.3f} system calls per request: {dict(names.most_common())}")
    allowed = reads + 2 + TIMER_TICKS  # the reads, the send, the wait
    assert per_request <= allowed, (
        f"{per_request:.2f} system calls per request ({len(calls)} for {requests}), "
        f"not {reads} read(s) + send + wait: {dict(names.most_common())}")
    empty = [c for c in calls if c.name in READS and "EAGAIN" in c.result]
    if reads == 1:
        assert len(empty) <= EAGAIN_READS, (
            f"{len(empty)} reads of {requests} requests returned EAGAIN: a short read "
            f"already said the socket was empty; {dict(names.most_common())}")
    else:
        assert len(empty) >= requests - EAGAIN_READS, (
            f"only {len(empty)} of {requests} requests ended in a read that said EAGAIN: "
            f"the drain should read on until the socket is empty; "
            f"{dict(names.most_common())}")


@pytest.mark.claim("syscall_io")
def test_16_pipelined_requests_are_answered_by_one_write(traced):
    """16 requests in one segment: the session formats all 16 answers into
    its output before the loop writes, so one send() carries them all."""
    batch = marked("pipelined") + HELLO * (PIPELINED - 1)
    with Client(traced.address) as c:
        answer = hello_response(c)
        hello_rounds([c], answer, 20)
        wait_until_asleep(traced.pid)
        c.send(batch)  # one send: one segment, taken by one read
        assert c.read_exactly(len(answer) * PIPELINED) == answer * PIPELINED
        c.send(marked("end"))
        c.read_exactly(len(answer))
    calls = window(traced.calls(), "pipelined", "end")
    assert calls[0].result == str(len(batch)), f"the batch came in pieces: {calls[0]}"
    writes = [c for c in calls if c.name in WRITES and c.fd == calls[0].fd]
    results = [w.result for w in writes]
    print(f"{PIPELINED} pipelined answers: {[w.name for w in writes]} returned {results}")
    assert results == [str(len(answer) * PIPELINED)], (
        f"{PIPELINED} answers of {len(answer)} bytes went out in {len(writes)} calls "
        f"returning {results}, not in one call of {len(answer) * PIPELINED}: "
        + "; ".join(f"{w.name}({w.text[:80]}" for w in writes))
