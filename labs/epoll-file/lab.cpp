// Lab epoll-file — epoll watches pipes, sockets and event fds, not regular files.
// Claim:   epoll_ctl(EPOLL_CTL_ADD) on a regular file or a directory fails
//          with EPERM; a pipe, a socket, an eventfd, a timerfd, a signalfd
//          and another epoll are accepted, and each reports its event in
//          the same epoll_wait. poll() calls a regular file always ready.
// Observe: make lab-epoll-file; tests/labs -k epoll_file
#include "lab.h"

#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

using ladder::Fd;

namespace {

// The descriptors, in the order main() creates them.
enum { kFile, kDir, kPipe, kEvent, kTimer, kSignal, kListener, kEpoll };

struct Watched {
    const char* what;
    Fd fd;
    int add_error = 0;  // errno of EPOLL_CTL_ADD, 0 = accepted
    bool fired = false;
};

Fd regular_file() {
    char path[] = "/tmp/lab-epoll-file-XXXXXX";
    Fd fd(lab::check(::mkostemp(path, O_CLOEXEC), "mkstemp"));
    lab::check(::unlink(path), "unlink");  // the open descriptor keeps the file alive
    return fd;
}

Fd timer_in(long ms) {
    Fd fd(lab::check(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC), "timerfd_create"));
    itimerspec when{{0, 0}, {0, ms * 1000000}};
    lab::check(::timerfd_settime(fd.get(), 0, &when, nullptr), "timerfd_settime");
    return fd;
}

// SIGUSR1 blocked, so that it waits for signalfd instead of being delivered.
Fd usr1_signalfd() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    lab::check(::sigprocmask(SIG_BLOCK, &set, nullptr), "sigprocmask");
    return Fd(lab::check(::signalfd(-1, &set, SFD_CLOEXEC), "signalfd"));
}

// One of each kind of descriptor, in the enum's order. The pipe's write end
// goes to `pipe_in`; the inner epoll watches an eventfd of its own.
std::vector<Watched> open_all(Fd& pipe_in) {
    int ends[2];
    lab::check(::pipe2(ends, O_CLOEXEC), "pipe2");
    pipe_in.reset(ends[1]);
    std::vector<Watched> w;
    w.push_back({"regular file", regular_file()});
    w.push_back({"directory", Fd(lab::check(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC),
                                            "open(/)"))});
    w.push_back({"pipe", Fd(ends[0])});
    w.push_back({"eventfd", Fd(lab::check(::eventfd(0, EFD_CLOEXEC), "eventfd"))});
    w.push_back({"timerfd", timer_in(10)});
    w.push_back({"signalfd", usr1_signalfd()});
    w.push_back({"TCP listener", lab::tcp_listener(16)});
    w.push_back(
        {"another epoll", Fd(lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1"))});
    // An epoll is readable when its own set has an event: give it the eventfd.
    epoll_event inner{EPOLLIN, {.u64 = 0}};
    lab::check(::epoll_ctl(w[kEpoll].fd.get(), EPOLL_CTL_ADD, w[kEvent].fd.get(), &inner),
               "epoll_ctl(inner)");
    return w;
}

bool all_fired(const std::vector<Watched>& w) {
    for (std::size_t i = kPipe; i < w.size(); ++i)
        if (!w[i].fired) return false;
    return true;
}

// Makes every accepted descriptor ready (one write, signal or connection
// each; the timer fires by itself) and collects what epoll_wait reports.
void trigger_and_wait(const Fd& ep, std::vector<Watched>& w, const Fd& pipe_in) {
    lab::check(::write(pipe_in.get(), "x", 1), "write(pipe)");
    lab::check(::eventfd_write(w[kEvent].fd.get(), 1), "eventfd_write");
    lab::check(::raise(SIGUSR1), "raise(SIGUSR1)");
    Fd client = lab::tcp_connect(lab::port_of(w[kListener].fd));
    double deadline = lab::now_ms() + 500;
    epoll_event events[16];
    for (double left; !all_fired(w) && (left = deadline - lab::now_ms()) > 0;) {
        int n = lab::check(::epoll_wait(ep.get(), events, 16, int(left) + 1), "epoll_wait");
        for (int i = 0; i < n; ++i) w[events[i].data.u64].fired = true;
    }
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run("lab-epoll-file", argc, argv, [](lab::Facts& facts, auto&) {
        Fd pipe_in;
        std::vector<Watched> w = open_all(pipe_in);
        Fd ep(lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1"));
        for (std::size_t i = 0; i < w.size(); ++i) {
            epoll_event ev{EPOLLIN, {.u64 = i}};
            if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, w[i].fd.get(), &ev) == -1)
                w[i].add_error = errno;
        }
        trigger_and_wait(ep, w, pipe_in);
        for (Watched& x : w) {
            std::string outcome = x.add_error ? ladder::errno_text(x.add_error)
                                  : x.fired   ? "accepted, then reported EPOLLIN"
                                              : "accepted, never reported";
            std::printf("  %-14s epoll_ctl(ADD): %s\n", x.what, outcome.c_str());
            std::string key = x.what;
            for (char& c : key) c = c == ' ' ? '_' : c;
            facts.add(key + "_add", lab::errno_name(x.add_error));
            facts.add(key + "_fired", x.fired);
        }
        // poll() on a regular file does not wait: a file is always "ready".
        pollfd pfd{w[kFile].fd.get(), POLLIN | POLLOUT, 0};
        int n = lab::check(::poll(&pfd, 1, 1000), "poll");
        std::printf(
            "poll() on the regular file returned %d at once with%s%s: "
            "readiness means nothing for a file.\n",
            n, pfd.revents & POLLIN ? " POLLIN" : "",
            pfd.revents & POLLOUT ? " POLLOUT" : "");
        facts.add("file_poll_in", bool(pfd.revents & POLLIN));
        facts.add("file_poll_out", bool(pfd.revents & POLLOUT));
        bool lesson = w[kFile].add_error == EPERM && w[kDir].add_error == EPERM &&
                      (pfd.revents & POLLIN) && all_fired(w);
        lab::verdict(
            lesson,
            "a regular file and a directory refused with EPERM; a pipe, a socket, "
            "an eventfd, a timerfd, a signalfd and an epoll accepted and reported");
    });
}
