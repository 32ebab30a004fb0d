"""The claims table (SPEC "The lessons and the claims the tests measure"):
each step's model, observed from outside. A known weakness is a strict
xfail with its reason (CAPS in conftest.py): the failure is the lesson."""

import pytest

from conftest import (SANITIZER, SLOW, Client, proc_children, proc_threads, request_bytes,
                      wait_for)

HOLD = 1.0  # how long client A stays connected, idle, in the ordering checks
B_WAIT = 2.5 * SLOW  # how long a concurrent server may take to answer B


def hold_a_connection(server):
    """Client A: connected, one request answered (so the server is serving
    it, not just queueing it), then idle."""
    a = Client(server.address)
    assert a.get("/hello").status == 200
    return a


# -- step 01: one client at a time

@pytest.mark.only(concurrent=False)
def test_01_b_waits_until_a_leaves(http_server):
    a = hold_a_connection(http_server)
    with Client(http_server.address) as b:
        try:
            b.send(request_bytes("GET", "/hello"))
            assert not b.readable_within(HOLD), "B was answered while A was still connected"
        finally:
            a.close()
        r = b.read_response()
        assert r.status == 200, "once A has left, B is served"


@pytest.mark.claim("concurrent")
def test_b_is_served_while_a_is_connected(http_server):
    a = hold_a_connection(http_server)
    try:
        with Client(http_server.address) as b:
            b.send(request_bytes("GET", "/hello"))
            assert b.readable_within(B_WAIT), "B got no answer while A was connected"
            assert b.read_response().status == 200
    finally:
        a.close()


# -- step 02: a thread (or a process) per connection

def open_served(server, k):
    clients = []
    try:
        for _ in range(k):
            c = Client(server.address)
            clients.append(c)
            assert c.get("/hello").status == 200
    except BaseException:
        for c in clients:
            c.close()
        raise
    return clients


# ThreadSanitizer starts a helper thread of its own with the first thread.
RUNTIME_THREADS = 1 if SANITIZER == "tsan" else 0
# Threads of step 02 with no client: main, asleep in accept(), and the one
# that waits for SIGINT/SIGTERM (blocking calls wait for their own socket
# alone: common/signals.h, watch_stop_in_a_thread).
FIXED = 2 + RUNTIME_THREADS


@pytest.mark.only(per_conn="thread")
@pytest.mark.parametrize("k", [0, 5, 20])
def test_02_threads_are_connections_plus_a_fixed_two(http_server, k):
    pid = http_server.pid
    # Threads of earlier connections end asynchronously after their close.
    idle = wait_for(lambda: proc_threads(pid), lambda n: n <= FIXED)
    assert idle == FIXED, "with no client: main (accept) and the stop watcher"
    clients = open_served(http_server, k)
    try:
        n = proc_threads(pid)
        assert n == FIXED + k, f"{n} threads for {k} connections"
    finally:
        for c in clients:
            c.close()
    n = wait_for(lambda: proc_threads(pid), lambda n: n <= FIXED)
    assert n == FIXED, f"{n} threads left: they end with their clients"


def live_children(pid):
    return sorted(p for p, state in proc_children(pid).items() if state != "Z")


@pytest.mark.only(per_conn="process")
@pytest.mark.parametrize("k", [0, 5, 20])
def test_02_processes_follow_connections(http_server, k):
    pid = http_server.pid
    assert wait_for(lambda: len(live_children(pid)), 0) == 0
    clients = open_served(http_server, k)
    try:
        assert len(live_children(pid)) == k, f"{k} connections"
        assert proc_threads(pid) <= FIXED, "the parent keeps its two threads: no more"
    finally:
        for c in clients:
            c.close()
    assert wait_for(lambda: len(live_children(pid)), 0) == 0, "children exit with their clients"


@pytest.mark.only(per_conn="process")
def test_02_processes_exited_children_are_reaped(http_server):
    pid = http_server.pid
    for c in open_served(http_server, 5):
        c.close()
    wait_for(lambda: len(live_children(pid)), 0)
    # The next accept reaps what has exited: zombies do not pile up.
    with Client(http_server.address) as c:
        assert c.get("/hello").status == 200
        zombies = wait_for(lambda: [p for p, s in proc_children(pid).items() if s == "Z"], [])
        assert zombies == [], f"unreaped children: {zombies}"
