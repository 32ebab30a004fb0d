// ConnTable, Drain (conn.h) and Timeouts, Sweep (timeouts.h).
#include <doctest/doctest.h>

#include "conn.h"
#include "signals.h"
#include "timeouts.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace ladder;
using namespace std::chrono_literals;

namespace {

struct Pair {
    Fd a, b;
    Pair() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        a.reset(fds[0]);
        b.reset(fds[1]);
    }
};

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

}  // namespace

TEST_CASE("ConnTable indexes by descriptor and closes on remove") {
    Stats stats("t", "http");
    ConnTable table;
    Pair p, q;
    int fa = p.a.get(), fq = q.a.get();
    Conn& ca = table.add(std::move(p.a), Mode::http, stats);
    Conn& cq = table.add(std::move(q.a), Mode::echo, stats);
    CHECK(table.size() == 2);
    CHECK(table.find(fa) == &ca);
    CHECK(table.find(fq) == &cq);
    CHECK(table.find(-1) == nullptr);
    CHECK(table.find(fa + 1000) == nullptr);
    CHECK(ca.want.read);
    CHECK_FALSE(ca.want.write);

    table.remove(ca);
    CHECK(table.size() == 1);
    CHECK(table.find(fa) == nullptr);
    CHECK_FALSE(is_open(fa));
    CHECK(is_open(fq));

    int visited = 0;
    table.for_each([&](Conn& c) {
        ++visited;
        table.remove(c);  // removing the visited one is allowed
    });
    CHECK(visited == 1);
    CHECK(table.size() == 0);
    CHECK_FALSE(is_open(fq));
}

TEST_CASE("close_expired closes exactly the connections past their deadline") {
    Stats stats("t", "http");
    ConnTable table;
    Pair p, q;
    auto now = Clock::now();
    Conn& late = table.add(std::move(p.a), Mode::http, stats);
    Conn& fresh = table.add(std::move(q.a), Mode::http, stats);
    late.deadline = now - 1ms;
    fresh.deadline = now + 1s;
    int late_fd = late.fd.get();
    std::vector<int> closed;
    table.close_expired(now, [&](Conn& c) {
        closed.push_back(c.fd.get());
        table.remove(c);
    });
    CHECK(closed == std::vector<int>{late_fd});
    CHECK(table.find(fresh.fd.get()) == &fresh);
}

TEST_CASE("Timeouts: header deadline mid-request, idle deadline between requests") {
    Timeouts t;
    CHECK(t.header_seconds == 10);
    CHECK(t.idle_seconds == 60);
    t.header_seconds = 2;
    t.idle_seconds = 7;
    auto now = Clock::now();
    CHECK(t.deadline(now, true) == now + 2s);
    CHECK(t.deadline(now, false) == now + 7s);
    auto flags = t.flags();
    REQUIRE(flags.size() == 2);
    const char* argv[] = {"x", "--header-timeout", "3", "--idle-timeout=9"};
    ParseOutcome r = try_parse_options(4, argv, StepInfo{"x", "y"}, flags);
    CHECK(r.error.empty());
    CHECK(t.header_seconds == 3);
    CHECK(t.idle_seconds == 9);
    const char* bad[] = {"x", "--idle-timeout", "0"};
    CHECK_FALSE(try_parse_options(3, bad, StepInfo{"x", "y"}, flags).error.empty());
}

TEST_CASE("Sweep is due once per interval and says how long to wait") {
    Sweep sweep;
    auto now = Clock::now();
    CHECK_FALSE(sweep.due(now));
    int wait = sweep.wait_ms(now);
    CHECK(wait > 0);
    CHECK(wait <= 1000);
    auto later = now + Sweep::kEvery + 1ms;
    CHECK(sweep.wait_ms(later) == 0);
    CHECK(sweep.due(later));
    CHECK_FALSE(sweep.due(later));  // re-armed
    CHECK(sweep.wait_ms(later) >= 999);
}

TEST_CASE("Drain: nothing before a stop; then quiet connections close, busy ones get time") {
    Stats stats("t", "http");
    ConnTable table;
    Pair quiet, busy;
    table.add(std::move(quiet.a), Mode::http, stats);
    Conn& b = table.add(std::move(busy.a), Mode::http, stats);
    b.session.output().append("an answer still on its way");
    Drain drain;
    auto close = [&](Conn& c) { table.remove(c); };
    // Before a stop nothing happens (the stop flag is process-wide and sticky,
    // so this is checked first).
    REQUIRE_FALSE(stop_requested());
    CHECK_FALSE(drain.finished(table, close));
    CHECK_FALSE(drain.stopping());
    CHECK(table.size() == 2);

    request_stop();
    CHECK_FALSE(drain.finished(table, close));  // the busy one keeps the loop going
    CHECK(drain.stopping());
    CHECK(table.size() == 1);
    b.session.output().clear();
    CHECK(drain.finished(table, close));  // flushed: nothing left
    CHECK(table.size() == 0);
}
