#include "signals.h"

#include "error.h"

#include <atomic>
#include <csignal>
#include <cstdint>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace ladder {

namespace {

constexpr int kWakeSlots = 8;

std::atomic<bool> stop_flag{false};
std::atomic<int> event_fd{-1};
std::atomic<int> wake_fds[kWakeSlots] = {-1, -1, -1, -1, -1, -1, -1, -1};

static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the signal handler may only touch lock-free atomics");

void on_stop_signal(int) { request_stop(); }

}  // namespace

void request_stop() noexcept {
    int saved = errno;
    stop_flag.store(true);
    if (int fd = event_fd.load(); fd >= 0) {
        std::uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
    }
    for (auto& slot : wake_fds)
        if (int fd = slot.load(); fd >= 0) ::shutdown(fd, SHUT_RD);
    errno = saved;
}

bool stop_requested() noexcept { return stop_flag.load(std::memory_order_relaxed); }

int stop_fd() noexcept { return event_fd.load(); }

void install_stop_handlers() {
    if (event_fd.load() < 0) {
        int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0) throw_sys("eventfd");
        event_fd.store(fd);
    }
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: blocked calls return EINTR
    if (::sigaction(SIGINT, &sa, nullptr) != 0) throw_sys("sigaction(SIGINT)");
    if (::sigaction(SIGTERM, &sa, nullptr) != 0) throw_sys("sigaction(SIGTERM)");
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    if (::sigaction(SIGPIPE, &ignore, nullptr) != 0) throw_sys("sigaction(SIGPIPE)");
}

int wake_on_stop(int fd) noexcept {
    for (int i = 0; i < kWakeSlots; ++i) {
        int expected = -1;
        if (wake_fds[i].compare_exchange_strong(expected, fd)) {
            if (stop_requested()) ::shutdown(fd, SHUT_RD);  // the stop came first
            return i;
        }
    }
    return -1;
}

void forget_on_stop(int slot) noexcept {
    if (slot >= 0 && slot < kWakeSlots) wake_fds[slot].store(-1);
}

void block_stop_signals_in_this_thread() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (int err = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0)
        throw_sys("pthread_sigmask(SIG_BLOCK)", err);
}

}  // namespace ladder
