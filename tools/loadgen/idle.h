// idle.h — connections that connect and then say nothing (--idle K).
//
// They measure what an idle client costs a server: a select() or poll()
// loop pays for each one on every call; an epoll loop does not. They are
// opened before the measured load starts and watched (by the main thread)
// until it ends; the ones the server closes are counted as lost.
//
// Each idle socket is bound to one of the source addresses 127.0.0.1 …
// 127.0.0.N (every 127/8 address is this host). The kernel keeps about
// 28,000 ephemeral ports per (source, destination) pair; spreading over
// several sources keeps a large K clear of that limit even when earlier
// runs left ports in TIME_WAIT.
#pragma once

#include "fd.h"

#include <string>
#include <sys/socket.h>
#include <vector>

namespace loadgen {

class IdlePool {
public:
    IdlePool(const sockaddr_storage& address, socklen_t length, std::string target);

    // Opens `count` connections, at most kInFlight handshakes at a time, and
    // waits up to `timeout_s` for the last ones. Failures are counted, and
    // the first one explained on stderr.
    void open(int count, double timeout_s);
    // Waits up to `ms` for the server to close some; counts and drops them.
    void watch(int ms);

    int requested() const { return requested_; }
    int held() const { return held_; }
    int lost() const { return failed_ + closed_; }
    int sources() const { return sources_; }

private:
    void start_one(int i);

    sockaddr_storage address_;
    socklen_t length_;
    std::string target_;
    ladder::Fd epoll_;
    std::vector<ladder::Fd> sockets_;
    std::vector<char> connected_;
    int requested_ = 0, held_ = 0, connecting_ = 0, failed_ = 0, closed_ = 0;
    int sources_ = 1;
    int first_error_ = 0;
};

}  // namespace loadgen
