// net.h — sockets: listen, accept, read, write, and the ready line.
//
// The steps call accept/select/poll/epoll themselves when that is the
// lesson; these helpers carry the error handling that is the same everywhere.
#pragma once

#include "buffer.h"
#include "fd.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace ladder {

struct ListenOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    bool reuseport = false;    // SO_REUSEPORT: several listeners share the port
    bool nonblocking = false;  // accept() returns EAGAIN instead of sleeping
    int backlog = 4096;        // the kernel caps it at net.core.somaxconn
};

// socket + SO_REUSEADDR + bind + listen, IPv4 or IPv6 by the host's form.
// Throws sys_error naming the call, the address and a hint for the usual
// causes (port in use: --port 0; out of descriptors: ulimit -n).
Fd listen_tcp(const ListenOptions& options);

// "127.0.0.1:8080" / "[::1]:8080" — the socket's own address.
std::string local_address(FdRef fd);

// Prints the ready line, "listening on HOST:PORT", on stdout and flushes.
// Exactly one line on stdout before the stats; everything else is stderr.
void announce_listening(FdRef listener);

void set_nonblocking(FdRef fd);

// Raises the soft RLIMIT_NOFILE to the hard limit: a server holds one
// descriptor per client, and the usual soft default (1024) is a guard for
// desktop programs. Returns the new soft limit.
long raise_fd_limit();

// Accepts one connection. Empty when there is none to take now:
//   EAGAIN       the queue is empty (non-blocking listener);
//   EMFILE / ENFILE  out of descriptors: the reserve-descriptor trick (see
//                net.cpp) accepts and closes that one client, so it is told
//                "no" at once instead of waiting in the queue, and a
//                level-triggered loop does not spin on a listener it cannot
//                drain; *refused is set, and more clients may be queued;
//   EINTR / EINVAL once stop_requested(): a stop woke the call (a listener
//                registered with wake_on_stop() was shut down).
// Retried inside: EINTR without a stop, and errors of the pending connection
// itself (ECONNABORTED, EPROTO, ENETUNREACH, ...: that client is gone, the
// next may be fine). Other errors throw. The new socket gets
// SOCK_CLOEXEC, plus SOCK_NONBLOCK when `nonblocking`.
std::optional<Fd> try_accept(FdRef listener, bool nonblocking = false,
                             bool* refused = nullptr);

// Result of one read or write. EINTR is retried inside; EAGAIN is a state,
// not an error; EOF is its own state (read only).
struct IoResult {
    enum Kind { ok, would_block, eof, error } kind;
    std::size_t bytes = 0;
    int err = 0;  // errno when kind == error (ECONNRESET, EPIPE, ...)
    // read_some, ok: the read took less than it asked for, so the socket
    // held no more bytes at that moment (a stream socket hands over all it
    // has, up to the size asked).
    bool drained = false;
};

// One read() of up to `max` bytes into the buffer's writable end.
IoResult read_some(FdRef fd, Buffer& in, std::size_t max = 64 * 1024);

// One send() of the buffer's readable bytes (MSG_NOSIGNAL: a vanished peer
// is EPIPE, never a SIGPIPE that kills the server); consumes what was sent.
IoResult write_some(FdRef fd, Buffer& out);

// Blocking sockets: writes everything (looping over short writes).
IoResult write_all(FdRef fd, Buffer& out);

// Bytes received on the socket that no read() has taken yet (FIONREAD).
std::size_t unread_bytes(FdRef fd) noexcept;

}  // namespace ladder
