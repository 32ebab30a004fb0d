"""Bad input and bad clients, on every step (`-k adversarial` selects the group).

A teaching server that crashes on a bad request teaches the wrong lesson. The
parser's choices (README, "HTTP behaviour you can rely on"; common/http.h)
are tested here end to end, beside what test_http.py already covers:

  framing    Content-Length and Transfer-Encoding variants, a request smuggled
             behind each; nothing after a closing error is ever answered
  syntax     control bytes, bare CR/LF, obs-fold, versions, Host
  limits     414 / 431 / 413 while the client keeps sending; memory bounded
  clients    one-byte fragments both ways, tiny socket buffers, thousands of
             idle connections, a reader that never reads, a trickling head
  TCP        half-close, close with answers unread, out of descriptors
  signals    SIGSTOP/SIGCONT storms (EINTR), a SIGTERM storm under load

Memory is read from /proc (VmRSS of the server and its children). Time is
never asserted beyond "answered / closed within a generous bound"; a CPU
check allows a quarter of a core where an idle server uses none (a spinning
one uses a whole core when it can get one).
"""

import os
import random
import resource
import select
import signal
import socket
import threading
import time

import pytest

from conftest import (IO_TIMEOUT, SANITIZER, SLOW, Client, Server, proc_children,
                      request_bytes, wait_for)

HELLO = b"Hello, World!\n"
KIB, MIB = 1 << 10, 1 << 20
GET_HELLO = request_bytes("GET", "/hello")

# Under ASan freed memory sits in a quarantine (256 MB) instead of going back:
# RSS says nothing there. The traffic still runs; the sanitizer watches it.
CHECK_RSS = not SANITIZER
# Seconds of server CPU time watched by a spin check (a spin is a full core,
# whatever the window). Sanitizer builds get a longer one: the instrumented
# server may still be finishing the work before the window for a while.
SPIN_WINDOW = 0.25 * SLOW


# --------------------------------------------------------------------------
# helpers

def proc_tree(pid: int) -> list[int]:
    """The server and its live children (02 --processes, 07 --variant blocking)."""
    return [pid, *(child for child, state in proc_children(pid).items() if state != "Z")]


def rss_kib(pid: int) -> int:
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass  # a child that just exited
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the server and its live children."""
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def cpu_during(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - before


def expect_only(server, raw: bytes, status: int, then: bytes = GET_HELLO):
    """Sends raw + `then` in one write: exactly one answer, `status`, then close."""
    with Client(server.address) as c:
        c.send(raw + then)
        r = c.read_response()
        assert r.status == status, (r.status, r.body[:200])
        assert r.closes(), f"a {status} closes the connection and says so: {r.headers}"
        c.expect_closed()


def parse_responses(data: bytes) -> list[tuple[int, bytes]]:
    """(status, body) of each response in data, framed by Content-Length."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        assert end > 0, f"incomplete response head: {data[:200]!r}"
        head = data[:end].decode("latin-1").split("\r\n")
        fields = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in head[1:])}
        length = int(fields["content-length"])
        body = data[end + 4:end + 4 + length]
        assert len(body) == length, f"truncated body: {len(body)} of {length}"
        out.append((int(head[0].split()[1]), body))
        data = data[end + 4 + length:]
    return out


def send_until_stuck(sock: socket.socket, data: bytes, stuck_after: float = 0.1) -> int:
    """Sends as much of data as the peer takes; stops once it stops reading."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent < len(data):
            try:
                sent += sock.send(data[sent:sent + 256 * KIB])
            except BlockingIOError:
                if not select.select([], [sock], [], stuck_after)[1]:
                    break
    finally:
        sock.settimeout(IO_TIMEOUT)
    return sent


def tcp_queues(sock: socket.socket) -> tuple[int, int]:
    """(bytes queued to send on this loopback socket, bytes its peer has
    received but not yet read), from one snapshot of /proc/net/tcp{,6}."""
    mine, peer = sock.getsockname()[1], sock.getpeername()[1]
    tx = rx = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local = int(fields[1].rsplit(":", 1)[1], 16)
                remote = int(fields[2].rsplit(":", 1)[1], 16)
                tx_queue, rx_queue = (int(q, 16) for q in fields[4].split(":"))
                if (local, remote) == (mine, peer):
                    tx = tx_queue
                elif (local, remote) == (peer, mine):
                    rx = rx_queue
    assert tx is not None and rx is not None, "the connection is not in /proc/net/tcp"
    return tx, rx


def tcp_wmem_max() -> int:
    """The most a socket's send buffer grows to by itself (autotuning)."""
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        return int(f.read().split()[2])


