#include "fd.h"

#include <cerrno>
#include <unistd.h>

namespace ladder {

void Fd::reset(int fd) noexcept {
    if (fd_ >= 0 && fd_ != fd) {
        int saved = errno;
        ::close(fd_);
        errno = saved;
    }
    fd_ = fd;
}

}  // namespace ladder
