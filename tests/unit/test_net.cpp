// test_net.cpp — listen_tcp, local_address, try_accept, read_some, write_some, write_all.
//
// SIGPIPE keeps its default action here (it kills the process): write_some
// must survive a vanished peer through MSG_NOSIGNAL alone.
#include "net.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

using ladder::Buffer;
using ladder::Fd;
using ladder::IoResult;
using ladder::ListenOptions;

namespace {

// Generous: only a broken implementation waits this long.
constexpr int kPatienceMs = 10000;

ListenOptions loopback(std::uint16_t port = 0, bool nonblocking = false, bool reuseport = false) {
    ListenOptions o;
    o.host = "127.0.0.1";
    o.port = port;
    o.nonblocking = nonblocking;
    o.reuseport = reuseport;
    return o;
}

std::uint16_t port_of(const Fd& fd) {
    sockaddr_storage s{};
    socklen_t len = sizeof s;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&s), &len) == 0);
    if (s.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&s)->sin6_port);
    return ntohs(reinterpret_cast<sockaddr_in*>(&s)->sin_port);
}

// A blocking client connected to 127.0.0.1:port.
Fd connect_to(std::uint16_t port) {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    return fd;
}

bool readable_within(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, ms) == 1;
}

// A connected AF_UNIX stream pair.
struct Pair {
    Fd a, b;
};
Pair socket_pair(bool nonblocking) {
    int sv[2];
    int type = SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0);
    REQUIRE(::socketpair(AF_UNIX, type, 0, sv) == 0);
    return {Fd(sv[0]), Fd(sv[1])};
}

// A connected TCP pair over loopback: client and accepted server side.
Pair tcp_pair() {
    Fd listener = ladder::listen_tcp(loopback());
    Fd client = connect_to(port_of(listener));
    auto server = ladder::try_accept(listener);
    REQUIRE(server.has_value());
    return {std::move(client), std::move(*server)};
}

bool ipv6_loopback_available() {
    Fd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

// SIGPIPE at its default action: a send() without MSG_NOSIGNAL would kill us.
void default_sigpipe() {
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    REQUIRE(::sigaction(SIGPIPE, &sa, nullptr) == 0);
}

}  // namespace

TEST_CASE("listen_tcp on port 0: the kernel picks a port") {
    struct Case {
        const char* host;
        const char* prefix;
    };
    const Case cases[] = {
        {"127.0.0.1", "127.0.0.1:"},
        {"localhost", "127.0.0.1:"},
        {"[127.0.0.1]", "127.0.0.1:"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.host);
        ListenOptions o = loopback();
        o.host = c.host;
        Fd fd = ladder::listen_tcp(o);
        REQUIRE(fd.valid());
        std::string where = ladder::local_address(fd);
        CHECK(where.starts_with(c.prefix));
        CHECK(where == c.prefix + std::to_string(port_of(fd)));
        CHECK(port_of(fd) != 0);
        int flags = ::fcntl(fd.get(), F_GETFD);
        CHECK((flags & FD_CLOEXEC) != 0);
        int accepting = 0;
        socklen_t len = sizeof accepting;
        REQUIRE(::getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0);
        CHECK(accepting == 1);
    }
}

TEST_CASE("listen_tcp: the nonblocking option") {
    for (bool nonblocking : {false, true}) {
        CAPTURE(nonblocking);
        Fd fd = ladder::listen_tcp(loopback(0, nonblocking));
        CHECK(((::fcntl(fd.get(), F_GETFL) & O_NONBLOCK) != 0) == nonblocking);
    }
}

TEST_CASE("listen_tcp: a port in use names the call, the errno and the way out") {
    Fd first = ladder::listen_tcp(loopback());
    std::uint16_t port = port_of(first);
    try {
        Fd second = ladder::listen_tcp(loopback(port));
        FAIL("a second listener bound port ", port);
    } catch (const std::system_error& e) {
        std::string what = e.what();
        CAPTURE(what);
        CHECK(what.starts_with("bind(127.0.0.1:" + std::to_string(port) + "): EADDRINUSE"));
        CHECK(what.find("--port 0") != std::string::npos);
        CHECK(e.code().value() == EADDRINUSE);
    }
}

