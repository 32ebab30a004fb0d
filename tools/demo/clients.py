"""Scenarios more than one demo uses."""

from __future__ import annotations

import threading
import time

from ladder.client import Reader, connect, request, timed_get


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
