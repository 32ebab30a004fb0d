// signals.h — SIGINT/SIGTERM ask for a graceful stop; SIGPIPE is ignored.
//
// No signal handler catches the stop: install_stop_handlers() blocks SIGINT
// and SIGTERM (call it in main before any thread starts, so that every
// thread inherits the mask), and a stop signal then stays pending in the
// kernel, where stop_fd() — a signalfd — shows it: readable while one is
// pending. An event loop watches stop_fd() like a socket and calls
// request_stop() when it is reported. A signal cannot be lost between a
// check and a wait this way: it is a state the wait sees, not an event a
// handler must catch in time (a handler can be: a sanitizer runtime that
// defers handlers drops one that arrives early in a process's life).
//
// Threads asleep in accept() or read() wait for no descriptor but their
// own: watch_stop_in_a_thread() starts one thread that waits on stop_fd()
// for them, and request_stop() wakes them by shutting down every socket
// registered with wake_on_stop() (accept then fails with EINVAL, read
// returns 0). A child made by fork() has only the thread that forked: it
// calls handle_stop_signals_in_child(), which unblocks the signals and
// installs a handler that does the same (async-signal-safe).
//
// A stop has a timeline, the same in every step (nginx's graceful
// shutdown, with a bound):
//
//   stop ──── kDrainTime ──── kGiveUpTime
//   │ requests that start here are  │ requests that would start here │ what is left
//   │ served; every answer says     │ are answered 503, Connection:  │ is closed
//   │ Connection: close             │ close                          │
//
// so a server exits within kGiveUpTime plus the one request each thread may
// be in the middle of (a /work cannot be interrupted).
#pragma once

#include <chrono>

namespace ladder {

inline constexpr std::chrono::milliseconds kDrainTime{2000};
inline constexpr std::chrono::milliseconds kGiveUpTime{3000};

// Blocks SIGINT/SIGTERM in the calling thread, makes stop_fd(), ignores SIGPIPE.
void install_stop_handlers();

// Readable once SIGINT or SIGTERM is pending, or request_stop() was called
// (it stays readable: nothing reads it). -1 before install_stop_handlers().
int stop_fd() noexcept;

// Starts the stop: sets the flag and the stop's time (the first call only),
// shuts down the sockets registered with wake_on_stop(), and makes stop_fd()
// readable for every loop (it sends this process SIGTERM, which stays
// pending). Any thread may call it, any number of times.
void request_stop() noexcept;
bool stop_requested() noexcept;

// For code about to be busy without waiting (a slow request run inline by a
// loop): a loop sees a pending stop only when it waits again, so look now
// (one sigpending() call) and start the stop if SIGINT/SIGTERM is pending.
void notice_pending_stop() noexcept;

// For steps whose threads sleep in accept() or read(): a thread that waits
// on stop_fd() and then calls request_stop(). Call once, after
// install_stop_handlers().
void watch_stop_in_a_thread();

// In a child just made by fork(): SIGINT/SIGTERM are caught again, by a
// handler that does what request_stop() does (but sends no signal).
void handle_stop_signals_in_child();

// Where the stop is on its timeline (false before a stop).
bool drain_over() noexcept;      // kDrainTime has passed since the first stop request
bool drain_given_up() noexcept;  // kGiveUpTime has
// When kGiveUpTime is reached (steady_clock); the far future before a stop.
std::chrono::steady_clock::time_point give_up_at() noexcept;

// Unit tests only: as if no stop had been requested (the flag and the time;
// a signal already pending stays pending).
void forget_stop_for_testing() noexcept;

// Up to a handful of sockets that the stop shuts down for reading. Returns a
// slot; forget_on_stop(slot) before the socket is closed.
int wake_on_stop(int fd) noexcept;
void forget_on_stop(int slot) noexcept;

// Blocks SIGINT/SIGTERM in the calling thread (install_stop_handlers does it
// for main, and threads inherit it; for a thread started before that).
void block_stop_signals_in_this_thread();

}  // namespace ladder
