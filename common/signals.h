// signals.h — SIGINT/SIGTERM ask for a graceful stop; SIGPIPE is ignored.
//
// The handler only does async-signal-safe things: it sets a flag, makes
// stop_fd() readable (an eventfd an event loop can watch, so a stop that
// arrives just before epoll_wait still wakes it), and shuts down any socket
// registered with wake_on_stop() (so a thread asleep in accept() or read()
// wakes up: accept fails with EINVAL, read returns 0).
//
// The handler is installed without SA_RESTART: a blocking call interrupted
// by it returns EINTR, and the caller looks at stop_requested().
#pragma once

namespace ladder {

void install_stop_handlers();
bool stop_requested() noexcept;
void request_stop() noexcept;  // what the handler does; tests and threads may call it

// Readable (never drained) once a stop is requested. -1 before install.
int stop_fd() noexcept;

// Up to a handful of sockets that the stop shuts down for reading. Returns a
// slot; forget_on_stop(slot) before the socket is closed.
int wake_on_stop(int fd) noexcept;
void forget_on_stop(int slot) noexcept;

// Blocks SIGINT/SIGTERM in the calling thread (call before starting worker
// threads so the signal goes to the thread that handles it).
void block_stop_signals_in_this_thread();

}  // namespace ladder