@pytest.fixture
def fd_room():
    """Lets this process hold a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 4096:
        pytest.fail(f"RLIMIT_NOFILE hard limit is {hard}; these tests need 4096")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --------------------------------------------------------------------------
# framing and smuggling: one answer, then close; the request behind it is
# never answered (a server that did would frame the stream differently from
# a proxy in front of it: request smuggling).

def post(fields: str, body: bytes = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n") -> bytes:
    return f"POST /echo HTTP/1.1\r\nHost: a\r\n{fields}\r\n\r\n".encode() + body


FRAMING = {
    # Transfer-Encoding, any value and any spelling: 501 (no chunked support)
    "te-identity": (post("Transfer-Encoding: identity"), 501),
    "te-chunked-identity": (post("Transfer-Encoding: chunked, identity"), 501),
    "te-trailing-space": (post("Transfer-Encoding: chunked "), 501),
    "te-leading-tab": (post("Transfer-Encoding:\tchunked"), 501),
    "te-capitalised": (post("Transfer-Encoding: Chunked"), 501),
    "te-lowercase-name": (post("transfer-encoding: chunked"), 501),
    "te-empty": (post("Transfer-Encoding:"), 501),
    "te-twice": (post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked"), 501),
    "te-http10": (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    # ... and with Content-Length, in either order and case: 400
    "te-identity-and-cl": (post("Transfer-Encoding: identity\r\nContent-Length: 5"), 400),
    "cl-and-te-list": (post("Content-Length: 5\r\nTransfer-Encoding: chunked, identity"), 400),
    "cl-and-te-lowercase": (post("content-length: 5\r\ntransfer-encoding: chunked"), 400),
    "cl-0-and-te": (post("Content-Length: 0\r\nTransfer-Encoding: chunked"), 400),
    # two Content-Length, equal or not, any case: 400
    "cl-twice-other-case": (post("Content-Length: 5\r\ncontent-length: 5"), 400),
    "cl-0-twice": (post("Content-Length: 0\r\nContent-Length: 0"), 400),
    "cl-list": (post("Content-Length: 5, 5"), 400),
    # malformed values: digits only, 64 bits
    "cl-2^64": (post("Content-Length: 18446744073709551616"), 400),
    "cl-exponent": (post("Content-Length: 1e3"), 400),
    "cl-fullwidth-digit": (post("Content-Length: \uff15"), 400),
    "cl-underscore": (post("Content-Length: 1_0"), 400),
    "cl-space-before-colon": (post("Content-Length : 5"), 400),
    # fits in 64 bits, past the limit: 413 on the head alone
    "cl-2^64-1": (post("Content-Length: 18446744073709551615"), 413),
}


@pytest.mark.parametrize("raw, status", FRAMING.values(), ids=FRAMING.keys())
def test_framing_error_answers_once_and_closes(http_server, raw, status):
    expect_only(http_server, raw, status)


@pytest.mark.parametrize("value", ["005", " 5 ", "\t5"], ids=["leading-zeros", "spaces", "tab"])
def test_content_length_kit_accepts(http_server, value):
    # Surrounding whitespace is not part of the value (RFC 9110 §5.5); leading
    # zeros are still decimal digits. The body is exactly 5 bytes.
    with Client(http_server.address) as c:
        c.send(f"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length:{value}\r\n\r\n".encode()
               + b"hello" + GET_HELLO)
        assert c.read_response().body == b"hello"
        assert c.read_response().body == HELLO


@pytest.mark.parametrize("first", [
    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
], ids=["post-echo", "get", "post-405"])
@pytest.mark.parametrize("split", [False, True], ids=["one-write", "two-writes"])
def test_content_length_0_then_a_pipelined_request_gets_two_answers(http_server, first, split):
    with Client(http_server.address) as c:
        if split:
            c.send(first)
            time.sleep(0.005)
            c.send(GET_HELLO)
        else:
            c.send(first + GET_HELLO)
        a, b = c.read_response(), c.read_response()
        assert a.status in (200, 405) and a.body in (b"", HELLO, b"Method Not Allowed\n")
        assert (b.status, b.body) == (200, HELLO), "the second request was swallowed"
        assert not c.readable_within(0.02), "a third answer out of nowhere"


def test_a_body_that_looks_like_a_request_is_never_answered_as_one(http_server):
    # GET and 404 and 405 requests may carry a body: its length decides where
    # the next request starts, whatever the body says.
    inner = request_bytes("GET", "/nope")
    with Client(http_server.address) as c:
        c.send(request_bytes("GET", "/hello", inner) + request_bytes("POST", "/nope", inner)
               + request_bytes("DELETE", "/echo", inner) + GET_HELLO)
        got = [c.read_response() for _ in range(4)]
        assert [r.status for r in got] == [200, 404, 405, 200]
        assert not c.readable_within(0.02)


# --------------------------------------------------------------------------
# syntax: the strict choices (400, or 505), each with a request behind it

def head(line: bytes, *fields: bytes) -> bytes:
    return line + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n"


SYNTAX = {
    "nul-in-name": (head(b"GET / HTTP/1.1", b"Host: a", b"X\x00Y: v"), 400),
    "control-in-name": (head(b"GET / HTTP/1.1", b"Host: a", b"X\x01: v"), 400),
    "utf8-in-name": (head(b"GET / HTTP/1.1", b"Host: a", b"Caf\xc3\xa9: v"), 400),
    "esc-in-value": (head(b"GET / HTTP/1.1", b"Host: a", b"X: \x1b[31m"), 400),
    "del-in-value": (head(b"GET / HTTP/1.1", b"Host: a", b"X: a\x7f"), 400),
    "nul-in-method": (head(b"G\x00T / HTTP/1.1", b"Host: a"), 400),
    "nul-in-version": (head(b"GET / HTTP/1.1\x00", b"Host: a"), 400),
    "raw-utf8-in-target": (head(b"GET /caf\xc3\xa9 HTTP/1.1", b"Host: a"), 400),
    "space-in-target": (head(b"GET /a b HTTP/1.1", b"Host: a"), 400),
    "cr-cr-lf": (b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", 400),
    "lf-cr": (b"GET / HTTP/1.1\n\rHost: a\r\n\r\n", 400),
    "obs-fold-tab": (head(b"GET / HTTP/1.1", b"Host: a", b"X: a", b"\tb"), 400),
    "obs-fold-first-field": (head(b"GET / HTTP/1.1", b" Host: a"), 400),
    "tab-before-colon": (head(b"GET / HTTP/1.1", b"Host\t: a"), 400),
    "lowercase-http": (head(b"GET / http/1.1", b"Host: a"), 400),
    "version-1.10": (head(b"GET / HTTP/1.10", b"Host: a"), 400),
    "version-no-minor": (head(b"GET / HTTP/1", b"Host: a"), 400),
    "version-trailing-space": (head(b"GET / HTTP/1.1 ", b"Host: a"), 400),
    "version-0.9": (head(b"GET / HTTP/0.9"), 505),
    "version-9.9": (head(b"GET / HTTP/9.9", b"Host: a"), 505),
    "two-hosts-any-case": (head(b"GET / HTTP/1.1", b"host: a", b"HOST: a"), 400),
    "absolute-form-without-host": (head(b"GET http://a/hello HTTP/1.1"), 400),
    "empty-name-with-colon": (head(b"GET / HTTP/1.1", b"Host: a", b":"), 400),
}


@pytest.mark.parametrize("raw, status", SYNTAX.values(), ids=SYNTAX.keys())
def test_syntax_error_answers_once_and_closes(http_server, raw, status):
    expect_only(http_server, raw, status)


ACCEPTED = {
    "obs-text-in-value": head(b"GET /hello HTTP/1.1", b"Host: a", b"X: caf\xc3\xa9"),
    "empty-host": head(b"GET /hello HTTP/1.1", b"Host:"),
    "every-tchar-in-name": head(b"GET /hello HTTP/1.1", b"Host: a", b"!#$%&'*+-.^_`|~09aZ: v"),
    "no-space-after-colon": head(b"GET /hello HTTP/1.1", b"Host:a", b"X:v"),
    "absolute-form-other-host": head(b"GET http://b/hello HTTP/1.1", b"Host: a"),
    "http10-with-host": head(b"GET /hello HTTP/1.0", b"Host: a", b"Connection: keep-alive"),
}


@pytest.mark.parametrize("raw", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_syntax_the_kit_accepts(http_server, raw):
    with Client(http_server.address) as c:
        c.send(raw + GET_HELLO)
        for _ in range(2):
            r = c.read_response()
            assert (r.status, r.body) == (200, HELLO)


# --------------------------------------------------------------------------
# limits: answered at the limit, while the client is still sending; memory
# stays bounded however much it sends

ENDLESS = {
    # what never ends: (prefix, filler, status)
    "request-line": (b"GET /", b"a", 414),
    "header-value": (b"GET / HTTP/1.1\r\nHost: a\r\nX: ", b"v", 431),
    "header-fields": (b"GET / HTTP/1.1\r\nHost: a\r\n", b"X: v\r\n", 431),
    "body": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1073741824\r\n\r\n", b"b", 413),
}
TOTAL = 50 * MIB       # offered to the server, over as many connections as it takes
PER_CONN_CAP = 16 * MIB  # more than the kernel's buffers: past it the server must be reading


def stream_until_closed(address, prefix: bytes, filler: bytes) -> tuple[int, bytes]:
    """Sends prefix, then filler forever; returns (bytes the kernel took,
    what the server answered) once the server closes."""
    chunk = (filler * (64 * KIB // len(filler) + 1))[:64 * KIB]
    with socket.create_connection(address, timeout=IO_TIMEOUT) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = 0
        try:
            s.sendall(prefix)
            while sent < PER_CONN_CAP:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except socket.timeout:
            raise AssertionError(f"the server stopped reading but did not close "
                                 f"after {sent} bytes") from None
        assert sent < PER_CONN_CAP, f"the server read {sent} bytes of an endless request"
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return sent, answer


@pytest.mark.parametrize("what", ENDLESS.keys())
def test_endless_request_is_cut_at_the_limit_and_memory_stays_bounded(start_server, what):
    prefix, filler, status = ENDLESS[what]
    server = start_server("http")
    with Client(server.address) as c:  # warm up: the first connection's buffers
        assert c.get("/hello").status == 200
    before = rss_kib(server.pid)
    offered = conns = 0
    while offered < (TOTAL if what == "header-value" else TOTAL // 5):
        sent, answer = stream_until_closed(server.address, prefix, filler)
        offered += sent
        conns += 1
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:100]
        assert answer.count(b"HTTP/1.1") == 1, answer[:300]
    grown = rss_kib(server.pid) - before
    stats = server.stop().stats
    # Each connection is read up to its limit and one read (64 KiB) past it.
    per_conn = stats["bytes_in"] / (conns + 1)
    assert per_conn < 8 * KIB + 16 * KIB + 128 * KIB, f"{per_conn:.0f} bytes read per connection"
    if CHECK_RSS:
        assert grown < 16 * 1024, f"RSS grew {grown} KiB over {offered >> 20} MiB offered"


# A first burst whose answers overfill the kernel's buffers by less than the
# high-water mark: the session is below it again while the rest of its
# output waits for room, so it may read on; it must still stop there.
FIRST_BURSTS = {"none": [], "answers-just-past-the-buffers": [MIB, 128 * KIB]}


@pytest.mark.parametrize("first", FIRST_BURSTS.keys())
def test_a_client_that_never_reads_costs_bounded_memory(start_server, first):
    # 16 pipelined 1 MiB echoes, never read: the session stops reading past
    # its high-water mark, then the kernel's buffers fill and the client's
    # sends stall. What the server has read (and holds) meanwhile is bounded:
    # the answers the kernel holds (the server's send buffer, at most
    # tcp_wmem's max, and the client's receive buffer), the high-water mark,
    # one request and one read. What it has not read waits in its receive
    # buffer, which autotuning may have grown to hold the whole stream.
    server = start_server("http")
    may_read = tcp_wmem_max() + 2 * MIB
    assert may_read < 16 * MIB, f"tcp_wmem's max is too large for this test: {may_read}"
    burst = [bytes([0xf0 + i]) * size for i, size in enumerate(FIRST_BURSTS[first])]
    bodies = [bytes([i]) * MIB for i in range(16)]
    stream = b"".join(request_bytes("POST", "/echo", b) for b in bodies)
    with Client(server.address) as warm:
        assert warm.request("POST", "/echo", bodies[0]).body == bodies[0]
    before = rss_kib(server.pid)
    with Client(server.address, rcvbuf=64 * KIB, connect=False) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * KIB)
        c.sock.connect(server.address)
        head = b"".join(request_bytes("POST", "/echo", b) for b in burst)
        c.sock.sendall(head)
        time.sleep(0.3 * SLOW)  # its answers fill what the kernel will hold
        sent = send_until_stuck(c.sock, stream)
        unsent, unread = tcp_queues(c.sock)
        read = len(head) + sent - unsent - unread
        assert read < may_read, f"the server read {read >> 10} KiB that nobody asked for back"
        grown = rss_kib(server.pid) - before
        if CHECK_RSS:
            assert grown < 24 * 1024, f"RSS grew {grown} KiB holding {sent >> 20} MiB unread"
        # Then it reads: every answer arrives, whole and in order.
        done = threading.Event()

        def rest():
            c.sock.sendall(stream[sent:])
            done.set()

        t = threading.Thread(target=rest, daemon=True)
        t.start()
        for i, body in enumerate(burst + bodies):
            r = c.read_response(timeout=IO_TIMEOUT * 2)
            assert r.status == 200 and r.body == body, i
        t.join(IO_TIMEOUT)
        assert done.is_set()


# --------------------------------------------------------------------------
# slow and abusive clients

def test_one_byte_fragments_both_ways(server, mode):
    """Every byte in its own segment, and read back one byte per recv from a
    receive buffer of ~2 KiB: the server's reads and writes see 1-byte pieces."""
    if mode == "http":
        data = (request_bytes("POST", "/echo", b"x" * 20) + request_bytes("GET", "/no")
                + request_bytes("GET", "/", headers=[("Connection", "close")]))
    else:
        data = bytes(random.Random(1).randbytes(100))
    with Client(server.address, rcvbuf=1) as c:
        def trickle():
            for i in range(len(data)):
                c.sock.send(data[i:i + 1])
                time.sleep(0.0002)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        got = bytearray()
        deadline = time.monotonic() + IO_TIMEOUT * 2
        while time.monotonic() < deadline:
            if mode == "echo" and len(got) == len(data):
                break
            byte = c.sock.recv(1)
            if not byte:
                break
            got += byte
        t.join(IO_TIMEOUT)
    if mode == "http":
        assert parse_responses(bytes(got)) == [(200, b"x" * 20), (404, b"Not Found\n"),
                                               (200, HELLO)]
    else:
        assert bytes(got) == data


