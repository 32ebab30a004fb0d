"""Step 09, the 1+N+M pool (SPEC: "a slow /work does not delay /hello on the
same I/O loop (unlike 06); a full work queue answers 503 (backpressure);
idle connections time out (timerfd); results return to the I/O loop via
eventfd"). Observed from outside; timings are compared as a ratio between
two servers measured in the same test, never against an absolute number."""

import json
import resource
import signal
import socket
import statistics
import threading
import time

import pytest

from conftest import (CAPS, IO_TIMEOUT, SANITIZER, SLOW, Client, Server, Step, bin_dir,
                      proc_threads, request_bytes, wait_for)

HELLO = b"Hello, World!\n"
RUNTIME_THREADS = 1 if SANITIZER == "tsan" else 0  # TSan's own helper thread

pytestmark = pytest.mark.only(loop="epoll-pool")


def stats_of(server):
    with Client(server.address) as c:
        r = c.get("/stats")
    assert r.status == 200
    return json.loads(r.body)


def close_all(clients):
    for c in clients:
        c.close()


# -- a slow /work holds a worker, not the loop

def hello_behind_work(server, works=10, ms=300):
    """`works` clients each ask GET /work?ms=`ms`; once those are in, one
    more client asks GET /hello. Returns the seconds /hello took; checks
    that every answer is a 200."""
    busy = [Client(server.address, timeout=IO_TIMEOUT + works * ms / 1000) for _ in range(works)]
    try:
        for c in busy:
            c.send(request_bytes("GET", f"/work?ms={ms}"))
        time.sleep(0.05)  # the /work requests are in before /hello is sent
        with Client(server.address, timeout=IO_TIMEOUT + works * ms / 1000) as c:
            start = time.monotonic()
            c.send(request_bytes("GET", "/hello"))
            r = c.read_response()
            took = time.monotonic() - start
        assert (r.status, r.body) == (200, HELLO)
        for c in busy:
            assert c.read_response().status == 200
    finally:
        close_all(busy)
    return took


def step_06():
    binary = bin_dir() / "step-06"
    if not binary.exists():
        pytest.fail(f"{binary} is not built; this comparison needs step 06 beside 09")
    return Step("06", "06", binary, CAPS["06"])


def test_09_pool_hello_is_not_delayed_by_work_on_the_same_loop_unlike_06(start_server):
    """One I/O loop, so /hello shares it with the ten /work requests: on 09
    the loop hands them to workers and answers /hello at once; on 06 the
    loop itself sleeps in each /work and /hello waits its turn."""
    pool = start_server("http", "--io-threads", "1", "--workers", "10")
    on_09 = statistics.median(hello_behind_work(pool) for _ in range(3))
    s06 = Server(step_06(), "http").start()
    try:
        on_06 = hello_behind_work(s06)
    finally:
        s06.kill()
    ratio = on_06 / max(on_09, 1e-4)
    assert ratio >= 5, f"/hello took {on_09 * 1000:.1f} ms on 09, {on_06 * 1000:.1f} ms on 06"


# -- backpressure: a bounded queue, and 503 when it is full

def test_09_pool_full_queue_answers_503_with_retry_after_and_recovers(start_server):
    ms = 500 * SLOW
    server = start_server("http", "--io-threads", "1", "--workers", "2", "--queue", "2")
    busy = [Client(server.address, timeout=IO_TIMEOUT + 2 * ms / 1000) for _ in range(4)]
    try:
        for c in busy:
            c.send(request_bytes("GET", f"/work?ms={ms}"))
        queue = wait_for(lambda: stats_of(server)["queue"],
                         lambda q: (q["running"], q["waiting"]) == (2, 2))
        assert (queue["running"], queue["waiting"]) == (2, 2), queue
        with Client(server.address) as late:
            r = late.get("/work?ms=10")
            assert r.status == 503, "two workers busy, two jobs waiting: the queue is full"
            assert r.header("retry-after") == "1"
            assert late.get("/hello").status == 200, "cheap routes never wait for the queue"
            for c in busy:
                assert c.read_response().status == 200
            assert late.get("/work?ms=10").status == 200, "once the queue drains, work is taken"
    finally:
        close_all(busy)
    stats = server.stop().stats
    assert stats["queue"]["rejected_503"] == 1


# -- timers: a timerfd per loop

def test_09_pool_timerfd_closes_idle_connections_on_every_loop(start_server):
    """Both loops close their idle clients; a client waiting for its worker
    longer than both timeouts is not idle: the server is the slow one."""
    server = start_server("http", "--io-threads", "2", "--idle-timeout", "1",
                          "--header-timeout", "1")
    idle = [Client(server.address, timeout=10 * SLOW) for _ in range(4)]
    try:
        for c in idle:
            assert c.get("/hello").status == 200
        with Client(server.address, timeout=10 * SLOW) as waiting:
            waiting.send(request_bytes("GET", "/work?ms=2500"))
            for c in idle:
                c.expect_closed()
            assert waiting.read_response().status == 200, "closed while its job ran"
            waiting.expect_closed()  # idle from now on: closed in its turn
    finally:
        close_all(idle)
    stats = server.stop().stats
    assert stats["timeouts"] == 5
    assert [loop["accepted"] for loop in stats["loops"]] == [3, 2], "round-robin"


# -- many clients, every answer right and in order

