// shared.cpp — step 07: one listener in every worker's epoll set.
//
// The listener's wait queue holds one entry per epoll set that watches it,
// and a new connection runs every entry: each idle worker wakes up, the
// first to call accept4() gets the client, the others get EAGAIN (or are
// put back to sleep inside epoll_wait, which checks the listener again
// before it returns). That is the thundering herd.

#include "herd.h"

#include <sys/epoll.h>

namespace herd {

// Level-triggered: reported on every wait while clients are queued.
void setup_shared_lt(Loop& loop) { watch_listener(loop, EPOLLIN); }

// Edge-triggered changes how often a set reports the listener, not who wakes.
void setup_shared_et(Loop& loop) { watch_listener(loop, EPOLLIN | EPOLLET); }

// EPOLLEXCLUSIVE (Linux 4.5): this set's entry waits exclusively, so a
// connection wakes the first entry whose worker is idle in epoll_wait, then
// stops. The entries keep the order the sets were added in: at a low rate
// the same worker wins every time.
void setup_exclusive(Loop& loop) { watch_listener(loop, EPOLLIN | EPOLLEXCLUSIVE); }

const Variant kShared_lt{.name = "shared-lt", .open_listener = listen_nonblocking,
                         .setup = setup_shared_lt};
const Variant kShared_et{.name = "shared-et", .open_listener = listen_nonblocking,
                         .setup = setup_shared_et};
const Variant kExclusive{.name = "exclusive", .open_listener = listen_nonblocking,
                         .setup = setup_exclusive};

}  // namespace herd
