"""Step 05 demo: epoll's cost follows the ready fds, not the watched ones."""

from clients import idle_scaling

IDLE = [0, 5000]


def run(demo):
    demo.title("epoll, level-triggered: cost per call follows the ready fds")
    demo.say(f"One busy client alone, then beside {IDLE[-1]:,} idle connections: step 04"
             " (poll) against step 05 (epoll):\n")
    cpu, watch = idle_scaling(demo, ["04", "05"], IDLE)
    grew = {s: cpu[(s, IDLE[-1])] / cpu[(s, IDLE[0])] for s in ("04", "05")}
    demo.say("")
    demo.claim(grew["05"] < 1.5 and grew["04"] > 2 * grew["05"], watch,
               f"The idle crowd multiplied step 04's CPU per request by {grew['04']:.0f} and"
               f" step 05's by {grew['05']:.1f}:\nidle sockets sit in epoll's interest list"
               " and cost nothing until they have something to say.",
               f"This run: x{grew['04']:.1f} for 04, x{grew['05']:.1f} for 05 — not the"
               " contrast epoll should show: rerun, or see make bench.")
    demo.next(
        read=["steps/05-epoll-lt/README.md", "docs/diffs/04-05.diff"],
        tries=["curl 127.0.0.1:8080/stats during make serve-05: `wakeups` vs `requests`",
               "make step-06: edge-triggered"],
    )
