"""Step 02 demo: B no longer waits; each connection costs a thread."""

import time

from clients import holder_and_waiter
from ladder.client import Reader, connect, request
from ladder.procfs import context_switches, rss_kib, threads
from ladder.server import wait_until

HOLD = 2.0
CROWDS = [0, 10, 100, 500]
# Besides one per client: main, asleep in accept4(), and the thread that
# waits for SIGINT/SIGTERM (ladder::watch_stop_in_a_thread()).
FIXED = 2


def measure_crowd(srv, n: int) -> list[object]:
    socks = []
    try:
        for _ in range(n):
            s = connect(srv.address)
            s.sendall(request("/hello"))
            socks.append(s)
        for s in socks:
            Reader(s).response()
        wait_until(lambda: threads(srv.pid) >= n + FIXED, timeout=5)
        return [n, threads(srv.pid), rss_kib(srv.pid), context_switches(srv.pid)]
    finally:
        for s in socks:
            s.close()


def run(demo):
    demo.title("a thread per connection")
    demo.say(f"The step 01 scenario again: A holds its connection {HOLD:.0f} s, B asks 0.3 s in.\n")
    with demo.server() as srv:
        t = holder_and_waiter(srv.address, hold=HOLD)
        waited = t["b_answered"] - t["b_sent"]
        demo.table(["client", "sent at", "answered at", "waited"],
                   [["A", "0.00 s", f"{t['a_answered']:.2f} s", f"{t['a_answered']:.2f} s"],
                    ["B", f"{t['b_sent']:.2f} s", f"{t['b_answered']:.2f} s",
                     f"{waited * 1000:.1f} ms"]])
        demo.say(f"\nB was answered in {waited * 1000:.1f} ms while A was still connected.\n")
        demo.say("Now the price: open N idle keep-alive connections and look in /proc.\n")
        rows = []
        for n in CROWDS:
            rows.append(measure_crowd(srv, n))
            wait_until(lambda: threads(srv.pid) == FIXED, timeout=5)
            time.sleep(0.1)
        base_rss = rows[0][2]
        demo.table(["idle connections", "threads", "RSS KiB", "RSS growth / connection",
                    "context switches"],
                   [[n, t, rss, "-" if not n else f"{(rss - base_rss) / n:.1f} KiB", cs]
                    for n, t, rss, cs in rows])
    plus = {n - t for n, t, _, _ in rows}
    demo.say("")
    if plus == {-FIXED}:
        demo.say(f"Threads = connections + {FIXED} (main, asleep in accept4, and the thread"
                 " that waits for a stop):")
        demo.say("every idle client holds a thread, its stack's touched pages and a kernel task;")
        demo.say("the scheduler switches between them even when the work is tiny.")
    else:
        demo.say(f"Threads minus connections: {sorted(-p for p in plus)} — the threads of"
                 " closed clients were still ending: rerun.")
    demo.next(
        read=["steps/02-thread-per-conn/README.md",
              "docs/diffs/01-02.diff"],
        tries=["build/bin/step-02 --processes, then watch `ps --ppid $(pgrep step-02)`"
               " while clients connect",
               "make step-03: one thread, many clients, with select()"],
    )
