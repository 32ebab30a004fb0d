"""Step 09 demo: a slow /work holds a worker, not the loop (06 for contrast);
a full queue answers 503; who did what, from the stats."""

from __future__ import annotations

import threading
import time

from ladder.client import Reader, connect, request

WORKS, MS = 10, 300


def hello_behind_work(address) -> tuple[float, float]:
    """WORKS clients ask GET /work?ms=MS at once; 50 ms later one more asks
    GET /hello. Returns (seconds /hello took, seconds until every /work was
    answered), both from when the /work requests were sent."""
    socks = [connect(address, timeout=WORKS * MS / 1000 + 10) for _ in range(WORKS)]
    try:
        t0 = time.monotonic()
        for s in socks:
            s.sendall(request(f"/work?ms={MS}"))
        time.sleep(0.05)
        with connect(address, timeout=WORKS * MS / 1000 + 10) as h:
            sent = time.monotonic()
            h.sendall(request("/hello"))
            Reader(h).response()
            hello = time.monotonic() - sent
        for s in socks:
            Reader(s).response()
        return hello, time.monotonic() - t0
    finally:
        for s in socks:
            s.close()


def burst(address, n: int, ms: int) -> list[tuple[int, str]]:
    """n clients ask GET /work?ms=ms at the same moment: (status, Retry-After) each."""
    results: list[tuple[int, str]] = [(0, "")] * n
    go = threading.Barrier(n)

    def one(i):
        with connect(address, timeout=ms / 1000 + 10) as s:
            go.wait()
            s.sendall(request(f"/work?ms={ms}"))
            r = Reader(s).response()
            results[i] = (r.status, r.headers.get("retry-after", "")) if r else (0, "")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def contrast(demo) -> None:
    demo.say(f"{WORKS} clients ask GET /work?ms={MS} at once; 50 ms later one more asks"
             " GET /hello.")
    demo.say("Step 09 runs with ONE I/O loop here, so /hello shares it with the work.\n")
    rows = []
    for label, step, args in [("step-06 (one loop, work inline)", "06", []),
                              ("step-09 --io-threads 1 --workers 10", "09",
                               ["--io-threads", "1", "--workers", "10"])]:
        with demo.server(*args, step=step) as srv:
            hello, works = hello_behind_work(srv.address)
        rows.append([label, f"{hello * 1000:.1f} ms", f"{works:.2f} s"])
    demo.table(["server", "/hello answered in", f"all {WORKS} /work done after"], rows)
    demo.say("\n06's only thread sleeps inside each /work: /hello waits for all of them.")
    demo.say("09's loop parses /work, queues it for a worker and is free again at once;")
    demo.say("the answer comes back to the loop through its inbox and eventfd.\n")


POOL, QUEUE, CLIENTS, SLOW = 2, 2, 6, 500  # workers, queue slots, clients, ms of /work


def backpressure(demo) -> dict:
    demo.say(f"Backpressure: --workers {POOL} --queue {QUEUE}, and {CLIENTS} clients ask"
             f" /work?ms={SLOW} at once.\n")
    with demo.server("--io-threads", "2", "--workers", str(POOL), "--queue", str(QUEUE)) as srv:
        results = burst(srv.address, CLIENTS, SLOW)
    counts: dict[tuple[int, str], int] = {}
    for r in results:
        counts[r] = counts.get(r, 0) + 1
    demo.table(["status", "Retry-After", "clients"],
               [[status, retry or "-", n] for (status, retry), n in sorted(counts.items())])
    ok = sum(n for (status, _), n in counts.items() if status == 200)
    refused = sum(n for (status, _), n in counts.items() if status == 503)
    retry = sorted({r for (status, r), _ in counts.items() if status == 503})
    demo.say("")
    if ok == POOL + QUEUE and refused == CLIENTS - ok:
        demo.say(f"{POOL} ran, {QUEUE} waited in the queue, {refused} heard 503 at once: memory"
                 " stays bounded,")
        demo.say(f"and the client knows to come back (Retry-After: {', '.join(retry)}) instead"
                 " of hanging.\n")
    else:
        demo.say(f"This run: {ok} answered, {refused} refused — a worker finished before every"
                 f" client had asked (the {CLIENTS} did not arrive at once): rerun.\n")
    return srv.result.stats if srv.result else {}


def who_did_what(demo, stats: dict) -> None:
    demo.say("Who did what (the JSON stats the server printed at SIGTERM):\n")
    rows = [[f"I/O loop {lp['id']}", lp["connections"], lp["requests"], lp["wakeups"]]
            for lp in stats.get("loops", [])]
    rows += [[f"worker {w['id']}", "-", w["requests"], w["wakeups"]]
             for w in stats.get("workers", [])]
    demo.table(["thread", "connections", "requests answered / jobs run", "wake-ups"], rows)
    q = stats.get("queue", {})
    demo.say(f"\nThe work queue: capacity {q.get('capacity')}, {q.get('rejected_503')} jobs"
             " refused with 503 (--queue sets the capacity).")


def run(demo):
    demo.title("1 acceptor + N I/O loops + M workers")
    contrast(demo)
    stats = backpressure(demo)
    who_did_what(demo, stats)
    demo.say("\nThe acceptor deals connections round-robin; only a loop's own thread ever")
    demo.say("touches its connections — workers hand answers back, they never write.")
    demo.next(
        read=["steps/09-pool-1nm/README.md (the thread diagram)",
              "steps/09-pool-1nm/server.cpp: who may touch what is written at each"
              " declaration", "docs/diffs/08-09.diff"],
        tries=["build/bin/step-09 --io-threads 1 --workers 1 --queue 1, then"
               " curl 'localhost:8080/work?ms=3000' three times at once",
               "make test-steps PYTEST_ARGS='-k \"09 and pool\"'"],
    )
