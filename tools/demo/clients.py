"""Scenarios more than one demo uses."""

from __future__ import annotations

import threading
import time

from ladder.client import Reader, connect, request, timed_get
from ladder.procfs import cpu_seconds


def holder_and_waiter(address, hold: float = 2.0, delay: float = 0.3) -> dict:
    """Client A connects, is answered, then holds its connection for `hold`
    seconds; `delay` seconds in, client B sends one GET /hello.
    Returns when each happened, in seconds from A's connect."""
    t0 = time.monotonic()
    times: dict[str, float] = {}

    def waiter():
        time.sleep(delay)
        times["b_sent"] = time.monotonic() - t0
        response, _ = timed_get(address, "/hello", timeout=hold + 10)
        times["b_answered"] = time.monotonic() - t0
        times["b_status"] = response.status

    with connect(address) as a:
        a.sendall(request("/hello"))
        Reader(a).response()
        times["a_answered"] = time.monotonic() - t0
        b = threading.Thread(target=waiter)
        b.start()
        time.sleep(hold)
        times["a_closed"] = time.monotonic() - t0
    b.join(hold + 15)
    return times


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (servers we start inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def open_idle(address, n: int) -> list:
    """n connected sockets that never send anything."""
    import socket

    return [socket.create_connection(address, timeout=10) for _ in range(n)]


def ask_each(socks) -> tuple[int, int]:
    """GET /hello on every socket; (answered, refused) counts."""
    for s in socks:
        try:
            s.sendall(request("/hello"))
        except OSError:
            pass
    answered = refused = 0
    for s in socks:
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        if data.startswith(b"HTTP/1.1 200"):
            answered += 1
        else:
            refused += 1
    return answered, refused


def wait_accepted(address, n: int, timeout: float = 60.0) -> None:
    """Until the server has accepted n connections besides the asking one."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response, _ = timed_get(address, "/stats", timeout=timeout)
        if json.loads(response.body).get("open", 0) >= n + 1:
            return
        time.sleep(0.1)


def sequential_requests(address, seconds: float = 1.5) -> int:
    """One keep-alive connection, one request at a time, for `seconds`."""
    count = 0
    with connect(address) as sock:
        reader = Reader(sock)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sock.sendall(request("/hello"))
            reader.response()
            count += 1
    return count


def idle_scaling(demo, steps: list[str], crowds: list[int], seconds: float = 0.5,
                 repeats: int = 3):
    """For each step and idle crowd: requests/s of one busy client and the
    server's CPU per request (best of `repeats` short runs: the machine is
    shared, and noise only ever makes a run slower). Prints the table and
    returns ({(step, crowd): CPU-µs per request}, the Watch over the runs)."""
    from quiet import Watch, wait_quiet

    raise_fd_limit()
    rows, cpu = [], {}
    watch = Watch()
    for step in steps:
        with demo.server(step=step) as srv:
            for idle in crowds:
                socks = open_idle(srv.address, idle)
                try:
                    wait_accepted(srv.address, idle)
                    wait_quiet(patience=1.0)
                    runs = []
                    with Watch() as w:
                        for _ in range(repeats):
                            cpu0 = cpu_seconds(srv.pid)
                            n = sequential_requests(srv.address, seconds)
                            runs.append((n, cpu_seconds(srv.pid) - cpu0))
                    if w.busy and not watch.busy:
                        watch = w  # the worst stretch speaks for the table
                finally:
                    for s in socks:
                        s.close()
                best_n = max(n for n, _ in runs)
                best_cpu = min(c * 1e6 / max(n, 1) for n, c in runs)
                cpu[(step, idle)] = best_cpu
                rows.append([f"step-{step}", idle, f"{best_n / seconds:,.0f}",
                             f"{best_cpu:,.1f}"])
    demo.table(["server", "idle connections", "requests/s (one client)",
                "server CPU µs / request"], rows)
    return cpu, watch
