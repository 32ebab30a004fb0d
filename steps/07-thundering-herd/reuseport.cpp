// reuseport.cpp — step 07: a listener per worker, SO_REUSEPORT (step 08's idea).
//
// Each worker binds its own listener to the same port: the kernel hashes a
// new connection's addresses and ports to one listener of the group, so
// there is one queue and one waiter per connection. Worker 0 uses the
// listener main opened; the others open theirs on the port it got.

#include "error.h"
#include "herd.h"
#include "net.h"

#include <sys/epoll.h>
#include <sys/socket.h>

namespace herd {

// Step 01's socket, bind, listen, with SO_REUSEPORT set before bind().
ladder::Fd listen_reuseport(const ladder::Options& options, std::uint16_t port) {
    ladder::Address addr = ladder::parse_address(options.host, port);
    ladder::Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) ladder::throw_sys("socket", errno, ladder::hint_for(errno));
    int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
        ladder::throw_sys("setsockopt(SO_REUSEADDR)");
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
        ladder::throw_sys("setsockopt(SO_REUSEPORT)");
    if (::bind(fd.get(), addr.get(), addr.length) != 0)
        ladder::throw_sys("bind(" + addr.text + ")", errno, ladder::hint_for(errno));
    if (::listen(fd.get(), ladder::kBacklog) != 0)
        ladder::throw_sys("listen(" + addr.text + ")");
    return fd;
}

ladder::Fd open_first(const ladder::Options& options) {
    return listen_reuseport(options, options.port);
}

void setup_reuseport(Loop& loop) {
    if (loop.id > 0) {
        // With --port 0 the first listener got a port: the others join it.
        loop.own_listener = listen_reuseport(loop.herd.options,
                                             ladder::local_port(loop.herd.listener));
        loop.listener = loop.own_listener.get();
    }
    watch_listener(loop, EPOLLIN | EPOLLET);
}

const Variant kReuseport{.name = "reuseport", .open_listener = open_first,
                         .setup = setup_reuseport};

}  // namespace herd
