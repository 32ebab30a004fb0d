#include "conn.h"

#include <cassert>
#include <sys/ioctl.h>

namespace ladder {

Conn& ConnTable::add(Fd fd, Mode mode, Stats& stats) {
    auto index = static_cast<std::size_t>(fd.get());
    if (index >= by_fd_.size()) by_fd_.resize(index + 1);
    assert(!by_fd_[index] && "the kernel reused a descriptor we still hold");
    by_fd_[index] = std::make_unique<Conn>(std::move(fd), mode, stats);
    Conn& conn = *by_fd_[index];
    conn.serial = ++serials_;
    conn.wheel_ = wheel_.get();
    wheel_->file(conn, conn.deadline);  // none yet: the next sweep's
    ++count_;
    return conn;
}

void ConnTable::remove(Conn& conn) noexcept {
    auto index = static_cast<std::size_t>(conn.fd.get());
    assert(index < by_fd_.size() && by_fd_[index].get() == &conn);
    if (visiting_ == &conn) visiting_ = nullptr;
    by_fd_[index].reset();  // its link leaves the wheel
    --count_;
}

bool ConnTable::has_unread_bytes(FdRef fd) noexcept {
    int n = 0;
    return ::ioctl(fd.get(), FIONREAD, &n) == 0 && n > 0;
}

void Conn::rearm(Clock::time_point now, const Timeouts& timeouts) {
    bool mid = session.mid_request();
    if (!mid || !mid_ || session.answered() != answered_)
        deadline = timeouts.deadline(now, mid);
    mid_ = mid;
    answered_ = session.answered();
    // Later than where it is filed (the usual case, once per request): it
    // stays there. Earlier (a request has begun: the header timeout is the
    // shorter), it is filed again now, or the sweep would come too late.
    if (wheel_ && (!linked() || deadline < filed_at())) wheel_->file(*this, deadline);
}

}  // namespace ladder
