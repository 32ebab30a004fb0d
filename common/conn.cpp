#include "conn.h"

#include <cassert>

namespace ladder {

Conn& ConnTable::add(Fd fd, Mode mode, Stats& stats) {
    auto index = static_cast<std::size_t>(fd.get());
    if (index >= by_fd_.size()) by_fd_.resize(index + 1);
    assert(!by_fd_[index] && "the kernel reused a descriptor we still hold");
    by_fd_[index] = std::make_unique<Conn>(std::move(fd), mode, stats);
    ++count_;
    return *by_fd_[index];
}

void ConnTable::remove(Conn& conn) noexcept {
    auto index = static_cast<std::size_t>(conn.fd.get());
    assert(index < by_fd_.size() && by_fd_[index].get() == &conn);
    by_fd_[index].reset();
    --count_;
}

Want Conn::answer(const Timeouts& timeouts) {
    // The session holds answers back while its output is above the
    // high-water mark; when one write empties the output, answer those too
    // now: an edge-triggered loop gets no further writable event for a
    // socket that still has room.
    for (;;) {
        session.process();
        if (write_some(fd, session.output()).kind == IoResult::error) session.abort();
        if (!session.output().empty() || !session.want().write || session.done()) break;
    }
    rearm(Clock::now(), timeouts);
    return session.want();
}

void Conn::rearm(Clock::time_point now, const Timeouts& timeouts) {
    bool mid = session.mid_request();
    if (!mid || !mid_ || session.answered() != answered_)
        deadline = timeouts.deadline(now, mid);
    mid_ = mid;
    answered_ = session.answered();
}

}  // namespace ladder
