// acceptor.cpp — step 07: one thread accepts, the workers only serve.
//
// The acceptor alone sleeps on the listener (in poll(), then accept4 until
// EAGAIN), so nobody else is woken; it deals the connections round-robin,
// each through the worker's inbox (a vector under a mutex, and an eventfd in
// the worker's epoll set).
// The price: a hop between threads per client, and one thread that every
// new connection waits for. Step 09 builds on this.

#include "error.h"
#include "herd.h"
#include "net.h"
#include "signals.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace herd {

void setup_acceptor(Loop& loop) {
    loop.listener = -1;  // this worker never accepts
    loop.inbox.wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!loop.inbox.wake) ladder::throw_sys("eventfd");
    watch(loop, EPOLL_CTL_ADD, loop.inbox.wake.get(), EPOLLIN);
}

// [exercise:acceptor]
// Appends under the inbox's mutex, then adds 1 to its eventfd (EAGAIN: the
// counter is at its maximum, and the worker is due to wake anyway).
void hand_over(Loop& loop, ladder::Fd fd) {
    std::lock_guard lock(loop.inbox.mutex);
    loop.inbox.fds.push_back(std::move(fd));
    std::uint64_t one = 1;
    if (::write(loop.inbox.wake.get(), &one, sizeof one) < 0 && errno != EAGAIN)
        ladder::throw_sys("write(eventfd)");
}

// The main thread, while the workers run. It sleeps in poll() on the
// listener and the stop's eventfd, and takes every client queued (accept4
// until EAGAIN). A stop ends it after one more look: the clients already
// queued are handed over, not reset when the listener closes.
void run_acceptor(Herd& herd, Loops& loops) {
    pollfd fds[2] = {{herd.listener.get(), POLLIN, 0}, {ladder::stop_fd(), POLLIN, 0}};
    for (std::size_t next = 0;;) {
        bool stopping = ladder::stop_requested();
        if (!stopping && ::poll(fds, 2, -1) < 0 && errno != EINTR) ladder::throw_sys("poll");
        ladder::bump(herd.stats.counters().wakeups);
        if (fds[1].revents & POLLIN) ladder::request_stop();  // a signalfd: SIGTERM is pending
        for (;;) {
            int fd = ::accept4(herd.listener.get(), nullptr, nullptr,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd >= 0) {
                ladder::bump(herd.stats.counters().accepted);
                hand_over(*loops[next], ladder::Fd(fd));
                next = (next + 1) % loops.size();
            } else if (errno == EAGAIN) {
                break;
            } else if (errno == EMFILE || errno == ENFILE) {
                if (!ladder::refuse_one_client(herd.listener, errno, herd.stats.counters()))
                    break;
            } else if (errno != EINTR && !ladder::client_gone_before_accept(errno)) {
                ladder::throw_sys("accept4");
            }
        }
        if (stopping) return;
    }
}
// [/exercise]

const Variant kAcceptor{.name = "acceptor", .open_listener = listen_nonblocking,
                        .setup = setup_acceptor, .run_main = run_acceptor};

}  // namespace herd