TEST_CASE("listen_tcp: SO_REUSEPORT lets listeners share a port") {
    Fd first = ladder::listen_tcp(loopback(0, false, true));
    std::uint16_t port = port_of(first);
    Fd second = ladder::listen_tcp(loopback(port, false, true));
    CHECK(second.valid());
    CHECK(port_of(second) == port);
    // Without the option on the newcomer, the port is still taken.
    CHECK_THROWS_AS(ladder::listen_tcp(loopback(port)), std::system_error);
}

TEST_CASE("listen_tcp on ::1 when this machine has IPv6 loopback") {
    if (!ipv6_loopback_available()) {
        MESSAGE("no IPv6 loopback here: nothing to check");
        return;
    }
    for (const char* host : {"::1", "[::1]"}) {
        CAPTURE(host);
        ListenOptions o = loopback();
        o.host = host;
        Fd fd = ladder::listen_tcp(o);
        CHECK(ladder::local_address(fd) == "[::1]:" + std::to_string(port_of(fd)));
        CHECK(port_of(fd) != 0);
    }
}

TEST_CASE("listen_tcp: a host that is not an address") {
    for (const char* host : {"not-an-ip", "", "127.0.0.256", "example.com", "[::1"}) {
        CAPTURE(host);
        ListenOptions o = loopback();
        o.host = host;
        try {
            Fd fd = ladder::listen_tcp(o);
            FAIL("listened on '", host, "'");
        } catch (const std::invalid_argument& e) {
            CHECK(std::string(e.what()).find(std::string("'") + host + "'") != std::string::npos);
        }
    }
}

TEST_CASE("try_accept: an empty queue on a non-blocking listener") {
    Fd listener = ladder::listen_tcp(loopback(0, true));
    bool refused = true;
    auto conn = ladder::try_accept(listener, true, &refused);
    CHECK_FALSE(conn.has_value());
    CHECK_FALSE(refused);
}

TEST_CASE("try_accept: a waiting client becomes an Fd") {
    for (bool nonblocking : {false, true}) {
        CAPTURE(nonblocking);
        Fd listener = ladder::listen_tcp(loopback(0, true));
        Fd client = connect_to(port_of(listener));
        REQUIRE(readable_within(listener.get(), kPatienceMs));
        bool refused = true;
        auto conn = ladder::try_accept(listener, nonblocking, &refused);
        REQUIRE(conn.has_value());
        CHECK(conn->valid());
        CHECK_FALSE(refused);
        CHECK((::fcntl(conn->get(), F_GETFD) & FD_CLOEXEC) != 0);
        CHECK(((::fcntl(conn->get(), F_GETFL) & O_NONBLOCK) != 0) == nonblocking);
        // It is the client's peer: a byte crosses.
        REQUIRE(::write(client.get(), "x", 1) == 1);
        char c = 0;
        REQUIRE(readable_within(conn->get(), kPatienceMs));
        CHECK(::read(conn->get(), &c, 1) == 1);
        CHECK(c == 'x');
        // Nobody else waits: the queue is empty again.
        CHECK_FALSE(ladder::try_accept(listener, true).has_value());
    }
}

TEST_CASE("set_nonblocking") {
    Pair p = socket_pair(false);
    CHECK((::fcntl(p.a.get(), F_GETFL) & O_NONBLOCK) == 0);
    ladder::set_nonblocking(p.a);
    CHECK((::fcntl(p.a.get(), F_GETFL) & O_NONBLOCK) != 0);
    Fd closed;
    CHECK_THROWS_AS(ladder::set_nonblocking(closed), std::system_error);
}

TEST_CASE("read_some: bytes, would_block, eof") {
    Pair p = socket_pair(true);
    Buffer in;

    IoResult r = ladder::read_some(p.a, in);
    CHECK(r.kind == IoResult::would_block);
    CHECK(r.bytes == 0);
    CHECK(in.empty());

    REQUIRE(::write(p.b.get(), "hello world", 11) == 11);
    r = ladder::read_some(p.a, in, 5);  // at most max bytes
    CHECK(r.kind == IoResult::ok);
    CHECK(r.bytes == 5);
    CHECK(in.readable() == "hello");
    r = ladder::read_some(p.a, in);  // appended after what is there
    CHECK(r.kind == IoResult::ok);
    CHECK(r.bytes == 6);
    CHECK(in.readable() == "hello world");

    p.b.reset();
    r = ladder::read_some(p.a, in);
    CHECK(r.kind == IoResult::eof);
    CHECK(r.bytes == 0);
    CHECK(in.readable() == "hello world");
}