def test_tiny_socket_buffers_short_reads_and_writes(server, mode):
    """4 KiB socket buffers both ways: every send and recv on both sides is
    short, and nothing is lost or reordered."""
    body = random.Random(2).randbytes(384 * KIB)
    with Client(server.address, rcvbuf=4096, connect=False) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        c.sock.connect(server.address)
        data = request_bytes("POST", "/echo", body) if mode == "http" else body
        t = threading.Thread(target=c.sock.sendall, args=(data,), daemon=True)
        t.start()
        if mode == "http":
            assert c.read_response(timeout=IO_TIMEOUT * 2).body == body
            assert c.get("/hello").body == HELLO
        else:
            assert c.read_exactly(len(body), timeout=IO_TIMEOUT * 2) == body
        t.join(IO_TIMEOUT)


def test_a_request_read_with_a_big_answer_is_still_answered(server, mode):
    """A request that arrives in the same read as the end of a big one waits
    behind the high-water mark (common/session.h). Once the big answer is
    written — all of it at once, maybe — it must still be answered: no read
    event will come for bytes already read."""
    big = bytes(range(256)) * (320 * KIB // 256)  # past the 256 KiB mark on its own
    if mode == "http":
        first, second = request_bytes("POST", "/echo", big), GET_HELLO
    else:
        first, second = big, b"tail"
    with Client(server.address) as c:
        c.send(first[:-1])
        time.sleep(0.05 * SLOW)  # all but one byte read: the big request is partial
        c.send(first[-1:] + second)  # one segment, one read: the end and the next
        # Answered in milliseconds when it works: wait 1 s, not IO_TIMEOUT.
        if mode == "http":
            assert c.read_response().body == big
            assert c.read_response(timeout=1.0 * SLOW).body == HELLO, \
                "the request behind it was never answered"
        else:
            assert c.read_exactly(len(big) + 4, timeout=1.0 * SLOW) == big + b"tail"


@pytest.mark.only(blocking=False)
def test_thousand_idle_connections_cost_no_cpu_and_block_no_one(http_server, step, fd_room):
    server = http_server
    n = 900 if step.caps.fd_cap else 1000  # select: stay under FD_SETSIZE
    idle = []
    try:
        for _ in range(n):
            idle.append(socket.create_connection(server.address, timeout=IO_TIMEOUT))
        with Client(server.address) as c:
            assert c.get("/hello").body == HELLO
        spent = cpu_during(server.pid, SPIN_WINDOW)
        assert spent < SPIN_WINDOW / 4, f"{spent:.2f} s of CPU with {n} idle connections"
    finally:
        for s in idle:
            s.close()


@pytest.mark.only(loop="epoll-lt")  # one representative: Conn::rearm (common/conn.h) serves all
def test_trickled_head_is_closed_by_the_header_timeout(start_server):
    """Slowloris, patient version: one byte every 0.3 s. The header timeout
    counts from the request's first byte (nginx's client_header_timeout), not
    from the last one, or the trickle keeps the connection for ever."""
    server = start_server("http", "--header-timeout", "1")
    data = b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"s" * 1000
    with Client(server.address) as c:
        start = time.monotonic()
        # Deadline at 1 s, swept once a second: closed by 2 s; allow 3.
        for i in range(len(data)):
            if time.monotonic() - start > 3.0 * SLOW or c.readable_within(0.3):
                break
            try:
                c.send(data[i:i + 1])
            except OSError:
                break
        assert c.readable_within(0.01), \
            f"still open {time.monotonic() - start:.1f} s into a 1 s header timeout"
        c.expect_closed()


# --------------------------------------------------------------------------
# TCP faults

def test_http_half_close_answers_what_was_asked_then_closes(http_server):
    with Client(http_server.address) as c:
        c.send(GET_HELLO + request_bytes("POST", "/echo", b"abc") + GET_HELLO)
        c.sock.shutdown(socket.SHUT_WR)
        got = parse_responses(c.read_until_closed())
        assert got == [(200, HELLO), (200, b"abc"), (200, HELLO)]


def test_http_half_close_mid_request_closes_without_an_answer(http_server):
    with Client(http_server.address) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        c.sock.shutdown(socket.SHUT_WR)
        c.expect_closed()


def test_half_close_while_not_reading_does_not_spin(server, mode):
    """The client sends a lot, half-closes and reads nothing for a while: the
    server has answers it cannot send and a peer that sent EOF. It must
    wait for the socket, not spin on the EOF; then deliver every answer."""
    if mode == "http":
        one = request_bytes("POST", "/echo", bytes(range(256)) * 256)  # 64 KiB bodies
        stream = one * 64
    else:
        one, stream = None, random.Random(3).randbytes(4 * MIB)
    with Client(server.address, rcvbuf=16 * KIB) as c:
        sent = send_until_stuck(c.sock, stream)
        c.sock.shutdown(socket.SHUT_WR)
        spent = cpu_during(server.pid, SPIN_WINDOW)
        assert spent < SPIN_WINDOW / 4, f"{spent:.2f} s of CPU waiting for a reader"
        got = c.read_until_closed(timeout=IO_TIMEOUT * 2)
    if mode == "http":
        answers = parse_responses(got)
        assert len(answers) == sent // len(one), "every complete request, no more"
        assert all(a == (200, bytes(range(256)) * 256) for a in answers)
    else:
        assert got == stream[:sent]


def test_close_with_answers_unread_costs_nothing(server, mode):
    """Requests pipelined, then close() at once: the server's writes meet EPIPE
    or ECONNRESET (never a SIGPIPE that kills it), ten times over."""
    data = GET_HELLO * 200 if mode == "http" else b"e" * (256 * KIB)
    for _ in range(10):
        c = Client(server.address)
        c.send(data)
        c.close()
    with Client(server.address) as c:
        if mode == "http":
            assert c.get("/hello").body == HELLO
        else:
            c.send(b"alive")
            assert c.read_exactly(5) == b"alive"


@pytest.mark.only(blocking=True)
def test_emfile_in_a_blocking_step_refuses_without_spinning(start_server):
    """Out of descriptors: a blocking accept loop must not spin either (the
    event loops are tested in test_event_loops.py). Every process of the
    server gets its limit at its lowest free descriptor number: none left."""
    server = start_server("http")
    # A first client, served: threads and sanitizer runtimes are set up (UBSan
    # opens files the first time it checks a type), and once it has seen the
    # close, so has the server: the descriptors below are the idle ones.
    with Client(server.address) as c:
        c.send(request_bytes("GET", "/hello", headers=[("Connection", "close")]))
        assert c.read_until_closed().startswith(b"HTTP/1.1 200")
    limits = {}
    for pid in proc_tree(server.pid):
        try:
            limit = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
            lowest_free = next(n for n in range(len(used) + 1) if n not in used)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, limit[1]))
            limits[pid] = limit
        except (ProcessLookupError, FileNotFoundError):
            pass  # a child that has just finished its client
    try:
        # An accept() already asleep holds the descriptor it will return, so
        # each accepting process may still serve one client; then refusals.
        answers = []
        for _ in range(40):
            with Client(server.address) as c:
                c.send(request_bytes("GET", "/hello", headers=[("Connection", "close")]))
                answers.append(c.read_until_closed())
        refused = answers.count(b"")
        assert refused + sum(a.startswith(b"HTTP/1.1 200") for a in answers) == 40
        assert refused >= 20, f"only {refused} of 40 refused at the descriptor limit"
        spent = cpu_during(server.pid, SPIN_WINDOW)
        assert spent < SPIN_WINDOW / 4, f"{spent:.2f} s of CPU at the descriptor limit"
    finally:
        for pid, limit in limits.items():
            try:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)
            except ProcessLookupError:
                pass
    assert "EMFILE" in server.stderr
    assert wait_for(lambda: _hello_ok(server), True), "served again once descriptors are back"


