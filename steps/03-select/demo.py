"""Step 03 demo: one thread serves a crowd — until the FD_SETSIZE wall."""

from clients import ask_each, open_idle, raise_fd_limit

CROWD = 1100


def run(demo):
    demo.title("select(): one thread, many clients, and the FD_SETSIZE wall")
    raise_fd_limit()
    demo.say(f"{CROWD} clients connect and each asks for /hello. fd_set has 1024 bits;")
    demo.say("a client whose descriptor is 1024 or more cannot be watched at all.\n")
    with demo.server() as srv:
        socks = open_idle(srv.address, CROWD)
        try:
            answered, refused = ask_each(socks)
        finally:
            for s in socks:
                s.close()
        log = [line for line in srv.stderr().splitlines() if "FD_SETSIZE" in line]
    stats = srv.result.stats if srv.result else {}
    demo.table(["clients", "answered", "refused (closed)", "server threads", "stats: refused"],
               [[CROWD, answered, refused, 1, stats.get("refused")]])
    demo.say(f"\nOne thread answered {answered} clients. The rest were closed on purpose:")
    if log:
        demo.say(f"  server said: {log[0]}")
    demo.say("Without that check, FD_SET(1030, &set) writes past the bitmap: memory corruption.")
    demo.next(
        read=["steps/03-select/README.md", "steps/03-select/server.cpp (accept_one, run)"],
        tries=["make serve-03, then `ulimit -n 4096; python3 -c \"import socket;"
               " s=[socket.create_connection(('127.0.0.1',8080)) for _ in range(1100)]\"`",
               "make step-04: poll() has no such wall"],
    )