TEST_CASE("read_some: an error is reported with its errno") {
    Buffer in;
    Pair p = socket_pair(true);
    int raw = p.a.get();
    p.a.reset();
    IoResult r = ladder::read_some(ladder::FdRef(raw), in);
    CHECK(r.kind == IoResult::error);
    CHECK(r.err == EBADF);
}

TEST_CASE("read_some over TCP: ok, would_block, eof") {
    Pair p = tcp_pair();
    ladder::set_nonblocking(p.b);
    Buffer in;
    CHECK(ladder::read_some(p.b, in).kind == IoResult::would_block);
    REQUIRE(::write(p.a.get(), "ping", 4) == 4);
    REQUIRE(readable_within(p.b.get(), kPatienceMs));
    IoResult r = ladder::read_some(p.b, in);
    CHECK(r.kind == IoResult::ok);
    CHECK(in.readable() == "ping");
    p.a.reset();
    REQUIRE(readable_within(p.b.get(), kPatienceMs));
    CHECK(ladder::read_some(p.b, in).kind == IoResult::eof);
}

TEST_CASE("write_some: sends and consumes; would_block when full") {
    Pair p = socket_pair(true);
    Buffer out;
    IoResult r = ladder::write_some(p.a, out);  // nothing to send
    CHECK(r.kind == IoResult::ok);
    CHECK(r.bytes == 0);

    out.append("abc");
    r = ladder::write_some(p.a, out);
    CHECK(r.kind == IoResult::ok);
    CHECK(r.bytes == 3);
    CHECK(out.empty());
    char got[8] = {};
    REQUIRE(::read(p.b.get(), got, sizeof got) == 3);
    CHECK(std::string(got, 3) == "abc");

    // Fill the socket until the kernel says "not now".
    std::string chunk(64 * 1024, 'z');
    bool blocked = false;
    for (int i = 0; i < 10000 && !blocked; ++i) {
        out.append(chunk);
        r = ladder::write_some(p.a, out);
        if (r.kind == IoResult::would_block) blocked = true;
        REQUIRE((r.kind == IoResult::ok || r.kind == IoResult::would_block));
        out.clear();
    }
    CHECK(blocked);
    CHECK(r.bytes == 0);
}

TEST_CASE("write_some to a vanished peer: EPIPE or ECONNRESET, no SIGPIPE") {
    default_sigpipe();
    SUBCASE("unix socket pair") {
        Pair p = socket_pair(true);
        p.b.reset();
        Buffer out;
        out.append("into the void");
        IoResult r = ladder::write_some(p.a, out);
        CHECK(r.kind == IoResult::error);
        CHECK(r.err == EPIPE);
        CHECK(out.readable() == "into the void");  // nothing was consumed
    }
    SUBCASE("TCP") {
        Pair p = tcp_pair();
        ladder::set_nonblocking(p.b);
        p.a.reset();
        // The first send after the peer's close may still be accepted (the
        // peer answers it with RST); a later one fails.
        IoResult r{IoResult::ok};
        for (int i = 0; i < 1000 && r.kind != IoResult::error; ++i) {
            Buffer out;
            out.append("into the void");
            r = ladder::write_some(p.b, out);
            if (r.kind != IoResult::error) readable_within(p.b.get(), 10);
        }
        REQUIRE(r.kind == IoResult::error);
        CHECK((r.err == EPIPE || r.err == ECONNRESET));
    }
}

TEST_CASE("write_all sends everything on a blocking socket") {
    default_sigpipe();
    Pair p = socket_pair(false);
    const std::size_t total = 4 << 20;  // larger than the socket buffer: many short writes
    std::string sent(total, '\0');
    for (std::size_t i = 0; i < total; ++i) sent[i] = static_cast<char>(i * 131 % 251);
    std::string received;
    std::thread reader([&] {
        char chunk[65536];
        for (ssize_t n; (n = ::read(p.b.get(), chunk, sizeof chunk)) > 0;)
            received.append(chunk, static_cast<std::size_t>(n));
    });
    Buffer out;
    out.append(sent);
    IoResult r = ladder::write_all(p.a, out);
    ::shutdown(p.a.get(), SHUT_WR);
    reader.join();
    CHECK(r.kind == IoResult::ok);
    CHECK(r.bytes == total);
    CHECK(out.empty());
    CHECK(received.size() == total);
    CHECK(received == sent);

    // A vanished peer: write_all stops with the error.
    Pair q = socket_pair(false);
    q.b.reset();
    out.append("lost");
    r = ladder::write_all(q.a, out);
    CHECK(r.kind == IoResult::error);
    CHECK(r.err == EPIPE);
}

