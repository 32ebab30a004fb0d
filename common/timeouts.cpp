#include "timeouts.h"

#include <algorithm>

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

void TimerWheel::Link::unlink() noexcept {
    if (!next_) return;
    prev_->next_ = next_;
    next_->prev_ = prev_;
    prev_ = next_ = nullptr;
}

TimerWheel::TimerWheel(Clock::time_point now) : swept_(second_of(now)) {
    for (auto& level : heads_)
        for (Link& head : level) head.prev_ = head.next_ = &head;
}

TimerWheel::~TimerWheel() {
    for (auto& level : heads_)
        for (Link& head : level) {
            while (head.next_ != &head) head.next_->unlink();
            head.prev_ = head.next_ = nullptr;
        }
}

void TimerWheel::splice_into(Link& to, Link& from) noexcept {
    if (from.next_ == &from) return;
    if (!to.next_) to.prev_ = to.next_ = &to;
    Link* first = from.next_;
    Link* last = from.prev_;
    first->prev_ = to.prev_;
    to.prev_->next_ = first;
    last->next_ = &to;
    to.prev_ = last;
    from.prev_ = from.next_ = &from;
}

void TimerWheel::file(Link& link, Clock::time_point deadline) noexcept {
    link.unlink();
    std::int64_t second = std::max(second_of(deadline), swept_);
    // The lowest level whose 64 slots, counted from now's, reach that second:
    // level 0 holds now's second and the 63 after it; a higher level, the
    // 64 spans after now's span (now's own has been cascaded down already).
    int level = 0;
    if (second - swept_ >= kSlots) {
        level = 1;
        while (level < kLevels &&
               (second >> (kBits * level)) - (swept_ >> (kBits * level)) > kSlots)
            ++level;
    }
    if (level == kLevels) {  // farther than the wheel: its last slot, filed again from there
        level = kLevels - 1;
        second = ((swept_ >> (kBits * level)) + kSlots) << (kBits * level);
    }
    link.second_ = second;
    Link& head = heads_[level][slot(second, level)];
    link.prev_ = head.prev_;
    link.next_ = &head;
    head.prev_->next_ = &link;
    head.prev_ = &link;
}

}  // namespace ladder

