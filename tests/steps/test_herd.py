"""Step 07, the thundering herd (SPEC: "per variant: wasted wakeups per
connection and the per-worker share"). Every number comes from the server's
own counters: per worker, the wake-ups that found nothing (accept() said
EAGAIN, or the kernel put the worker back to sleep inside the wait, seen in
its context-switch count) and the connections it served. Counts and shares
only; no timing is asserted.

Low-rate arrivals: one connection at a time, with a pause, so every worker
is idle in its wait when the next one arrives. That is when the herd and
EPOLLEXCLUSIVE's fixed wake-up order show."""

import json
import socket
import threading
import time

import pytest

from conftest import SANITIZER, SLOW, Client, Server, request_bytes, run_binary

pytestmark = [pytest.mark.per_binary, pytest.mark.only(workers="herd")]

WORKERS = 4
LOW_RATE = 200        # connections, one at a time
PAUSE = 0.003 * SLOW  # between them: every worker is back asleep
CLOSE = request_bytes("GET", "/hello", headers=[("Connection", "close")])

SHARED = ["shared-lt", "shared-et"]
ONE_WAKEUP = ["blocking", "exclusive", "mutex", "acceptor", "reuseport"]
ALL = SHARED + ONE_WAKEUP


def hello_and_close(address):
    """One client: connect, GET /hello, read until the server closes."""
    with socket.create_connection(address, timeout=10 * SLOW) as s:
        s.sendall(CLOSE)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:200]


def low_rate(address, n=LOW_RATE, pause=PAUSE):
    for _ in range(n):
        hello_and_close(address)
        time.sleep(pause)


def burst(address, clients=8, each=25):
    """`clients` clients start together and connect back to back: workers
    are busy when connections arrive."""
    start = threading.Barrier(clients)
    failures = []

    def one():
        try:
            start.wait()
            for _ in range(each):
                hello_and_close(address)
        except BaseException as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30 * SLOW)
    assert not failures, failures[0]


def run_variant(step, variant, load, *extra):
    """Starts step 07 with --variant, runs `load(address)`, stops it: the
    stats line it printed."""
    server = Server(step, "http", ("--variant", variant, "--workers", str(WORKERS), *extra))
    try:
        server.start()
        load(server.address)
        stopped = server.stop()
        assert stopped.rc == 0, stopped.stderr
        assert stopped.stats is not None, stopped.stdout_lines
        return stopped.stats
    finally:
        server.kill()
        server.check_sanitizer()


_low_rate_runs = {}


def low_rate_stats(step, variant):
    """One low-rate run per variant, shared by the claims below."""
    if variant not in _low_rate_runs:
        _low_rate_runs[variant] = run_variant(step, variant, low_rate)
    return _low_rate_runs[variant]


def shares(stats):
    return [w["connections"] / stats["accepted"] for w in stats["workers"]]


def described(stats):
    w = stats["workers"]
    return (f"wasted/conn {stats['wasted_per_connection']}, fairness {stats['fairness']}, "
            f"shares {stats['shares']}, EAGAIN {[x['wasted_wakeups'] for x in w]}, "
            f"in the kernel {[x['silent_wakeups'] for x in w]}")


# -- who wakes up

@pytest.mark.parametrize("variant", SHARED)
def test_07_herd_shared_listener_wakes_every_idle_worker(step, variant):
    """One listener in 4 epoll sets: each connection wakes all 4 idle workers;
    one accepts, 3 find nothing (measured: 2.9-3.0 per connection, also
    with two CPU hogs running; most are absorbed inside epoll_wait, which
    re-checks the listener and sleeps again)."""
    stats = low_rate_stats(step, variant)
    assert stats["accepted"] == LOW_RATE
    assert stats["wasted_per_connection"] >= 1.5, described(stats)


@pytest.mark.parametrize("variant", ONE_WAKEUP)
def test_07_herd_one_wakeup_per_connection(step, variant):
    """accept() waits exclusively, EPOLLEXCLUSIVE wakes one epoll set, the
    mutex holder and the acceptor wait alone, each SO_REUSEPORT listener has
    one waiter (measured: at most 0.01 wasted per connection)."""
    stats = low_rate_stats(step, variant)
    assert stats["accepted"] == LOW_RATE
    assert stats["wasted_per_connection"] <= 0.5, described(stats)


