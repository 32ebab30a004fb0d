"""Step 04 demo: no wall any more, but every call still pays for idle fds."""

from clients import ask_each, idle_scaling, open_idle, raise_fd_limit

CROWD = 2500            # past FD_SETSIZE: step 03 would refuse some of these
IDLE = [0, 1000, 2500]  # step 04 alone: how its cost per request grows


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
    demo.say(f"\n{answered} of {CROWD} clients answered on one thread: the pollfd array has"
             " no size cap.\n")
    demo.say(f"Now one busy client beside {', '.join(f'{n:,}' for n in IDLE)} idle ones,"
             " on step 04 alone:\n")
    cpu, watch = idle_scaling(demo, ["04"], IDLE)
    low, high = cpu[("04", IDLE[0])], cpu[("04", IDLE[-1])]
    demo.say("")
    demo.claim(high > 2 * low, watch,
               f"With {IDLE[-1]:,} idle clients each request cost {high / low:.0f}x the server"
               " CPU it cost alone:\npoll() copies and scans every pollfd on every call,"
               " ready or not.",
               f"This run shows {high / low:.1f}x, not the growth poll() should show: rerun,"
               " or see make bench.")
    demo.next(
        read=["steps/04-poll/README.md", "docs/diffs/03-04.diff"],
        tries=["strace -c -p $(pgrep step-04) while the crowd is connected",
               "make step-05: the kernel keeps the interest list; 04 against 05"],
    )
