"""Steps 03-06 (and every later event loop): the claims of select, poll and
epoll, and what any single-threaded loop must survive — slow clients, idle
clients, a full descriptor table. Observed from outside, counted by the
server's own stats; no timing is asserted beyond "answered" / "not answered"."""

import resource
import socket
import threading
import time

import pytest

from conftest import SLOW, Client, proc_threads, request_bytes, wait_for

FD_SETSIZE = 1024


def open_clients(server, n):
    """n connected sockets (plain: no Client bookkeeping for thousands)."""
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(server.address, timeout=10 * SLOW))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def ask_all(socks):
    """Sends GET /hello on every socket, then reads one reply from each.
    Returns (answered, closed): a reply starting with the 200 status line,
    or end-of-file / reset."""
    for s in socks:
        try:
            s.sendall(request_bytes("GET", "/hello"))
        except OSError:
            pass  # already closed by the server: counted below
    answered = closed = 0
    for s in socks:
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        if data.startswith(b"HTTP/1.1 200"):
            answered += 1
        elif data == b"":
            closed += 1
    return answered, closed


@pytest.fixture
def many_fds():
    """Lets this process (and the servers it starts) hold thousands of sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 5000:
        pytest.fail(f"RLIMIT_NOFILE hard limit is {hard}; these tests need 5000")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- select: the FD_SETSIZE wall

@pytest.mark.only(fd_cap=FD_SETSIZE)
def test_03_fd_setsize_wall_refuses_cleanly(start_server, many_fds):
    server = start_server("http")
    socks = open_clients(server, FD_SETSIZE + 100)
    try:
        answered, closed = ask_all(socks)
        assert closed > 0, "descriptors past FD_SETSIZE must be refused, not FD_SET"
        assert answered + closed == len(socks), "every client is answered or closed"
        assert answered >= FD_SETSIZE - 16, "the clients below the wall are all served"
    finally:
        for s in socks[: len(socks) // 2]:
            s.close()
    try:
        with Client(server.address) as c:  # low descriptors are free again
            assert c.get("/hello").status == 200, "the server keeps serving after the wall"
    finally:
        for s in socks:
            s.close()
    assert "FD_SETSIZE" in server.stderr, "each refusal is logged"
    stopped = server.stop()
    assert stopped.rc == 0 and stopped.stats["refused"] >= closed


# -- many clients on one thread

@pytest.mark.only(event_loop=True)
@pytest.mark.claim("many_fds")
def test_2000_connections_served(start_server, many_fds, step):
    """2,000 clients at once; steps 03-06 on their one thread, 07-09 on
    their loops (no thread per connection either way)."""
    server = start_server("http")
    socks = open_clients(server, 2000)
    try:
        answered, closed = ask_all(socks)
        assert closed == 0 and answered == 2000, f"{answered} of 2000 answered"
        threads = proc_threads(server.pid)
        if step.caps.one_thread:
            assert threads == 1, "one thread serves them all"
        else:
            assert 1 < threads < 100, f"{threads} threads: a few loops, not one per client"
    finally:
        for s in socks:
            s.close()


@pytest.mark.only(event_loop=True)
def test_burst_of_200_connects_all_served(start_server):
    """200 clients connect at once (the listener reports them together): the
    accept path must take every one (step 06: the accept loop to EAGAIN)."""
    server = start_server("http")
    start = threading.Barrier(20)
    results = []

    def crowd():
        start.wait()
        socks = [socket.create_connection(server.address, timeout=10 * SLOW)
                 for _ in range(10)]
        try:
            results.append(ask_all(socks))
        finally:
            for s in socks:
                s.close()

    threads = [threading.Thread(target=crowd) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30 * SLOW)
    assert sum(a for a, _ in results) == 200, f"answered per group: {results}"
    stopped = server.stop()
    assert stopped.stats["accepted"] == 200


# -- edge-triggered: drain to EAGAIN

MIB = 1 << 20


def post_1mib(server, timeout):
    """POST /echo with a 1 MiB body sent in one go; the response or None."""
    with Client(server.address, timeout=timeout) as c:
        body = bytes(range(256)) * (MIB // 256)
        c.send(request_bytes("POST", "/echo", body))
        if not c.readable_within(timeout):
            return None
        r = c.read_response()
        assert r.status == 200 and r.body == body
        return r


@pytest.mark.only(event_loop=True)
def test_1mib_body_arriving_at_once_is_read_completely(start_server):
    assert post_1mib(start_server("http"), 10 * SLOW) is not None


@pytest.mark.only(loop="epoll-et")
def test_06_drain_naive_et_stalls(start_server):
    """One read per edge leaves the rest of the body in the socket, and no
    second edge comes: the request is never answered. The step itself
    (previous test) drains to EAGAIN and answers."""
    naive = start_server("http", "--naive-et", "--header-timeout", "60")
    assert post_1mib(naive, 2.0 * SLOW) is None, "--naive-et should stall on a 1 MiB body"
    stopped = naive.stop()
    assert stopped.stats["requests"] == 0
    assert 0 < stopped.stats["bytes_in"] < MIB, "it read the first part, then waited forever"


def wakeups_for_1mib_posts(server, n=3):
    for _ in range(n):
        assert post_1mib(server, 10 * SLOW) is not None
    return server.stop().stats["wakeups"]


@pytest.mark.only(loop="epoll-et")
def test_06_fewer_wakeups_than_05(start_server, step):
    """The same 1 MiB bodies: level-triggered epoll returns once per read
    (64 KiB); edge-triggered once per edge, reading everything there is."""
    from conftest import STEPS, Server

    lt = [s for s in STEPS if s.caps.loop == "epoll-lt"]
    if not lt:
        pytest.fail("step 05 (epoll-lt) is not built; the comparison needs both")
    et_wakeups = wakeups_for_1mib_posts(start_server("http"))
    s05 = Server(lt[0], "http").start()
    try:
        lt_wakeups = wakeups_for_1mib_posts(s05)
    finally:
        s05.kill()
    assert et_wakeups < lt_wakeups, f"06: {et_wakeups} wake-ups, 05: {lt_wakeups}"


# -- a flood on one connection

@pytest.mark.only(event_loop=True)
def test_a_flooding_client_is_answered_in_order_and_others_are_served(start_server):
    """One client pipelines 8 MB of requests as fast as it can; the loop
    serves another client in between, and nothing of the flood is lost or
    reordered."""
    server = start_server("http")
    n = 2000
    raw = request_bytes("GET", "/hello", headers=[("X-Pad", "a" * 4000)])
    with Client(server.address, timeout=30 * SLOW) as flood, Client(server.address) as other:
        sender = threading.Thread(target=lambda: flood.sock.sendall(raw * n), daemon=True)
        sender.start()
        for _ in range(5):
            assert other.get("/hello").status == 200
        for i in range(n):
            assert flood.read_response().body == b"Hello, World!\n", i
        sender.join(10 * SLOW)
    assert server.stop().stats["requests"] == n + 5


# -- timers: slow and forgotten clients

@pytest.mark.only(event_loop=True)
def test_idle_connection_is_closed_after_idle_timeout(start_server):
    server = start_server("http", "--idle-timeout", "1")
    with Client(server.address, timeout=10 * SLOW) as c:
        assert c.get("/hello").status == 200
        c.expect_closed()  # within the client's timeout, well after 1 s
    stopped = server.stop()
    assert stopped.stats["timeouts"] == 1


@pytest.mark.only(event_loop=True)
def test_slowloris_closed_after_header_timeout_and_others_unaffected(start_server):
    server = start_server("http", "--header-timeout", "1")
    crowd = [Client(server.address, timeout=10 * SLOW) for _ in range(50)]
    try:
        for c in crowd:
            c.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        with Client(server.address) as other:
            assert other.get("/hello").status == 200, "a crowd of slow clients delays no one"
        for c in crowd:
            c.expect_closed()
    finally:
        for c in crowd:
            c.close()
    assert server.stop().stats["timeouts"] == 50


# -- out of descriptors

def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in ticks of 10 ms


@pytest.mark.only(event_loop=True)
@pytest.mark.claim("emfile_at_run_time")  # the limit is lowered while the server runs
def test_emfile_refuses_without_spinning_and_recovers(start_server):
    server = start_server("http")
    limit = 64
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (limit, limit))
    socks = open_clients(server, limit + 20)
    try:
        answered, closed = ask_all(socks)
        assert answered + closed == len(socks), "every client hears yes or no: none hangs"
        assert closed > 0 and answered > 0
        before = cpu_seconds(server.pid)
        time.sleep(1.0)
        spent = cpu_seconds(server.pid) - before
        assert spent < 0.5, f"{spent:.2f} s of CPU in 1 s at the fd limit: the loop spins"
    finally:
        for s in socks:
            s.close()
    ok = wait_for(lambda: _hello_ok(server), True, timeout=5 * SLOW)
    assert ok, "after the crowd leaves, new clients are served"
    assert "EMFILE" in server.stderr


def _hello_ok(server):
    try:
        with Client(server.address) as c:
            return c.get("/hello").status == 200
    except (AssertionError, OSError):
        return False
