#include "net.h"

#include "error.h"

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <stdexcept>
#include <sys/resource.h>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace ladder {

namespace {

std::string format_address(const sockaddr_storage& s) {
    char text[INET6_ADDRSTRLEN] = {};
    if (s.ss_family == AF_INET6) {
        auto* v6 = reinterpret_cast<const sockaddr_in6*>(&s);
        ::inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
        return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6->sin6_port));
    }
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&s);
    ::inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(v4->sin_port));
}

// A crowd at the fd limit would print a line per client; one a second is
// enough to say what is happening.
bool once_a_second() {
    static std::atomic<std::int64_t> last{0};
    std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::steady_clock::now().time_since_epoch()).count();
    std::int64_t before = last.load();
    return now != before && last.compare_exchange_strong(before, now);
}

}  // namespace

Address parse_address(const std::string& host, std::uint16_t port) {
    Address a;
    std::string bare = host;
    if (bare.size() >= 2 && bare.front() == '[' && bare.back() == ']')
        bare = bare.substr(1, bare.size() - 2);
    if (bare == "localhost") bare = "127.0.0.1";
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    if (::inet_pton(AF_INET, bare.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        a.length = sizeof(sockaddr_in);
    } else if (::inet_pton(AF_INET6, bare.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        a.length = sizeof(sockaddr_in6);
    } else {
        throw std::invalid_argument("--host '" + host +
                                    "' is not an IPv4 or IPv6 address (try 127.0.0.1)");
    }
    a.text = format_address(a.storage);
    return a;
}

std::string_view hint_for(int err) {
    switch (err) {
    case EADDRINUSE: return "another process has this port; choose one with --port N, or --port 0";
    case EADDRNOTAVAIL: return "this machine has no such address; try --host 127.0.0.1";
    case EACCES: return "ports below 1024 need root; use --port 8080 or --port 0";
    case EMFILE:
    case ENFILE: return "out of file descriptors; raise the limit with ulimit -n";
    default: return {};
    }
}

Fd listen_tcp(const std::string& host, std::uint16_t port, bool nonblocking) {
    Address addr = parse_address(host, port);
    int type = SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    Fd fd(::socket(addr.family(), type, 0));
    if (!fd) throw_sys("socket", errno, hint_for(errno));
    int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
        throw_sys("setsockopt(SO_REUSEADDR)");
    if (::bind(fd.get(), addr.get(), addr.length) != 0)
        throw_sys("bind(" + addr.text + ")", errno, hint_for(errno));
    if (::listen(fd.get(), kBacklog) != 0)
        throw_sys("listen(" + addr.text + ")", errno, hint_for(errno));
    return fd;
}

std::string local_address(FdRef fd) {
    sockaddr_storage s{};
    socklen_t len = sizeof s;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&s), &len) != 0)
        throw_sys("getsockname");
    return format_address(s);
}

std::uint16_t local_port(FdRef fd) {
    std::string address = local_address(fd);
    return static_cast<std::uint16_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

void announce_listening(FdRef listener) {
    std::printf("listening on %s\n", local_address(listener).c_str());
    std::fflush(stdout);
}

long raise_fd_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) throw_sys("getrlimit(RLIMIT_NOFILE)");
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) throw_sys("setrlimit(RLIMIT_NOFILE)");
    }
    return static_cast<long>(limit.rlim_cur);
}

bool client_gone_before_accept(int err) noexcept {
    switch (err) {
    case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN:
    case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH: case EPERM:
        return true;
    default:
        return false;
    }
}

namespace {

// The refusal needs one free slot in the descriptor table. A spare held
// open from the start keeps one; closing it would free the slot in the
// table every thread shares, and another thread's accept4 could take it
// first. So the accept runs on a short-lived thread with a private copy of
// the table (close_range with CLOSE_RANGE_UNSHARE copies the table, then
// closes the spare's number in the copy only): there, and nowhere else, the
// spare's number is free, and accept4 takes the lowest free number.
bool accept_and_close_in_private_table(FdRef listener, int spare) {
    bool refused = false;
    try {
        std::thread([&] {
            if (::close_range(unsigned(spare), unsigned(spare), CLOSE_RANGE_UNSHARE) != 0) return;
            int client = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
            refused = client >= 0;
            if (refused) ::close(client);  // the client sees a clean close: "no"
        }).join();  // its table goes with it; the spare stays open in ours
    } catch (const std::system_error&) {
        // No thread to be had: the client waits in the queue.
    }
    return refused;
}

// Opened before main() runs, while descriptors are plentiful.
class Reserve {
public:
    Reserve() : spare_(::open("/dev/null", O_RDONLY | O_CLOEXEC)) {}

    bool refuse_one(FdRef listener, int err, Counters& stats) {
        std::lock_guard lock(mutex_);
        bool refused = false;
        pollfd waiting{.fd = listener.get(), .events = POLLIN, .revents = 0};
        if (::poll(&waiting, 1, 100) == 1) {
            // While we waited a connection may have closed: with a descriptor
            // free again the client can be served, not turned away.
            if (Fd(::fcntl(listener.get(), F_DUPFD_CLOEXEC, 0)).valid()) return true;
            if (spare_) refused = accept_and_close_in_private_table(listener, spare_.get());
            // Not refused: no spare, no thread, or another accept took the
            // client. Wait a little, so that a level-triggered loop does not spin.
            if (!refused) ::poll(nullptr, 0, 10);
        }
        if (refused) bump(stats.refused);
        if (once_a_second())
            std::fprintf(stderr, "accept: %s — %s; raise ulimit -n\n", errno_text(err).c_str(),
                         refused ? "closing new connections" : "new clients wait in the queue");
        return refused;
    }

private:
    std::mutex mutex_;
    Fd spare_;
};

Reserve reserve;

}  // namespace

bool refuse_one_client(FdRef listener, int err, Counters& stats) {
    return reserve.refuse_one(listener, err, stats);
}

}  // namespace ladder
