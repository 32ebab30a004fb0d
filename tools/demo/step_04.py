"""Step 04 demo: no wall any more, but every call still pays for idle fds."""

from clients import ask_each, idle_scaling, open_idle, raise_fd_limit

CROWD = 2500


def run(demo):
    demo.title("poll(): no FD_SETSIZE wall, still O(all fds) per call")
    raise_fd_limit()
    with demo.server() as srv:
        socks = open_idle(srv.address, CROWD)
        try:
            answered, refused = ask_each(socks)
        finally:
            for s in socks:
                s.close()
    demo.table(["clients", "answered", "refused"], [[CROWD, answered, refused]])
    demo.say(f"\n{answered} clients on one thread: the pollfd array has no size cap.\n")
    demo.say("Now one busy client, beside a growing crowd of idle ones, on 04 and 05:\n")
    idle_scaling(demo, ["04", "05"], [0, 1000, 5000])
    demo.say("\npoll() copies and scans every pollfd on every call, so each request pays")
    demo.say("for every idle client; epoll_wait returns only the ready ones.")
    demo.next(
        read=["steps/04-poll/README.md", "docs/diffs/03-04.diff"],
        tries=["strace -c -p $(pgrep step-04) while the crowd is connected",
               "make step-05: the kernel keeps the interest list"],
    )
