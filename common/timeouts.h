// timeouts.h — closing connections that stall or sit idle.
//
// Two clocks per connection, as in nginx (client_header_timeout,
// keepalive_timeout): a request that has begun must finish arriving within
// the header timeout (slowloris), and a connection between requests may stay
// idle for the idle timeout. Event loops look for expired connections once
// a second (Sweep): O(connections) once a second costs microseconds and
// keeps timer bookkeeping off the per-event path.
#pragma once

#include "options.h"

#include <chrono>
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

}  // namespace ladder
