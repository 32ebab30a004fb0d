// mutex.cpp — step 07: nginx's accept_mutex.
//
// Only the worker holding the mutex has the listener in its epoll set, so a
// connection wakes one worker. try_lock, never lock: a worker that misses
// it serves its own clients and tries again within kAcceptMutexDelay. The
// holder accepts, then lets go before it serves, so a slow request does not
// keep the listener from the others. It tends to win again (it retries
// first): the load is not spread.

#include "herd.h"
#include "signals.h"

#include <algorithm>
#include <sys/epoll.h>

namespace herd {

constexpr int kAcceptMutexDelay = 100;  // ms until a worker without the mutex retries

void setup_mutex(Loop& loop) { loop.listen_events = EPOLLIN; }  // watched only while held

// [exercise:mutex]
// Takes the mutex if it is free, and brings the epoll set in line: the
// listener is in it exactly while this worker holds the mutex.
int take_accept_mutex(Loop& loop, int wait_ms) {
    loop.holding = !ladder::stop_requested() && loop.herd.accept_mutex.try_lock();
    if (loop.holding != loop.watching) {
        watch(loop, loop.holding ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, loop.listener,
              loop.listen_events);
        loop.watching = loop.holding;
    }
    return loop.holding ? wait_ms : std::min(wait_ms, kAcceptMutexDelay);
}

void release_accept_mutex(Loop& loop) {
    if (loop.holding) loop.herd.accept_mutex.unlock();
    loop.holding = false;
}
// [/exercise]

const Variant kMutex{.name = "mutex", .open_listener = listen_nonblocking,
                     .setup = setup_mutex, .before_wait = take_accept_mutex,
                     .after_accepts = release_accept_mutex};

}  // namespace herd