# -- who gets the connection

@pytest.mark.parametrize("variant", ["exclusive", "mutex"])
def test_07_herd_exclusive_and_mutex_leave_workers_idle_at_low_rate(step, variant):
    """EPOLLEXCLUSIVE wakes the first idle epoll set in a fixed order; the
    mutex holder retries first, and another worker only takes over when its
    100 ms retry finds the mutex free. Some worker gets (almost) nothing
    (measured: smallest share 0.000 in 40 runs; J 0.25-0.30 for exclusive,
    0.25-0.51 for mutex), and with EPOLLEXCLUSIVE one takes nearly all
    (largest share 0.91-1.00)."""
    if variant == "mutex" and SANITIZER:
        pytest.skip("a sanitized build serves several times slower, so the others' 100 ms "
                    "retries find the mutex free more often: the shares spread (J 0.76-0.89 "
                    "under tsan)")
    stats = low_rate_stats(step, variant)
    assert min(shares(stats)) <= 0.05, described(stats)
    assert stats["fairness"] <= 0.7, described(stats)
    if variant == "exclusive":
        assert max(shares(stats)) >= 0.6, described(stats)


@pytest.mark.parametrize("variant", ["blocking", "acceptor"])
def test_07_herd_blocking_and_acceptor_take_turns(step, variant):
    """A worker coming back to accept() queues behind the others (FIFO);
    the acceptor deals round-robin (measured: every share 0.245-0.25)."""
    stats = low_rate_stats(step, variant)
    assert min(shares(stats)) >= 0.15, described(stats)
    assert stats["fairness"] >= 0.9, described(stats)


def test_07_herd_reuseport_spreads_1000_connections_over_every_worker(step):
    """The kernel hashes each connection to one listener: over 1,000
    connections every worker gets at least 5 % (measured in 10 runs: the
    smallest share 22.6-24.4 %)."""
    stats = run_variant(step, "reuseport", lambda address: low_rate(address, 1000, 0))
    assert stats["accepted"] == 1000
    assert min(shares(stats)) >= 0.05, described(stats)


# -- the counters add up

@pytest.mark.parametrize("variant", ALL)
def test_07_herd_burst_serves_everyone_and_the_counts_add_up(step, variant):
    stats = run_variant(step, variant, burst)
    workers = stats["workers"]
    assert stats["accepted"] == 200 and stats["requests"] == 200, stats
    assert sum(w["connections"] for w in workers) == 200, workers
    assert sum(w["requests"] for w in workers) == 200, workers
    assert stats["variant"] == variant
    x = [w["connections"] for w in workers]
    jain = sum(x) ** 2 / (len(x) * sum(v * v for v in x))
    assert stats["fairness"] == pytest.approx(jain, abs=1e-3)
    assert stats["shares"] == pytest.approx([v / 200 for v in x], abs=1e-3)
    assert sum(w["wakeups"] for w in workers) <= stats["wakeups"]


@pytest.mark.parametrize("variant", ["shared-lt", "blocking"])
def test_07_herd_stats_endpoint_shows_workers_shares_and_fairness(step, variant):
    def load(address):
        for _ in range(3):
            hello_and_close(address)
        with Client(address) as c:
            r = c.get("/stats")
        assert r.status == 200
        s = json.loads(r.body)
        assert s["variant"] == variant and len(s["workers"]) == WORKERS
        assert len(s["shares"]) == WORKERS and 0.25 <= s["fairness"] <= 1.0
        assert sum(w["connections"] for w in s["workers"]) == 4

    run_variant(step, variant, load)


def test_07_herd_unknown_variant_exits_2(step):
    r = run_binary(step, "--variant", "stampede")
    assert r.returncode == 2
    assert "stampede" in r.stderr.splitlines()[0] and "shared-lt" in r.stderr.splitlines()[0]
