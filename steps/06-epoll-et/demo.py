"""Step 06 demo: drain to EAGAIN, or stall; and fewer wake-ups than 05."""

import socket
import time

from ladder.client import Reader, connect, request
from ladder.server import ROOT

MIB = 1 << 20


def post_big(address, wait: float):
    """POST 1 MiB to /echo; seconds until answered, or None if it stalls."""
    body = b"x" * MIB
    with connect(address, timeout=wait) as sock:
        t0 = time.monotonic()
        sock.sendall(request("/echo", "POST", body))
        try:
            response = Reader(sock).response()
        except socket.timeout:
            return None
        ok = response is not None and response.body == body
        return time.monotonic() - t0 if ok else None


def changed_code_lines(name: str) -> int:
    """Added + removed lines of a generated diff that are code: not blank, not
    comments (the rule of tests/steps/test_docs.py and the steps' diff_budget)."""
    n = 0
    for line in (ROOT / "docs" / "diffs" / f"{name}.diff").read_text().splitlines():
        body = line[1:].strip()
        if line[:1] in "+-" and not line.startswith(("+++", "---")) and body \
                and not body.startswith("//"):
            n += 1
    return n


def run(demo):
    demo.title("epoll, edge-triggered: read until EAGAIN")
    demo.say("A 1 MiB POST arrives at once. --naive-et makes one read (kReadSize bytes) per")
    demo.say("event; edge-triggered epoll reports the socket once, so the rest is never read.\n")
    rows = []
    for label, args in [("step-06 --naive-et", ["--naive-et"]), ("step-06", [])]:
        with demo.server(*args) as srv:
            took = post_big(srv.address, wait=3.0)
        stats = srv.result.stats if srv.result else {}
        rows.append([label, "stalled (no answer in 3 s)" if took is None
                     else f"answered in {took * 1000:.0f} ms",
                     f"{stats.get('bytes_in', 0):,}"])
    demo.table(["server", "1 MiB POST", "bytes the server read"], rows)
    demo.say("\nWake-ups (returns from epoll_wait) for three such POSTs, 05 vs 06:\n")
    rows = []
    for step in ["05", "06"]:
        with demo.server(step=step) as srv:
            for _ in range(3):
                post_big(srv.address, wait=10.0)
        stats = srv.result.stats if srv.result else {}
        rows.append([f"step-{step}", stats.get("requests"), stats.get("wakeups")])
    demo.table(["server", "requests", "wake-ups"], rows)
    (_, r05, w05), (_, r06, w06) = rows
    demo.say("")
    if w05 and w06 and w06 < w05:
        demo.say(f"Level-triggered woke {w05} times, once per read; edge-triggered {w06}, once"
                 f" per edge: {w05 / w06:.1f}x fewer for the same {r06} requests.")
    else:
        demo.say(f"This run: {w05} wake-ups on 05, {w06} on 06 — not fewer: rerun.")
    demo.next(
        read=["steps/06-epoll-et/README.md",
              f"docs/diffs/05-06.diff ({changed_code_lines('05-06')} changed lines of code)"],
        tries=["remove the accept loop in on_accept and run the burst test:"
               " make test-steps PYTEST_ARGS='-k \"06 and burst\"'",
               "make step-07: several threads, one listener — the thundering herd"],
    )
