#include "idle.h"

#include "error.h"
#include "signals.h"
#include "worker.h"  // now_ns

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <netinet/in.h>
#include <sys/epoll.h>

namespace loadgen {

namespace {

constexpr int kInFlight = 1024;   // handshakes under way at once
constexpr int kPerSource = 2000;  // idle sockets per source address
constexpr int kMaxSources = 250;  // 127.0.0.1 … 127.0.0.250

bool is_loopback_v4(const sockaddr_storage& a) {
    if (a.ss_family != AF_INET) return false;
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
}

}  // namespace

IdlePool::IdlePool(const sockaddr_storage& address, socklen_t length, std::string target)
    : address_(address),
      length_(length),
      target_(std::move(target)),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) ladder::throw_sys("epoll_create1");
}

void IdlePool::start_one(int i) {
    ladder::Fd fd(
        ::socket(address_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    auto fail = [&](int err) {
        ++failed_;
        if (!first_error_) first_error_ = err;
    };
    if (!fd) return fail(errno);
    if (sources_ > 1) {
        sockaddr_in source{};
        source.sin_family = AF_INET;
        source.sin_addr.s_addr = htonl((127u << 24) | unsigned(1 + i % sources_));
        // Choose the port at connect(), from the whole 4-tuple, not at bind()
        // from the address alone: otherwise each source gets only one set of
        // ports for every destination together.
        int on = 1;
        if (::setsockopt(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on))
            return fail(errno);
        if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&source), sizeof source) != 0)
            return fail(errno);
    }
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLRDHUP;
    ev.data.u64 = std::uint64_t(i);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) return fail(errno);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address_), length_) != 0 &&
        errno != EINPROGRESS)
        return fail(errno);
    sockets_[std::size_t(i)] = std::move(fd);
    ++connecting_;
}

void IdlePool::open(int count, double timeout_s) {
    requested_ = count;
    if (count == 0) return;
    if (is_loopback_v4(address_))
        sources_ = std::clamp(count / kPerSource + 1, 1, kMaxSources);
    sockets_.resize(std::size_t(count));
    connected_.assign(std::size_t(count), 0);
    std::int64_t give_up = now_ns() + std::int64_t(timeout_s * 1e9);
    std::vector<epoll_event> events(512);
    int next = 0;
    while (next < count || connecting_ > 0) {
        while (next < count && connecting_ < kInFlight) start_one(next++);
        std::int64_t now = now_ns();
        if (now >= give_up || ladder::stop_requested()) break;
        int n = ::epoll_wait(
            epoll_.get(), events.data(), int(events.size()),
            int(std::min<std::int64_t>((give_up - now) / 1'000'000 + 1, 100)));
        if (n < 0 && errno != EINTR) ladder::throw_sys("epoll_wait");
        for (int k = 0; k < n; ++k) {
            auto i = std::size_t(events[std::size_t(k)].data.u64);
            ladder::Fd& fd = sockets_[i];
            if (connected_[i]) {  // connected earlier, and already closed by the server
                fd.reset();
                --held_;
                ++closed_;
                continue;
            }
            --connecting_;
            if (events[std::size_t(k)].events & (EPOLLERR | EPOLLHUP)) {
                int err = 0;
                socklen_t len = sizeof err;
                ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
                ++failed_;
                if (!first_error_) first_error_ = err ? err : ECONNREFUSED;
                fd.reset();
                continue;
            }
            // Connected: from now on only a close by the server is news.
            epoll_event ev{};
            ev.events = EPOLLRDHUP;
            ev.data.u64 = i;
            if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd.get(), &ev) != 0)
                ladder::throw_sys("epoll_ctl(MOD, idle socket)");
            connected_[i] = 1;
            ++held_;
        }
    }
    // Handshakes still pending at the deadline (a full accept queue drops
    // SYNs, and the retry comes a second later, then three...) count as failed.
    for (std::size_t i = 0; i < sockets_.size(); ++i) {
        if (sockets_[i] && !connected_[i]) {
            sockets_[i].reset();
            ++failed_;
            if (!first_error_) first_error_ = ETIMEDOUT;
        }
    }
    connecting_ = 0;
    if (failed_ > 0)
        std::fprintf(
            stderr, "loadgen: %d of %d idle connections to %s failed; first: %s\n",
            failed_, count, target_.c_str(), ladder::errno_text(first_error_).c_str());
    watch(0);
    std::fprintf(stderr,
                 "loadgen: holding %d idle connections (from %d source address%s)\n",
                 held_, sources_, sources_ > 1 ? "es" : "");
    if (closed_ > 0)
        std::fprintf(stderr, "loadgen: the server closed %d idle connections at once\n",
                     closed_);
}

void IdlePool::watch(int ms) {
    epoll_event events[256];
    int n = 0;
    do {
        n = ::epoll_wait(epoll_.get(), events, 256, ms);
        if (n < 0 && errno != EINTR) ladder::throw_sys("epoll_wait");
        for (int k = 0; k < n; ++k) {
            auto i = std::size_t(events[k].data.u64);
            if (!sockets_[i]) continue;
            // The server closed (or reset) it: an idle client it dropped.
            sockets_[i].reset();
            --held_;
            ++closed_;
        }
        ms = 0;  // then take whatever else is already there
    } while (n == 256);
}

}  // namespace loadgen