namespace {

// Redirects stderr into a pipe until text() (or the destructor) puts it back.
class StderrCapture {
public:
    StderrCapture() {
        REQUIRE(::pipe2(pipe_, O_CLOEXEC) == 0);
        std::fflush(stderr);
        saved_ = ::dup(STDERR_FILENO);
        REQUIRE(saved_ >= 0);
        REQUIRE(::dup2(pipe_[1], STDERR_FILENO) == STDERR_FILENO);
        ::close(pipe_[1]);
    }
    ~StderrCapture() {
        restore();
        ::close(pipe_[0]);
    }
    std::string text() {
        restore();
        std::string out;
        char chunk[512];
        for (ssize_t n; (n = ::read(pipe_[0], chunk, sizeof chunk)) > 0;)
            out.append(chunk, static_cast<std::size_t>(n));
        return out;
    }

private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, STDERR_FILENO);
        ::close(saved_);
        saved_ = -1;
    }
    int pipe_[2] = {-1, -1};
    int saved_ = -1;
};

// Lowers RLIMIT_NOFILE's soft limit and fills every free slot below it, so
// that the next descriptor-creating call fails with EMFILE. The destructor
// closes the fillers and restores the limit.
class DescriptorsExhausted {
public:
    DescriptorsExhausted() {
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
        int lowest = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        REQUIRE(lowest >= 0);
        fillers_.emplace_back(lowest);
        rlimit tight = saved_;
        tight.rlim_cur = static_cast<rlim_t>(lowest) + 32;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &tight) == 0);
        lowered_ = true;
        for (int fd; (fd = ::fcntl(lowest, F_DUPFD_CLOEXEC, 0)) >= 0;) fillers_.emplace_back(fd);
        fill_errno_ = errno;
    }
    ~DescriptorsExhausted() {
        fillers_.clear();
        if (lowered_) ::setrlimit(RLIMIT_NOFILE, &saved_);
    }
    int fill_errno() const { return fill_errno_; }
    // True when no descriptor can be created now.
    bool full() {
        Fd probe(::fcntl(fillers_.front().get(), F_DUPFD_CLOEXEC, 0));
        return !probe.valid();
    }

private:
    rlimit saved_{};
    bool lowered_ = false;
    std::vector<Fd> fillers_;
    int fill_errno_ = 0;
};

}  // namespace

TEST_CASE("try_accept out of descriptors: the reserve fd turns the client away") {
    Fd listener = ladder::listen_tcp(loopback(0, true));  // also opens the reserve
    Fd client = connect_to(port_of(listener));
    REQUIRE(readable_within(listener.get(), kPatienceMs));

    bool refused = false;
    std::optional<Fd> conn;
    std::string said;
    {
        StderrCapture capture;
        {
            DescriptorsExhausted exhausted;
            REQUIRE(exhausted.fill_errno() == EMFILE);
            REQUIRE(exhausted.full());
            conn = ladder::try_accept(listener, true, &refused);
            CHECK(exhausted.full());  // the reserve was opened again
        }
        said = capture.text();
    }
    CHECK_FALSE(conn.has_value());
    CHECK(refused);
    CHECK(said.find("accept: EMFILE") != std::string::npos);

    // The client was accepted and closed: it sees EOF (or a reset), not a hang.
    REQUIRE(readable_within(client.get(), kPatienceMs));
    char c;
    ssize_t n = ::read(client.get(), &c, 1);
    CHECK((n == 0 || (n == -1 && errno == ECONNRESET)));
    // The queue holds no one else, and with descriptors to spare accepting works again.
    CHECK_FALSE(ladder::try_accept(listener, true, &refused).has_value());
    CHECK_FALSE(refused);
    Fd next = connect_to(port_of(listener));
    REQUIRE(readable_within(listener.get(), kPatienceMs));
    auto again = ladder::try_accept(listener, true, &refused);
    CHECK(again.has_value());
    CHECK_FALSE(refused);
}
