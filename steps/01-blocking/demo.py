"""Step 01 demo: client B waits for as long as client A stays connected."""

from clients import holder_and_waiter

HOLD = 2.0


def run(demo):
    demo.title("blocking: one client at a time")
    demo.say(f"Client A connects, gets /hello, then keeps its connection open {HOLD:.0f} s.")
    demo.say("Client B asks for /hello 0.3 s later.\n")
    with demo.server() as srv:
        t = holder_and_waiter(srv.address, hold=HOLD)
    waited = t["b_answered"] - t["b_sent"]
    demo.table(
        ["client", "sent at", "answered at", "waited"],
        [["A", "0.00 s", f"{t['a_answered']:.2f} s", f"{t['a_answered']:.2f} s"],
         ["B", f"{t['b_sent']:.2f} s", f"{t['b_answered']:.2f} s", f"{waited:.2f} s"]],
    )
    demo.say(f"\nA closed at {t['a_closed']:.2f} s. B waited {waited:.1f} s for a reply that"
             " takes microseconds:")
    demo.say("the only thread was asleep in read() on A's socket. B's connection sat in")
    demo.say("the kernel's accept queue (the handshake finished without us) all along.")
    stats = srv.result.stats if srv.result else {}
    demo.say(f"server stats: accepted={stats.get('accepted')} "
             f"requests={stats.get('requests')} wakeups={stats.get('wakeups')}")
    demo.next(
        read=["steps/01-blocking/README.md", "steps/01-blocking/server.cpp (serve, run)"],
        tries=["make serve-01, then two terminals: nc -C 127.0.0.1 8080 in one,"
               " curl 127.0.0.1:8080/hello in the other",
               "make step-02: the same scenario with a thread per connection"],
    )