def _hello_ok(server) -> bool:
    try:
        with Client(server.address, timeout=1.0 * SLOW) as c:
            return c.get("/hello").body == HELLO
    except (AssertionError, OSError):
        return False


# --------------------------------------------------------------------------
# signals

def client_loop(address, stop: threading.Event, results: list, errors: list, work_ms: int = 0):
    """Requests over one connection until `stop`; appends whether each answer
    was right to `results`, and what went wrong, if anything, to `errors`."""
    try:
        with Client(address, timeout=IO_TIMEOUT * 2) as c:
            i = 0
            while not stop.is_set():
                i += 1
                if work_ms and i % 5 == 0:
                    r = c.get(f"/work?ms={work_ms}")
                    results.append(r.status == 200 and r.body.startswith(b"worked"))
                elif i % 2:
                    body = bytes([i % 256]) * (i * 97 % 20000)
                    r = c.request("POST", "/echo", body)
                    results.append(r.status == 200 and r.body == body)
                else:
                    r = c.get("/hello")
                    results.append(r.status == 200 and r.body == HELLO)
    except BaseException as e:  # reported by the test
        errors.append(e)


def test_stop_and_continue_storm_interrupts_nothing(start_server, step):
    """SIGSTOP/SIGCONT make epoll_wait (and friends) return EINTR even without
    a handler (signal(7)); the loop must retry, not fail, under load."""
    server = start_server("http")
    stop = threading.Event()
    results, errors = [], []
    clients = [threading.Thread(target=client_loop,
                                args=(server.address, stop, results, errors, 5), daemon=True)
               for _ in range(3 if step.caps.concurrent else 1)]
    for t in clients:
        t.start()
    try:
        for _ in range(25):
            os.killpg(server.pid, signal.SIGSTOP)
            time.sleep(0.003)
            os.killpg(server.pid, signal.SIGCONT)
            time.sleep(0.005)
    finally:
        os.killpg(server.pid, signal.SIGCONT)
        stop.set()
        for t in clients:
            t.join(IO_TIMEOUT * 2)
    assert not errors, errors[0]
    assert results and all(results), f"{results.count(False)} of {len(results)} answers wrong"
    stopped = server.stop()
    assert stopped.rc == 0, stopped.stderr
    assert stopped.stats["requests"] == len(results)


