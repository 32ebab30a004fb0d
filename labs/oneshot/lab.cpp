// Lab oneshot — threads sharing one epoll need EPOLLONESHOT.
// Claim:   N threads in epoll_wait on one epoll, a connection in EPOLLET:
//          bytes that arrive while one thread handles it wake another, and
//          two handlers run on one connection at once. With EPOLLONESHOT the
//          kernel disarms the descriptor after each event until the handler
//          re-arms it (EPOLL_CTL_MOD): one handler at a time, no byte lost.
// Test:    tests/labs -k oneshot; it also runs a ThreadSanitizer build
//          (lab-oneshot-tsan), which reports the data race in EPOLLET only.
// Observe: make lab-oneshot
#include "lab.h"

#include <atomic>
#include <cstdlib>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <thread>
#include <unistd.h>

using ladder::Fd;

namespace {

constexpr int kThreads = 4;
constexpr int kSends = 300;    // one byte each, from the client
constexpr int kGapUs = 200;    // between the client's sends
constexpr int kWorkUs = 1000;  // what a handler spends on what it read
constexpr std::uint64_t kStopTag = 1, kConnTag = 2;

struct Shared {
    bool oneshot = false;
    Fd ep, stop, conn;
    long long bytes = 0;           // plain on purpose: only one handler may touch it
    std::atomic<int> inside{0};    // handlers running on the connection now
    std::atomic<int> overlaps{0};  // times a handler found another already inside
    std::atomic<int> events{0};
};

void arm(Shared& s, int op) {
    epoll_event ev{EPOLLIN | EPOLLET | (s.oneshot ? EPOLLONESHOT : 0u), {.u64 = kConnTag}};
    lab::check(::epoll_ctl(s.ep.get(), op, s.conn.get(), &ev), "epoll_ctl(conn)");
}

// One event on the connection: read until EAGAIN (edge-triggered: no new
// event comes for bytes already there), then work on what was read.
void on_readable(Shared& s) {
    if (s.inside.fetch_add(1) > 0) s.overlaps.fetch_add(1);
    s.events.fetch_add(1);
    char buf[4096];
    bool eof = false;
    for (;;) {
        ssize_t n = ::read(s.conn.get(), buf, sizeof buf);
        if (n > 0)
            s.bytes += n;  // two handlers at once: a data race
        else if (n == 0)
            eof = true;
        else if (errno == EINTR)
            continue;
        else if (errno != EAGAIN)
            ladder::throw_sys("read");
        if (n <= 0) break;
    }
    lab::sleep_us(kWorkUs);
    s.inside.fetch_sub(1);
    if (eof)
        lab::check(::eventfd_write(s.stop.get(), 1), "eventfd_write(stop)");
    else if (s.oneshot)
        arm(s, EPOLL_CTL_MOD);  // disarmed since the event: re-arm
}

// Every thread waits on the same epoll; the stop eventfd (level-triggered,
// never read) wakes all of them at the end.
void wait_and_handle(Shared& s) {
    epoll_event ev[8];
    for (;;) {
        int n = ::epoll_wait(s.ep.get(), ev, 8, -1);
        if (n == -1 && errno == EINTR) continue;
        lab::check(n, "epoll_wait");
        for (int i = 0; i < n; ++i) {
            if (ev[i].data.u64 == kStopTag) return;
            on_readable(s);
        }
    }
}

void loop(Shared& s) {
    try {
        wait_and_handle(s);
    } catch (const std::exception& e) {
        std::_Exit(ladder::report_fatal("lab-oneshot", e));  // a thread cannot return it
    }
}

struct Result {
    int overlaps, events;
    long long bytes;
};

Result run(bool oneshot) {
    Shared s;
    s.oneshot = oneshot;
    Fd listener = lab::tcp_listener(16);
    Fd client = lab::tcp_connect(lab::port_of(listener));
    s.conn = Fd(lab::check(
        ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC),
        "accept4"));
    s.ep = Fd(lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1"));
    s.stop = Fd(lab::check(::eventfd(0, EFD_CLOEXEC), "eventfd"));
    epoll_event stop{EPOLLIN, {.u64 = kStopTag}};
    lab::check(::epoll_ctl(s.ep.get(), EPOLL_CTL_ADD, s.stop.get(), &stop),
               "epoll_ctl(stop)");
    arm(s, EPOLL_CTL_ADD);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) threads.emplace_back(loop, std::ref(s));
    for (int i = 0; i < kSends; ++i) {
        lab::check(::send(client.get(), "x", 1, MSG_NOSIGNAL), "send");
        lab::sleep_us(kGapUs);
    }
    client.reset();  // EOF: the handler that reads it stops every thread
    for (std::thread& t : threads) t.join();
    return {s.overlaps.load(), s.events.load(), s.bytes};
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run("lab-oneshot", argc, argv, [](lab::Facts& facts, auto& args) {
        std::string only = args.size() == 2 && args[0] == "--only" ? args[1] : "";
        std::printf(
            "%d threads on one epoll; a client sends %d bytes, one every %d us; each "
            "event costs a handler %d us.\n",
            kThreads, kSends, kGapUs, kWorkUs);
        bool lesson = true;
        for (bool oneshot : {false, true}) {
            const char* name = oneshot ? "oneshot" : "et";
            if (!only.empty() && only != name) continue;
            Result r = run(oneshot);
            std::printf(
                "  %-24s %4d events, %3d of them handled while another handler was "
                "still at work on the connection; bytes counted %lld of %d\n",
                oneshot ? "EPOLLET | EPOLLONESHOT:" : "EPOLLET:", r.events, r.overlaps,
                r.bytes, kSends);
            facts.add(std::string(name) + "_overlaps", r.overlaps);
            facts.add(std::string(name) + "_events", r.events);
            facts.add(std::string(name) + "_bytes", r.bytes);
            lesson =
                lesson && (oneshot ? r.overlaps == 0 && r.bytes == kSends : r.overlaps > 0);
        }
        facts.add("sends", kSends);
        lab::verdict(lesson,
                     "without EPOLLONESHOT handlers overlapped on one connection; "
                     "with it, never, and every byte was counted");
    });
}
