"""Step 05 demo: epoll's cost follows the ready fds, not the watched ones."""

from clients import idle_scaling


def run(demo):
    demo.title("epoll, level-triggered: cost per call follows the ready fds")
    demo.say("One busy client beside 0 / 1,000 / 5,000 idle connections, on 04 and 05:\n")
    idle_scaling(demo, ["04", "05"], [0, 1000, 5000])
    demo.say("\nstep-05's CPU per request stays flat: idle sockets sit in the kernel's")
    demo.say("interest list and cost nothing until they have something to say.")
    demo.next(
        read=["steps/05-epoll-lt/README.md", "docs/diffs/04-05.diff"],
        tries=["curl 127.0.0.1:8080/stats during make serve-05: `wakeups` vs `requests`",
               "make step-06: edge-triggered"],
    )
