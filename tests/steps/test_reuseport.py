"""Step 08, SO_REUSEPORT (SPEC: "per-worker connection counts are balanced
by the kernel's hash; a worker's listener closing loses its queued
connections"). Each worker's own listener and accept queue, observed from
outside (/proc/net/tcp, the clients) and in the server's per-worker counts."""

import os
import select
import signal
import socket
import time
from pathlib import Path

import pytest

from conftest import SLOW, Client, request_bytes, wait_for

pytestmark = pytest.mark.only(workers="reuseport")

CLOSE = request_bytes("GET", "/hello", headers=[("Connection", "close")])
MIGRATE = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def hello_and_close(address):
    with socket.create_connection(address, timeout=10 * SLOW) as s:
        s.sendall(CLOSE)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.startswith(b"HTTP/1.1 200")


def listening_sockets(pid, port):
    """How many sockets LISTENing on `port` the process holds: inodes from
    /proc/PID/fd matched against /proc/net/tcp{,6} (state 0A = LISTEN)."""
    mine = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[len("socket:["):-1])
    count = 0
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():  # a kernel without IPv6
            continue
        for line in table.read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port and f[9] in mine:
                count += 1
    return count


def all_stopped(pid):
    """Every thread of `pid` is stopped (SIGSTOP is delivered asynchronously)."""
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        states.append(stat[stat.rfind(")") + 2])
    return all(s == "T" for s in states)


def answered_by_b(clients, settle=0.5 * SLOW, limit=5.0 * SLOW):
    """The clients with an answer waiting, once no new answer came for
    `settle` seconds (A, stopped, answers none)."""
    ready, deadline = set(), time.monotonic() + limit
    while time.monotonic() < deadline:
        pending = [c.sock for c in clients if c.sock not in ready]
        r, _, _ = select.select(pending, [], [], settle)
        if not r:
            break
        ready.update(r)
    return [c for c in clients if c.sock in ready]


def test_08_reuseport_each_worker_has_its_own_listener_on_the_port(start_server):
    server = start_server("http", "--workers", "4")
    assert listening_sockets(server.pid, server.port) == 4
    assert len(server.stdout_lines) == 1, "one ready line, whatever the number of listeners"


def test_08_reuseport_kernel_spreads_connections_over_workers(start_server):
    """The kernel hashes each connection's addresses and ports to one
    listener: 1,000 connections reach every worker, each at least 5 %
    (measured in 10 runs: the smallest share 21.1-24.6 %)."""
    server = start_server("http", "--workers", "4")
    answered = sum(hello_and_close(server.address) for _ in range(1000))
    assert answered == 1000
    stats = server.stop().stats
    counts = [w["connections"] for w in stats["workers"]]
    assert sum(counts) == 1000 and stats["accepted"] == 1000, counts
    assert min(counts) >= 50, f"per-worker connections {counts}"
    assert [w["requests"] for w in stats["workers"]] == counts, "each served its own"


@pytest.mark.skipif(MIGRATE.exists() and MIGRATE.read_text().strip() != "0",
                    reason="net.ipv4.tcp_migrate_req=1: the kernel moves a closing "
                           "listener's queue to a sibling instead of resetting it")
def test_08_reuseport_a_closed_listener_loses_its_queued_connections(start_server):
    """Two servers share the port (SO_REUSEPORT works across processes). A
    is stopped (SIGSTOP): the kernel still completes handshakes and queues
    the connections hashed to A's listeners. When A dies, its listeners
    close and those connections are reset, although B's listeners were
    idle all along: each listener's accept queue is its own."""
    a = start_server("http", "--workers", "2")
    b = start_server("http", "--workers", "2", "--port", str(a.port))
    os.kill(a.pid, signal.SIGSTOP)
    assert wait_for(lambda: all_stopped(a.pid), True), "A's threads did not stop"
    clients = []
    try:
        for _ in range(40):
            clients.append(Client(a.address))  # the kernel completes every handshake
        for c in clients:
            c.send(CLOSE)
        answered = answered_by_b(clients)
        queued_at_a = len(clients) - len(answered)
        assert answered and queued_at_a, (len(answered), queued_at_a)
        os.kill(a.pid, signal.SIGKILL)  # A's listeners close with their queues
        a.proc.wait(10)
        lost = 0
        for c in clients:
            if c in answered:
                assert c.read_response().status == 200
                continue
            if c.read_until_closed() == b"":
                lost += 1
        assert lost == queued_at_a, f"{lost} of the {queued_at_a} queued at A were lost"
    finally:
        for c in clients:
            c.close()
    # The group is now B's listeners alone: every new connection is served.
    assert all(hello_and_close(b.address) for _ in range(20))
    stats = b.stop().stats
    assert stats["accepted"] == len(answered) + 20


def test_08_reuseport_one_worker_serves_all(start_server):
    server = start_server("http", "--workers", "1")
    assert all(hello_and_close(server.address) for _ in range(20))
    stats = server.stop().stats
    assert [w["connections"] for w in stats["workers"]] == [20]
