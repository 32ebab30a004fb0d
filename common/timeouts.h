// timeouts.h — closing connections that stall or sit idle.
//
// Two clocks per connection, as in nginx (client_header_timeout,
// keepalive_timeout): a request that has begun must finish arriving within
// the header timeout (slowloris), and a connection between requests may stay
// idle for the idle timeout. Event loops look for expired connections once
// a second (Sweep); a TimerWheel hands that look only the connections whose
// second has come, so a second with none expired costs the same at 10 or at
// 100,000 idle connections (labs/c100k measures it).
#pragma once

#include "options.h"

#include <chrono>
#include <cstdint>
#include <ctime>
#include <vector>

namespace ladder {

// The clock of every deadline here: the kernel's coarse monotonic clock.
// Timeouts are whole seconds, so its resolution (one tick, 1-4 ms) is
// plenty, and reading it is a few loads from the vDSO instead of a TSC read
// and its arithmetic: an event loop reads the clock for every request it
// answers (measured: CLOCK_MONOTONIC was 0.7 % of step 06's CPU at 50
// connections, more than the loop's own code).
struct Clock {
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<Clock>;
    static constexpr bool is_steady = true;

    static time_point now() noexcept {
        timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
        return time_point(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
    }
};

struct Timeouts {
    int header_seconds = 10;
    int idle_seconds = 60;

    // The deadline of a connection that just made progress.
    Clock::time_point deadline(Clock::time_point now, bool mid_request) const {
        return now + std::chrono::seconds(mid_request ? header_seconds : idle_seconds);
    }

    // --header-timeout S and --idle-timeout S, bound to the fields above.
    std::vector<Flag> flags();
};

// When the next look for expired connections is due.
class Sweep {
public:
    static constexpr std::chrono::milliseconds kEvery{1000};

    // True (and re-armed) when a sweep is due now.
    bool due(Clock::time_point now) {
        if (now < next_) return false;
        next_ = now + kEvery;
        return true;
    }
    // Milliseconds the wait call may sleep before the sweep is due (>= 0).
    int wait_ms(Clock::time_point now) const;

private:
    Clock::time_point next_ = Clock::now() + kEvery;
};

// Deadlines filed by their second, so that a sweep looks only at the
// seconds that have come: a hierarchical timing wheel (Varghese and Lauck,
// 1987; the Linux kernel's timers cascaded this way until 4.8).
//
//   level 0: 64 slots of 1 s      the next 64 seconds, one slot each
//   level 1: 64 slots of 64 s     up to ~68 minutes ahead
//   level 2: 64 slots of 4096 s   up to ~3 days
//   level 3: 64 slots of 2^18 s   up to ~194 days; beyond, the farthest slot
//
// An entry sits in the lowest level whose slots still tell its second
// apart; when a higher slot's turn comes, its entries are filed again, one
// level down (cascading: at most three moves in an entry's life, whatever
// the timeout). The entries are links embedded in what they time (a Conn):
// filing, moving and removing are a few pointer writes, never an allocation.
//
//                 heads_[0][s % 64]
//   ... ─ slot ─▶ [head] ⇄ conn ⇄ conn ⇄ conn ⇄ (back to head)   circular, doubly linked
//
// Thread rule: a wheel and its links belong to one loop thread.
class TimerWheel {
public:
    // An entry's place in the wheel, embedded in the object it times.
    // Destroying a link takes it out of its list.
    class Link {
    public:
        Link() = default;
        Link(const Link&) = delete;
        Link& operator=(const Link&) = delete;
        ~Link() { unlink(); }

        bool linked() const noexcept { return next_ != nullptr; }
        // The second the entry is filed under: a sweep looks at it then, or
        // earlier (a cascade). A deadline moved before it must be filed again.
        Clock::time_point filed_at() const noexcept {
            return Clock::time_point(std::chrono::seconds(second_));
        }

    private:
        friend class TimerWheel;
        void unlink() noexcept;

        Link* prev_ = nullptr;
        Link* next_ = nullptr;
        std::int64_t second_ = 0;
    };

    // Deadlines before now's second are filed under it: the next sweep's.
    explicit TimerWheel(Clock::time_point now = Clock::now());
    TimerWheel(const TimerWheel&) = delete;
    TimerWheel& operator=(const TimerWheel&) = delete;
    ~TimerWheel();  // the entries still filed are let go, not destroyed

    // Files (or moves) `link` so that the first sweep at or after its
    // deadline's second finds it (a deadline already past: the next sweep).
    void file(Link& link, Clock::time_point deadline) noexcept;

    // Sweeps every second up to now's, in order: hands visit(Link&) each
    // entry filed under them (and each entry of a cascading slot), already
    // unlinked; the visitor files it again or destroys it. So every entry
    // whose deadline is at or before now is handed over. Work: one slot per
    // second passed, plus now's slot again (filed into since the last
    // sweep), plus the entries handed over; never the others.
    template <class Visit>
    void advance(Clock::time_point now, Visit visit) {
        std::int64_t target = second_of(now);
        if (target < swept_) return;
        if (target - swept_ > kSpan) {  // past the whole wheel: everything is looked at
            Link batch;
            for (auto& level : heads_)
                for (Link& head : level) splice_into(batch, head);
            swept_ = target;
            return hand_over(batch, visit);
        }
        take(heads_[0][slot(swept_, 0)], visit);
        while (swept_ < target) {
            std::int64_t second = swept_ + 1;
            // A higher slot whose span starts now is cascaded first, while
            // `second` is still to come: its entries due now land in level 0.
            for (int level = kLevels - 1; level > 0; --level)
                if ((second & ((std::int64_t(1) << (kBits * level)) - 1)) == 0)
                    take(heads_[level][slot(second, level)], visit);
            swept_ = second;
            take(heads_[0][slot(second, 0)], visit);
        }
    }

    // The work done so far, counted (tests/unit/test_conn.cpp checks it).
    std::uint64_t visits() const noexcept { return visits_; }  // entries handed to a visitor
    std::uint64_t slots() const noexcept { return slots_; }    // slots taken, empty or not

private:
    static constexpr int kBits = 6;
    static constexpr std::int64_t kSlots = std::int64_t(1) << kBits;
    static constexpr int kLevels = 4;
    static constexpr std::int64_t kSpan = std::int64_t(1) << (kBits * kLevels);

    static std::int64_t second_of(Clock::time_point t) noexcept {
        return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
    }
    static std::size_t slot(std::int64_t second, int level) noexcept {
        return std::size_t((second >> (kBits * level)) & (kSlots - 1));
    }
    static void splice_into(Link& to, Link& from) noexcept;  // moves from's entries to to's tail

    template <class Visit>
    void take(Link& head, Visit& visit) {
        ++slots_;
        if (head.next_ == &head) return;
        Link batch;
        splice_into(batch, head);
        hand_over(batch, visit);
    }
    template <class Visit>
    void hand_over(Link& batch, Visit& visit) {
        while (batch.next_ && batch.next_ != &batch) {
            Link& entry = *batch.next_;
            entry.unlink();
            ++visits_;
            visit(entry);
        }
    }

    Link heads_[kLevels][kSlots];  // each a list's head: an empty list points to itself
    std::int64_t swept_;           // the second of the last sweep (its slot may fill again)
    std::uint64_t visits_ = 0, slots_ = 0;
};

}  // namespace ladder
