#include "timeouts.h"

namespace ladder {

std::vector<Flag> Timeouts::flags() {
    return {
        {.name = "header-timeout",
         .help = "seconds a started request may take to arrive (default 10)",
         .target = &header_seconds, .min = 1, .max = 3600},
        {.name = "idle-timeout",
         .help = "seconds a connection may sit idle between requests (default 60)",
         .target = &idle_seconds, .min = 1, .max = 86400},
    };
}

int Sweep::wait_ms(Clock::time_point now) const {
    if (now >= next_) return 0;
    // Round up: waking a millisecond early would find nothing due.
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(next_ - now).count();
    return static_cast<int>(ms);
}

}  // namespace ladder
