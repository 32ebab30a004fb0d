// net.h — what every step does with sockets once step 01 has shown it.
//
// The calls that are a step's lesson stay in that step, in plain sight:
// socket/bind/listen in 01 (and 08, with SO_REUSEPORT), accept4, read and
// send in every step, select, poll, epoll_ctl and epoll_wait. What is here
// is the part that is the same everywhere: turning --host/--port into an
// address, the listening socket that steps after 01 no longer spell out,
// the ready line, the descriptor limit, and what to do when accept() runs
// out of descriptors.
#pragma once

#include "fd.h"
#include "stats.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <sys/socket.h>

namespace ladder {

// --host and --port as a socket address. IPv4 ("127.0.0.1") or IPv6
// ("::1", "[::1]"); "localhost" is 127.0.0.1. Anything else throws
// std::invalid_argument naming the flag.
struct Address {
    sockaddr_storage storage{};
    socklen_t length = 0;
    std::string text;  // "127.0.0.1:8080", "[::1]:8080": for error messages

    int family() const noexcept { return storage.ss_family; }
    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
};
Address parse_address(const std::string& host, std::uint16_t port);

// What to do about a failed socket/bind/listen: "another process has this
// port; choose one with --port N, or --port 0". Empty when there is no hint.
std::string_view hint_for(int err);

// Step 01's socket + SO_REUSEADDR + bind + listen, with the errors named
// (bind(127.0.0.1:8080): EADDRINUSE (Address already in use) — another
// process has this port; ...). `nonblocking`: accept() on it returns EAGAIN
// instead of sleeping, as an event loop needs. Throws std::system_error.
Fd listen_tcp(const std::string& host, std::uint16_t port, bool nonblocking);

// The backlog every listener asks for: the queue of finished handshakes
// nobody has accepted yet. The kernel caps it at net.core.somaxconn.
inline constexpr int kBacklog = 4096;

// "127.0.0.1:8080" / "[::1]:8080" — the socket's own address, and its port.
std::string local_address(FdRef fd);
std::uint16_t local_port(FdRef fd);

// Prints the ready line, "listening on HOST:PORT", on stdout and flushes.
// Exactly one line on stdout before the stats; everything else is stderr.
void announce_listening(FdRef listener);

// Raises the soft RLIMIT_NOFILE to the hard limit: a server holds one
// descriptor per client, and the usual soft default (1024) is a guard for
// desktop programs. Returns the new soft limit.
long raise_fd_limit();

// accept(2) on Linux reports errors of the pending connection itself
// (ECONNABORTED: the client reset it while it waited in the queue; EPROTO,
// ENETUNREACH, ...): that client is gone, the next one may be fine. True for
// those; a step then simply accepts again.
bool client_gone_before_accept(int err) noexcept;

// What to do when accept() fails with EMFILE or ENFILE: the spare
// descriptor (muduo's Acceptor, after libev's documentation). Out of
// descriptors, accept() leaves the client in the queue and the listener
// stays readable: a level-triggered loop would wake for it forever, and the
// client would wait for nothing. A spare descriptor, opened at start, lets
// the server say "no" instead: free the spare's slot, accept the client,
// close it at once (the client sees a clean close).
//
// Turns away one waiting client and counts it in stats.refused. True when
// the caller should accept again: it turned one away and more may be
// waiting, or a descriptor was free again by the time a client came (that
// one is not turned away: the next accept4 takes it). False when none was
// waiting (it looks for up to 100 ms first: a blocking accept() fails with
// EMFILE before it knows whether anyone is queued).
// Says what is happening on stderr, at most once a second.
//
// Several threads may call it, and the ordinary accepts take no lock. The
// slot is freed in a private copy of the descriptor table (see net.cpp),
// so no other thread's accept4 can take it first.
bool refuse_one_client(FdRef listener, int err, Counters& stats);

}  // namespace ladder
