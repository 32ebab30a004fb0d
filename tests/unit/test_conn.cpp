// ConnTable, Drain (conn.h) and Timeouts, Sweep, TimerWheel (timeouts.h).
//
// The stop is process-wide: a case that requests one forgets it at its end
// (StopForThisCase), so the cases do not depend on their order.
#include <doctest/doctest.h>

#include "conn.h"
#include "signals.h"
#include "timeouts.h"

#include <cstdint>
#include <fcntl.h>
#include <memory>
#include <sys/resource.h>
#include <functional>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

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

const std::string kGet = "GET /hello HTTP/1.1\r\nHost: a\r\n\r\n";

// A stop, requested now and forgotten when the case (or the row) ends.
struct StopForThisCase {
    StopForThisCase() {
        REQUIRE_FALSE(stop_requested());
        request_stop();
    }
    ~StopForThisCase() { forget_stop_for_testing(); }
    StopForThisCase(const StopForThisCase&) = delete;
    StopForThisCase& operator=(const StopForThisCase&) = delete;
};

// What a loop does with a connection's answers: sends them all.
void send_all(Conn& c) { c.session.output().consume(c.session.output().size()); }

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

TEST_CASE("serial: a new one for every add, even when the kernel reuses the fd number") {
    Stats stats("t", "http");
    Pair lone;
    CHECK(Conn(std::move(lone.a), Mode::http, stats).serial == 0);  // 0: in no table

    ConnTable table;
    Pair p, q, r;
    Conn& cp = table.add(std::move(p.a), Mode::http, stats);
    Conn& cq = table.add(std::move(q.a), Mode::http, stats);
    Conn& cr = table.add(std::move(r.a), Mode::echo, stats);
    CHECK(cp.serial != 0);
    CHECK(cp.serial < cq.serial);
    CHECK(cq.serial < cr.serial);
    const std::uint64_t before = cr.serial;

    const int number = cq.fd.get();
    table.remove(cq);
    // The next descriptor gets the lowest free number at or above `number`:
    // `number` itself, as the kernel would give it to the next client.
    Fd reused(::fcntl(r.b.get(), F_DUPFD_CLOEXEC, number));
    REQUIRE(reused.get() == number);
    Conn& next = table.add(std::move(reused), Mode::http, stats);
    CHECK(table.find(number) == &next);
    CHECK(next.serial > before);  // not the removed connection's serial
    CHECK(cp.serial < cr.serial);  // the others keep theirs
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

namespace {

// A wheel entry with its deadline, as a Conn is one.
struct Timed : TimerWheel::Link {
    Clock::time_point deadline;
};

// A sweep as ConnTable::close_expired does it: the expired are counted and
// dropped, the others filed again by their deadline.
int sweep(TimerWheel& wheel, Clock::time_point now) {
    int expired = 0;
    wheel.advance(now, [&](TimerWheel::Link& link) {
        auto& t = static_cast<Timed&>(link);
        if (now < t.deadline) return wheel.file(t, t.deadline);
        ++expired;
    });
    return expired;
}

// A sweep one second on takes two level-0 slots, and one more slot for each
// higher level whose span starts at that second: the wheel counts seconds of
// the steady clock, so a level-1 cascade comes every 64 s and a level-2 one
// every 4096 s, wherever the test happens to start.
int cascades_at(Clock::time_point now) {
    const auto second = std::chrono::floor<std::chrono::seconds>(now.time_since_epoch()).count();
    int levels = 0;
    for (int bits = 6; bits < 24; bits += 6)
        if (second % (std::int64_t(1) << bits) == 0) ++levels;
    return levels;
}

// The second that has just begun: sweeps at whole seconds after it see
// exactly the deadlines of the seconds before them.
Clock::time_point whole_second() {
    return std::chrono::floor<std::chrono::seconds>(Clock::now());
}

}  // namespace

TEST_CASE("TimerWheel: 20,000 idle entries, a sweep with none expired looks at none") {
    // Now, and a start 30 s before a second where levels 1, 2 and 3 all cascade.
    const Clock::time_point before_cascades{std::chrono::seconds((std::int64_t(1) << 18) * 5 - 30)};
    for (const Clock::time_point t0 : {whole_second(), before_cascades}) {
        CAPTURE(t0.time_since_epoch().count());
        TimerWheel wheel(t0);
        std::vector<Timed> idle(20'000);
        for (Timed& t : idle) {
            t.deadline = t0 + 60s;  // the default idle timeout
            wheel.file(t, t.deadline);
        }
        for (int s = 1; s < 60; ++s) {
            auto visits = wheel.visits(), slots = wheel.slots();
            const auto now = t0 + std::chrono::seconds(s);
            CHECK(sweep(wheel, now) == 0);
            CHECK(wheel.visits() == visits);  // not one entry looked at
            CHECK(wheel.slots() - slots == 2 + cascades_at(now));
        }
        // Their second: each is looked at once, and all expire.
        auto visits = wheel.visits();
        CHECK(sweep(wheel, t0 + 60s) == 20'000);
        CHECK(wheel.visits() - visits == 20'000);
        for (Timed& t : idle) CHECK_FALSE(t.linked());
    }
}

TEST_CASE("TimerWheel: long timeouts cascade down a few times, then expire on their second") {
    const auto t0 = whole_second();
    TimerWheel wheel(t0);
    // One entry per span: level 0, 1, 2, 3, and past the whole wheel.
    const std::vector<std::chrono::seconds> after = {10s, 3600s, 86400s, 30 * 86400s,
                                                     400 * 86400s};
    std::vector<Timed> entries(after.size());
    for (std::size_t i = 0; i < after.size(); ++i) {
        entries[i].deadline = t0 + after[i];
        wheel.file(entries[i], entries[i].deadline);
    }
    // Sweep through 31 days one second at a time, as a loop would.
    std::vector<std::int64_t> expired_at(after.size(), -1);
    for (std::int64_t s = 1; s <= 31 * 86400; ++s) {
        auto now = t0 + std::chrono::seconds(s);
        wheel.advance(now, [&](TimerWheel::Link& link) {
            auto& t = static_cast<Timed&>(link);
            if (now < t.deadline) return wheel.file(t, t.deadline);
            expired_at[std::size_t(&t - entries.data())] = s;
        });
    }
    for (std::size_t i = 0; i + 1 < after.size(); ++i) {
        CAPTURE(i);
        CHECK(expired_at[i] == after[i].count());  // on its second: not early, not late
    }
    CHECK(expired_at.back() == -1);  // 400 days: still waiting
    CHECK(entries.back().linked());
    // 31 days of sweeps: two slots a sweep (the new second's, and the last
    // one's again), one more where a cascade is due; and the five entries
    // looked at only when a cascade moved them (at most once per level) or
    // when they expired.
    const std::uint64_t seconds = 31 * 86400;
    CHECK(wheel.slots() <= 2 * seconds + seconds / 63 + 8);
    CHECK(wheel.visits() <= 4 * after.size());
}

TEST_CASE("TimerWheel: a deadline moved earlier is found if filed again; later, it waits") {
    const auto t0 = whole_second();
    TimerWheel wheel(t0);
    Timed t;
    t.deadline = t0 + 60s;
    wheel.file(t, t.deadline);
    CHECK(t.filed_at() == t0 + 60s);
    // Later without filing: found at 60 s, filed again, expires at 90 s.
    t.deadline = t0 + 90s;
    CHECK(sweep(wheel, t0 + 59s) == 0);
    CHECK(wheel.visits() == 0);
    CHECK(sweep(wheel, t0 + 60s) == 0);
    CHECK(wheel.visits() == 1);
    CHECK(t.filed_at() == t0 + 90s);
    CHECK(sweep(wheel, t0 + 89s) == 0);
    CHECK(sweep(wheel, t0 + 90s) == 1);
    // Earlier: before where it is filed, so it must be filed again.
    t.deadline = t0 + 160s;
    wheel.file(t, t.deadline);
    t.deadline = t0 + 100s;
    CHECK(t.deadline < t.filed_at());
    wheel.file(t, t.deadline);
    CHECK(sweep(wheel, t0 + 100s) == 1);
}

TEST_CASE("TimerWheel: a deadline already past is the next sweep's; a jump sweeps the lot") {
    const auto t0 = whole_second();
    TimerWheel wheel(t0);
    Timed past, soon, far;
    past.deadline = t0 - 5s;
    soon.deadline = t0 + 500ms;  // this second: not yet due at the next sweep, due at the one after
    far.deadline = t0 + 3 * 365 * 86400s;
    for (Timed* t : {&past, &soon, &far}) wheel.file(*t, t->deadline);
    CHECK(sweep(wheel, t0 + 200ms) == 1);  // past; soon is not due yet
    CHECK(sweep(wheel, t0 + 400ms) == 0);  // the same second again: looks only at soon
    CHECK(sweep(wheel, t0 + 600ms) == 1);  // soon
    CHECK(far.linked());
    CHECK(sweep(wheel, t0 + 4 * 365 * 86400s) == 1);  // far past the wheel's span: one pass
    CHECK(wheel.slots() < 100);
}

TEST_CASE("TimerWheel: an entry destroyed while filed leaves its list; the wheel lets go of the rest") {
    const auto t0 = whole_second();
    auto wheel = std::make_unique<TimerWheel>(t0);
    Timed kept;
    {
        Timed gone;
        gone.deadline = kept.deadline = t0 + 2s;
        wheel->file(gone, gone.deadline);
        wheel->file(kept, kept.deadline);
    }
    CHECK(sweep(*wheel, t0 + 2s) == 1);  // only `kept`
    wheel->file(kept, t0 + 5s);
    wheel.reset();
    CHECK_FALSE(kept.linked());
}

TEST_CASE("close_expired: idle connections are looked at once when added, then only when due") {
    Stats stats("t", "http");
    // Descriptors are what the table indexes: as many as this process may
    // hold (20,000 on the reference machine's cap), duplicates of one socket.
    rlimit limit{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
    const int count = int(std::min<rlim_t>(10'000, limit.rlim_cur - 64));
    Pair p;
    ConnTable table;
    const auto t0 = whole_second() + 1s;
    Timeouts timeouts;
    std::vector<Conn*> conns;
    for (int i = 0; i < count; ++i) {
        Fd fd(::fcntl(p.a.get(), F_DUPFD_CLOEXEC, 0));
        REQUIRE(fd);
        Conn& c = table.add(std::move(fd), Mode::http, stats);
        c.deadline = timeouts.deadline(t0, false);  // as every step does after add()
        conns.push_back(&c);
    }
    int closed = 0;
    auto close = [&](Conn& c) {
        ++closed;
        table.remove(c);
    };
    auto visits = table.wheel().visits();
    table.close_expired(t0 + 1s, close);  // files each by its deadline
    CHECK(table.wheel().visits() - visits <= std::uint64_t(count));
    for (int s = 2; s < timeouts.idle_seconds; ++s) {
        visits = table.wheel().visits();
        table.close_expired(t0 + std::chrono::seconds(s), close);
        CHECK(table.wheel().visits() == visits);
    }
    CHECK(closed == 0);
    // One of them is busy: a request and its answer, each moving its deadline later.
    Conn& busy = *conns[std::size_t(count / 2)];
    busy.session.input().append(kGet);
    busy.session.process();
    send_all(busy);
    busy.rearm(t0 + 30s, timeouts);
    visits = table.wheel().visits();
    table.close_expired(t0 + std::chrono::seconds(timeouts.idle_seconds), close);
    CHECK(closed == count - 1);
    CHECK(table.wheel().visits() - visits == std::uint64_t(count));  // the expired, and busy once
    CHECK(table.find(busy.fd.get()) == &busy);
    table.close_expired(t0 + 30s + std::chrono::seconds(timeouts.idle_seconds), close);
    CHECK(closed == count);
}

TEST_CASE("rearm: a request begun files the shorter header deadline at once") {
    Stats stats("t", "http");
    Pair p;
    ConnTable table;
    const auto t0 = whole_second() + 1s;
    Timeouts timeouts;  // header 10 s, idle 60 s
    Conn& c = table.add(std::move(p.a), Mode::http, stats);
    c.deadline = timeouts.deadline(t0, false);
    int closed = 0;
    auto close = [&](Conn& conn) {
        ++closed;
        table.remove(conn);
    };
    table.close_expired(t0 + 1s, close);  // filed at 60 s
    c.session.input().append(kGet.substr(0, 5));
    c.session.process();
    c.rearm(t0 + 2s, timeouts);  // mid-request: 12 s, before where it was filed
    table.close_expired(t0 + 11s, close);
    CHECK(closed == 0);
    table.close_expired(t0 + 12s, close);
    CHECK(closed == 1);
}

TEST_CASE("close_expired: a connection close() leaves in the table is looked at again") {
    Stats stats("t", "http");
    Pair p;
    ConnTable table;
    const auto t0 = whole_second() + 1s;
    Conn& c = table.add(std::move(p.a), Mode::http, stats);
    c.deadline = t0;
    int calls = 0;
    for (int s = 1; s <= 3; ++s)
        table.close_expired(t0 + std::chrono::seconds(s), [&](Conn&) { ++calls; });  // closing later
    CHECK(calls == 3);  // once per sweep, as a walk over every connection would
    table.close_expired(t0 + 4s, [&](Conn& conn) { table.remove(conn); });
    CHECK(table.size() == 0);
}

TEST_CASE("a moved ConnTable keeps its wheel: its connections still expire") {
    Stats stats("t", "http");
    Pair p;
    ConnTable first;
    ConnTable table(std::move(first));
    const auto t0 = whole_second() + 1s;
    Conn& c = table.add(std::move(p.a), Mode::http, stats);
    c.deadline = t0 + 1s;
    int closed = 0;
    table.close_expired(t0 + 2s, [&](Conn& conn) {
        ++closed;
        table.remove(conn);
    });
    CHECK(closed == 1);
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
    ParseOutcome r = try_parse_options(4, argv, StepInfo{.summary = "y"}, flags);
    CHECK(r.error.empty());
    CHECK(t.header_seconds == 3);
    CHECK(t.idle_seconds == 9);
    const char* bad[] = {"x", "--idle-timeout", "0"};
    CHECK_FALSE(try_parse_options(3, bad, StepInfo{.summary = "y"}, flags).error.empty());
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


TEST_CASE("Drain before a stop: nothing closes and the queue is not taken") {
    REQUIRE_FALSE(stop_requested());
    Stats stats("t", "http");
    ConnTable table;
    Pair quiet;
    table.add(std::move(quiet.a), Mode::http, stats);
    Drain drain;
    int taken = 0;
    for (int pass = 0; pass < 3; ++pass)
        CHECK_FALSE(drain.finished(table, [&](Conn& c) { table.remove(c); }, [&] { ++taken; }));
    CHECK(taken == 0);
    CHECK_FALSE(drain.stopping());
    CHECK(table.size() == 1);
}

TEST_CASE("Drain once stopped: the queue is taken once, quiet connections close at once") {
    Stats stats("t", "http");
    for (int quiet : {0, 1, 3}) {
        CAPTURE(quiet);
        ConnTable table;
        std::vector<Pair> pairs(static_cast<std::size_t>(quiet));
        std::vector<int> fds;
        for (Pair& p : pairs) {
            fds.push_back(p.a.get());
            table.add(std::move(p.a), Mode::http, stats);
        }
        Drain drain;
        int taken = 0, closed = 0;
        auto close = [&](Conn& c) {
            ++closed;
            table.remove(c);
        };
        StopForThisCase stop;
        CHECK(drain.finished(table, close, [&] { ++taken; }));  // nothing in flight
        CHECK(drain.stopping());
        CHECK(taken == 1);
        CHECK(closed == quiet);
        CHECK(table.size() == 0);
        for (int fd : fds) CHECK_FALSE(is_open(fd));
        CHECK(drain.finished(table, close, [&] { ++taken; }));
        CHECK(taken == 1);  // once, on the pass the stop was first seen
    }
}

TEST_CASE("Drain: a connection with something in flight is served until it is quiet") {
    struct Row {
        const char* what;
        // Puts the connection in that state before the stop, as a loop would have.
        std::function<void(Conn&, Fd& peer)> busy;
        // What the loop does for it next; then it has nothing in flight.
        std::function<void(Conn&, Fd& peer)> serve;
    };
    const Row rows[] = {
        {"an answer not yet sent",
         [](Conn& c, Fd&) {
             c.session.input().append(kGet);
             c.session.process();
         },
         [](Conn& c, Fd&) { send_all(c); }},
        {"a request half read",
         [](Conn& c, Fd&) {
             c.session.input().append(kGet.substr(0, 9));
             c.session.process();
         },
         [](Conn& c, Fd&) {
             c.session.input().append(kGet.substr(9));
             c.session.process();
             send_all(c);
         }},
        {"a request in the socket that no read() has taken",
         [](Conn&, Fd& peer) {
             REQUIRE(::write(peer.get(), kGet.data(), kGet.size()) == ssize_t(kGet.size()));
         },
         [](Conn& c, Fd&) {
             char* room = c.session.input().writable(kReadSize).data();
             ssize_t n = ::read(c.fd.get(), room, kReadSize);
             REQUIRE(n == ssize_t(kGet.size()));
             c.session.input().commit(std::size_t(n));
             c.session.process();
             send_all(c);
         }},
        {"a job out with the offload hook",
         [](Conn& c, Fd&) {
             c.session.set_offload([](const SlowJob&) { return true; });
             c.session.input().append("GET /work?ms=1 HTTP/1.1\r\nHost: a\r\n\r\n");
             c.session.process();
             REQUIRE(c.session.waiting_for_job());
         },
         [](Conn& c, Fd&) {
             c.session.complete("worked 1 ms\n");
             send_all(c);
         }},
    };
    for (const Row& row : rows) {
        std::string what = row.what;
        CAPTURE(what);
        Stats stats("t", "http");
        ConnTable table;
        Pair quiet, busy;
        table.add(std::move(quiet.a), Mode::http, stats);
        Conn& b = table.add(std::move(busy.a), Mode::http, stats);
        row.busy(b, busy.b);
        Drain drain;
        int taken = 0;
        auto close = [&](Conn& c) { table.remove(c); };
        auto take_queue = [&] { ++taken; };

        StopForThisCase stop;
        CHECK_FALSE(drain.finished(table, close, take_queue));
        CHECK(table.size() == 1);  // the quiet one is gone
        CHECK(table.find(b.fd.get()) == &b);
        CHECK_FALSE(drain.finished(table, close, take_queue));  // still in flight
        row.serve(b, busy.b);
        CHECK(drain.finished(table, close, take_queue));
        CHECK(table.size() == 0);
        CHECK(taken == 1);
    }
}
