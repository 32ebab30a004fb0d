#include "net.h"

#include "error.h"
#include "signals.h"

#include <arpa/inet.h>
#include <cassert>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <shared_mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace ladder {

namespace {

struct Address {
    sockaddr_storage storage{};
    socklen_t length = 0;
};

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
    return a;
}

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

void set_option(FdRef fd, int level, int name, const char* what) {
    int on = 1;
    if (::setsockopt(fd.get(), level, name, &on, sizeof on) != 0)
        throw_sys(std::string("setsockopt(") + what + ")");
}

// The reserve descriptor (muduo's Acceptor, after libev's documentation):
// keep one spare descriptor open. When accept() fails with EMFILE the
// connection stays in the queue and the listener stays readable, so a
// level-triggered loop would wake forever. Closing the spare frees one slot:
// accept the client, close it (the client sees a clean close, not a hang),
// and reopen the spare.
std::mutex reserve_mutex;
Fd reserve_fd;

// Threads that accept in one process race for descriptor numbers: between
// shed_one's close(reserve) and its accept, another thread's accept could
// take the freed number, and the reserve could not be reopened — the next
// EMFILE would leave its clients waiting. Accepts share this gate; the
// close-accept-reopen holds it alone.
std::shared_mutex accept_gate;

void open_reserve() {
    if (!reserve_fd) reserve_fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

bool shed_one(FdRef listener) {
    std::lock_guard lock(reserve_mutex);
    open_reserve();  // a reopen that failed earlier gets another chance
    // A blocking accept() takes a descriptor before it sleeps, so EMFILE
    // says nothing about whether a client is waiting: wait a little for
    // one (a blocking accept loop must not spin at the limit either).
    pollfd waiting{.fd = listener.get(), .events = POLLIN, .revents = 0};
    if (!reserve_fd || ::poll(&waiting, 1, 100) != 1) return false;
    std::unique_lock alone(accept_gate);
    reserve_fd.reset();
    Fd victim(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    bool shed = victim.valid();
    victim.reset();
    open_reserve();
    return shed;
}

// accept(2): Linux passes on errors of the pending connection itself; they
// end that connection, not the server.
bool connection_error(int err) {
    switch (err) {
    case ECONNABORTED: case EPROTO: case ENETDOWN: case ENOPROTOOPT: case EHOSTDOWN:
    case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH: case EPERM:
        return true;
    default:
        return false;
    }
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

Fd listen_tcp(const ListenOptions& o) {
    Address addr = parse_address(o.host, o.port);
    bool v6 = addr.storage.ss_family == AF_INET6 && o.host.front() != '[';
    std::string where = (v6 ? "[" + o.host + "]" : o.host) + ":" + std::to_string(o.port);
    int type = SOCK_STREAM | SOCK_CLOEXEC | (o.nonblocking ? SOCK_NONBLOCK : 0);
    Fd fd(::socket(addr.storage.ss_family, type, 0));
    if (!fd) {
        int err = errno;
        throw_sys("socket", err, hint_for(err));
    }
    // A restarted server can bind while old connections sit in TIME_WAIT.
    set_option(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR");
    if (o.reuseport) set_option(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT");
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr.storage), addr.length) != 0) {
        int err = errno;
        throw_sys("bind(" + where + ")", err, hint_for(err));
    }
    if (::listen(fd.get(), o.backlog) != 0) {
        int err = errno;
        throw_sys("listen(" + where + ")", err, hint_for(err));
    }
    {
        std::lock_guard lock(reserve_mutex);
        open_reserve();
    }
    return fd;
}

std::string local_address(FdRef fd) {
    sockaddr_storage s{};
    socklen_t len = sizeof s;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&s), &len) != 0)
        throw_sys("getsockname");
    return format_address(s);
}

void announce_listening(FdRef listener) {
    std::printf("listening on %s\n", local_address(listener).c_str());
    std::fflush(stdout);
}

void set_nonblocking(FdRef fd) {
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0) throw_sys("fcntl(F_GETFL)");
    if (::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
        throw_sys("fcntl(F_SETFL,O_NONBLOCK)");
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

std::optional<Fd> try_accept(FdRef listener, bool nonblocking, bool* refused) {
    if (refused) *refused = false;
    int flags = SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    for (;;) {
        int fd = -1;
        {
            std::shared_lock gate(accept_gate);
            fd = ::accept4(listener.get(), nullptr, nullptr, flags);
        }
        if (fd >= 0) return Fd(fd);
        int err = errno;
        if (connection_error(err)) continue;
        switch (err) {
        case EINTR:
            if (stop_requested()) return std::nullopt;
            continue;
        case EAGAIN:
            return std::nullopt;
        case EMFILE:
        case ENFILE: {
            bool shed = shed_one(listener);
            if (refused) *refused = shed;
            if (once_a_second())
                std::fprintf(stderr, "accept: %s — %s\n", errno_text(err).c_str(),
                             shed ? "closing new connections; raise ulimit -n"
                                  : "new clients wait in the queue; raise ulimit -n");
            return std::nullopt;
        }
        case EINVAL:
            if (stop_requested()) return std::nullopt;
            [[fallthrough]];
        default:
            throw_sys("accept4", err);
        }
    }
}

IoResult read_some(FdRef fd, Buffer& in, std::size_t max) {
    assert(max > 0 && "a read of 0 bytes would look like end-of-file");
    auto space = in.writable(max);
    ssize_t n = retry_eintr([&] { return ::read(fd.get(), space.data(), max); });
    if (n > 0) {
        in.commit(static_cast<std::size_t>(n));
        return {.kind = IoResult::ok, .bytes = static_cast<std::size_t>(n),
                .drained = static_cast<std::size_t>(n) < max};
    }
    if (n == 0) return {IoResult::eof};
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoResult::would_block};
    return {IoResult::error, 0, errno};
}

IoResult write_some(FdRef fd, Buffer& out) {
    auto bytes = out.readable();
    if (bytes.empty()) return {IoResult::ok};
    ssize_t n = retry_eintr(
        [&] { return ::send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL); });
    if (n >= 0) {
        out.consume(static_cast<std::size_t>(n));
        return {IoResult::ok, static_cast<std::size_t>(n)};
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoResult::would_block};
    return {IoResult::error, 0, errno};
}

std::size_t unread_bytes(FdRef fd) noexcept {
    int n = 0;
    if (::ioctl(fd.get(), FIONREAD, &n) != 0 || n < 0) return 0;
    return static_cast<std::size_t>(n);
}

IoResult write_all(FdRef fd, Buffer& out) {
    std::size_t total = 0;
    while (!out.empty()) {
        IoResult r = write_some(fd, out);
        if (r.kind != IoResult::ok) return {r.kind, total, r.err};
        total += r.bytes;
    }
    return {IoResult::ok, total};
}

}  // namespace ladder