def test_sigterm_storm_under_load_one_stop_then_the_port_is_free(start_server, step):
    """A request in flight, clients hammering, and a burst of 20 SIGTERMs: the
    request is answered, the server prints one stats line and exits 0, and a
    new server binds the same port at once (SO_REUSEADDR: TIME_WAIT is no
    obstacle)."""
    server = start_server("http")
    stop = threading.Event()
    results, errors = [], []
    hammer = [threading.Thread(target=client_loop,
                               args=(server.address, stop, results, errors), daemon=True)
              for _ in range(2 if step.caps.concurrent else 0)]
    ms = int(200 * SLOW)  # still at work when the signals come, sanitizer or not
    with Client(server.address, timeout=IO_TIMEOUT * 2) as slow:
        slow.send(request_bytes("GET", f"/work?ms={ms}"))
        for t in hammer:
            t.start()
        time.sleep(0.1 * SLOW)  # the /work request is being worked on
        for _ in range(20):
            os.kill(server.pid, signal.SIGTERM)
            time.sleep(0.002)
        try:
            r = slow.read_response()
            assert (r.status, r.body) == (200, f"worked {ms} ms\n".encode()), \
                "the request in flight was cut"
        finally:
            stop.set()
            for t in hammer:
                t.join(IO_TIMEOUT * 2)
    stopped = server.stop()
    assert stopped.rc == 0, stopped.stderr
    assert len(stopped.stdout_lines) == 2, f"ready + one stats line: {stopped.stdout_lines}"
    # A hammering client may meet the close between two requests (its last
    # one unanswered: nothing came back, or a reset). Whatever did come back
    # was whole and right, and the server counted exactly that.
    for e in errors:
        assert isinstance(e, OSError) or "before a complete response; got b''" in str(e), e
    assert all(results), f"{results.count(False)} wrong answers"
    assert stopped.stats["requests"] == len(results) + 1
    again = Server(step, "http", ("--port", str(server.port))).start()
    try:
        with Client(again.address) as c:
            assert c.get("/hello").body == HELLO
    finally:
        again.kill()
        again.check_sanitizer()