def cpu_digest(rounds):
    """The body of GET /cpu?n=rounds (common/session.cpp's cpu_digest)."""
    h = 0xcbf29ce484222325
    for i in range(rounds):
        h = ((h ^ i) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return f"{h:016x}\n".encode()


def batch(k, b, digests):
    """Five pipelined requests of client k, batch b, and the bodies they want:
    cheap ones answered by the loop, /cpu and /work by a worker, in between."""
    n, ms = 1000 + (7 * k + b) % len(digests), (k + b) % 3
    first, last = f"{k}:{b}:first".encode(), f"{k}:{b}:last".encode()
    reqs = [(request_bytes("GET", "/hello"), HELLO),
            (request_bytes("POST", "/echo", first), first),
            (request_bytes("GET", f"/cpu?n={n}"), digests[n]),
            (request_bytes("GET", f"/work?ms={ms}"), f"worked {ms} ms\n".encode()),
            (request_bytes("POST", "/echo", last), last)]
    return b"".join(r for r, _ in reqs), [want for _, want in reqs]


def test_09_pool_200_keepalive_clients_x_50_requests_in_order(start_server):
    clients, batches = 200, 10  # x 5 requests per batch = 50 per client
    digests = {n: cpu_digest(n) for n in range(1000, 1050)}
    server = start_server("http", "--workers", "4", "--queue", "256")
    start = threading.Barrier(clients)
    failures = []

    def one_client(k):
        try:
            with Client(server.address, timeout=30 * SLOW) as c:
                start.wait(30 * SLOW)
                for b in range(batches):
                    raw, wants = batch(k, b, digests)
                    c.send(raw)
                    for i, want in enumerate(wants):
                        r = c.read_response()
                        assert (r.status, r.body) == (200, want), (k, b, i, r.status, r.body)
        except BaseException as e:  # reported below, with the client's number
            failures.append(f"client {k}: {e!r}")

    threads = [threading.Thread(target=one_client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60 * SLOW)
    assert not failures, f"{len(failures)} clients failed, e.g. {failures[:3]}"
    stats = server.stop().stats
    assert (stats["accepted"], stats["requests"]) == (clients, clients * batches * 5)
    assert sum(loop["requests"] for loop in stats["loops"]) == stats["requests"]
    assert stats["queue"]["rejected_503"] == 0


# -- the threads: 1 + N + M, whatever the number of clients

@pytest.fixture
def fd_room():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 5000:
        pytest.fail(f"RLIMIT_NOFILE hard limit is {hard}; this test needs 5000")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_09_pool_threads_are_1_plus_n_plus_m_for_2000_clients(start_server, fd_room):
    server = start_server("http", "--io-threads", "2", "--workers", "3")
    fixed = 1 + 2 + 3 + RUNTIME_THREADS
    assert proc_threads(server.pid) == fixed
    socks = []
    try:
        for _ in range(2000):
            socks.append(socket.create_connection(server.address, timeout=10 * SLOW))
        for s in socks:
            s.sendall(request_bytes("GET", "/hello"))
        answered = sum(s.recv(4096).startswith(b"HTTP/1.1 200") for s in socks)
        assert answered == 2000
        assert proc_threads(server.pid) == fixed, "no thread per connection"
    finally:
        close_all(socks)
    stats = server.stop().stats
    assert [loop["accepted"] for loop in stats["loops"]] == [1000, 1000], "round-robin"


def test_09_pool_echo_runs_on_the_loops_alone(start_server):
    server = start_server("echo", "--io-threads", "2", "--workers", "3")
    assert proc_threads(server.pid) == 1 + 2 + RUNTIME_THREADS, "echo starts no workers"
    clients = [Client(server.address) for _ in range(4)]
    try:
        for i, c in enumerate(clients):
            c.send(f"ping {i}".encode())
        for i, c in enumerate(clients):
            assert c.read_exactly(6) == f"ping {i}".encode()
    finally:
        close_all(clients)
    stats = server.stop().stats
    assert "workers" not in stats, "no per-worker counts: there are no workers"


# -- graceful stop: the queue is worked off, within a bound

def test_09_pool_stop_finishes_queued_work_then_exits_0(start_server):
    server = start_server("http", "--io-threads", "1", "--workers", "1", "--queue", "4")
    busy = [Client(server.address, timeout=10 * SLOW) for _ in range(3)]
    try:
        for c in busy:
            c.send(request_bytes("GET", "/work?ms=300"))
        queue = wait_for(lambda: stats_of(server)["queue"],
                         lambda q: (q["running"], q["waiting"]) == (1, 2))
        assert (queue["running"], queue["waiting"]) == (1, 2), queue
        server.proc.send_signal(signal.SIGTERM)
        for c in busy:
            assert c.read_response().status == 200, "queued work is finished, not dropped"
    finally:
        close_all(busy)
    stopped = server.stop()
    assert stopped.rc == 0 and len(stopped.stdout_lines) == 2
    assert stopped.stats["workers"][0]["requests"] == 3


def test_09_pool_stop_is_bounded_by_the_drain_plus_the_job_in_hand(start_server):
    """A job the worker holds when the stop comes is finished and answered;
    the jobs still waiting when the drain time (2 s) is over are not started:
    they are answered 503 and closed. The server exits after about 2.5 s
    here, not 3 x 2.5 s."""
    server = start_server("http", "--io-threads", "1", "--workers", "1", "--queue", "4")
    busy = [Client(server.address, timeout=10 * SLOW) for _ in range(3)]
    try:
        for c in busy:
            c.send(request_bytes("GET", "/work?ms=2500"))
        wait_for(lambda: stats_of(server)["queue"]["waiting"], 2)
        start = time.monotonic()
        stopped = server.stop()
        took = time.monotonic() - start
        statuses = sorted(c.read_response().status for c in busy)
        assert statuses == [200, 503, 503], "the job in hand answered, the waiting ones refused"
        for c in busy:
            c.expect_closed()  # a stop: every answer is the connection's last
    finally:
        close_all(busy)
    assert stopped.rc == 0 and stopped.stats is not None
    assert took < 2 * 2.5, f"stop took {took:.1f} s: the waiting jobs ran"
