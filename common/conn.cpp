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

}  // namespace ladder