@pytest.mark.only(one_thread=True)
def test_a_client_still_in_the_accept_queue_at_stop_is_answered(start_server):
    """While the one loop thread runs /work inline, a new client connects and
    sends its request: the kernel completes the handshake, and the client
    waits in the listener's accept queue. A stop arriving meanwhile must
    accept and answer it (Drain's take_queue), not reset it by closing the
    listener: it was sent before the stop."""
    server = start_server("http")
    with Client(server.address) as a:
        assert a.get("/hello").body == HELLO  # a is accepted; the loop is idle
        a.send(request_bytes("GET", "/work?ms=600"))
        time.sleep(0.1 * SLOW)  # the loop is inside /work now
        with Client(server.address) as b:  # queued: nobody calls accept()
            b.send(GET_HELLO)
            time.sleep(0.05 * SLOW)
            server.proc.send_signal(signal.SIGTERM)
            assert a.read_response().status == 200
            assert b.read_response().body == HELLO, "queued before the stop, then reset"
    assert server.stop().rc == 0


@pytest.mark.only(loop="epoll-lt")  # one representative: Drain (common/conn.h) serves 03-08
def test_a_request_queued_behind_a_slow_one_is_answered_at_stop(start_server):
    """One loop thread runs /work inline: a second client's request waits in
    its socket, unread, until the first is done. A stop arriving meanwhile
    must still answer both: both were sent before it."""
    server = start_server("http")
    with Client(server.address) as a, Client(server.address) as b:
        a.send(request_bytes("GET", "/work?ms=600"))
        time.sleep(0.05 * SLOW)
        b.send(GET_HELLO)
        time.sleep(0.05 * SLOW)
        server.proc.send_signal(signal.SIGTERM)
        assert a.read_response().status == 200
        assert b.read_response().body == HELLO, "sent before the stop, never answered"
