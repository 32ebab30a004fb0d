// test_net.cpp — parse_address, hint_for, listen_tcp, local_address/local_port,
// announce_listening, raise_fd_limit, client_gone_before_accept and
// refuse_one_client (the spare descriptor).
//
// The steps make their own accept4/read/send calls; these tests make them
// too, as a step would, around the helpers.
#include "net.h"

#include "stats.h"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <fstream>
#include <latch>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

using ladder::Fd;

namespace {

// Generous: only a broken implementation waits this long.
constexpr int kPatienceMs = 10000;

// The port as getsockname() says, without local_port().
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

// What a client reads once the server has closed its connection: 0 is a
// clean close (FIN), -1 with errno ECONNRESET a reset.
ssize_t read_after_close(const Fd& client) {
    REQUIRE(readable_within(client.get(), kPatienceMs));
    char c;
    return ::read(client.get(), &c, 1);
}

int int_option(const Fd& fd, int level, int name) {
    int value = -1;
    socklen_t len = sizeof value;
    REQUIRE(::getsockopt(fd.get(), level, name, &value, &len) == 0);
    return value;
}

bool ipv6_loopback_available() {
    Fd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

// Redirects stdout or stderr into a pipe until text() (or the destructor)
// puts it back.
class Capture {
public:
    explicit Capture(int target) : target_(target) {
        REQUIRE(::pipe2(pipe_, O_CLOEXEC) == 0);
        flush();
        saved_ = ::dup(target_);
        REQUIRE(saved_ >= 0);
        REQUIRE(::dup2(pipe_[1], target_) == target_);
        ::close(pipe_[1]);
    }
    ~Capture() {
        restore();
        ::close(pipe_[0]);
    }
    Capture(const Capture&) = delete;
    Capture& operator=(const Capture&) = delete;

    std::string text() {
        restore();
        std::string out;
        char chunk[512];
        for (ssize_t n; (n = ::read(pipe_[0], chunk, sizeof chunk)) > 0;)
            out.append(chunk, static_cast<std::size_t>(n));
        return out;
    }

private:
    void flush() { std::fflush(target_ == STDOUT_FILENO ? stdout : stderr); }
    void restore() {
        if (saved_ < 0) return;
        flush();
        ::dup2(saved_, target_);
        ::close(saved_);
        saved_ = -1;
    }
    int target_;
    int pipe_[2] = {-1, -1};
    int saved_ = -1;
};

// Sets the soft RLIMIT_NOFILE for the scope; puts the old limits back after.
class SoftFdLimit {
public:
    explicit SoftFdLimit(rlim_t soft) {
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
        rlimit changed = saved_;
        changed.rlim_cur = soft;
        REQUIRE(::setrlimit(RLIMIT_NOFILE, &changed) == 0);
    }
    ~SoftFdLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
    SoftFdLimit(const SoftFdLimit&) = delete;
    SoftFdLimit& operator=(const SoftFdLimit&) = delete;
    const rlimit& saved() const { return saved_; }

private:
    rlimit saved_{};
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
    DescriptorsExhausted(const DescriptorsExhausted&) = delete;
    DescriptorsExhausted& operator=(const DescriptorsExhausted&) = delete;

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

// The seconds of steady_clock: what "at most once a second" counts in.
long long steady_second() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::size_t lines_in(const std::string& text) {
    std::size_t n = 0;
    for (char c : text) n += c == '\n';
    return n;
}

}  // namespace

// ---------------------------------------------------------------------------
// Addresses

TEST_CASE("parse_address: IPv4, IPv6, [IPv6] and localhost, with the text for messages") {
    struct Row {
        std::string host;
        std::uint16_t port;
        int family;
        const char* bare;  // the address alone, as inet_pton reads it
        std::string text;
    };
    const Row rows[] = {
        {"127.0.0.1", 8080, AF_INET, "127.0.0.1", "127.0.0.1:8080"},
        {"localhost", 80, AF_INET, "127.0.0.1", "127.0.0.1:80"},
        {"0.0.0.0", 0, AF_INET, "0.0.0.0", "0.0.0.0:0"},
        {"10.1.2.3", 65535, AF_INET, "10.1.2.3", "10.1.2.3:65535"},
        {"[127.0.0.1]", 1, AF_INET, "127.0.0.1", "127.0.0.1:1"},
        {"::1", 8080, AF_INET6, "::1", "[::1]:8080"},
        {"[::1]", 8080, AF_INET6, "::1", "[::1]:8080"},
        {"::", 9, AF_INET6, "::", "[::]:9"},
        {"2001:DB8:0:0:0:0:0:1", 443, AF_INET6, "2001:db8::1", "[2001:db8::1]:443"},
        {"::ffff:127.0.0.1", 7, AF_INET6, "::ffff:127.0.0.1", "[::ffff:127.0.0.1]:7"},
    };
    for (const Row& row : rows) {
        CAPTURE(row.host);
        ladder::Address a = ladder::parse_address(row.host, row.port);
        CHECK(a.family() == row.family);
        CHECK(a.text == row.text);
        CHECK(a.get() == reinterpret_cast<const sockaddr*>(&a.storage));
        if (row.family == AF_INET) {
            CHECK(a.length == sizeof(sockaddr_in));
            auto* v4 = reinterpret_cast<const sockaddr_in*>(a.get());
            CHECK(ntohs(v4->sin_port) == row.port);
            in_addr want{};
            REQUIRE(::inet_pton(AF_INET, row.bare, &want) == 1);
            CHECK(v4->sin_addr.s_addr == want.s_addr);
        } else {
            CHECK(a.length == sizeof(sockaddr_in6));
            auto* v6 = reinterpret_cast<const sockaddr_in6*>(a.get());
            CHECK(ntohs(v6->sin6_port) == row.port);
            in6_addr want{};
            REQUIRE(::inet_pton(AF_INET6, row.bare, &want) == 1);
            CHECK(IN6_ARE_ADDR_EQUAL(&v6->sin6_addr, &want));
        }
    }
}

TEST_CASE("parse_address: anything else throws invalid_argument naming --host") {
    for (std::string host : {"not-an-ip", "", "127.0.0.256", "1.2.3", "example.com", "[::1",
                             "::1]", "[]", "[[::1]]", " 127.0.0.1", "127.0.0.1 ",
                             "127.0.0.1:80", "1::2::3", "LOCALHOST"}) {
        CAPTURE(host);
        try {
            ladder::Address a = ladder::parse_address(host, 80);
            FAIL("parsed '", host, "' as ", a.text);
        } catch (const std::invalid_argument& e) {
            std::string what = e.what();
            CHECK(what ==
                  "--host '" + host + "' is not an IPv4 or IPv6 address (try 127.0.0.1)");
        }
    }
}

TEST_CASE("hint_for: the way out of the usual setup errors") {
    struct Row {
        int err;
        const char* hint;  // a part of it; "" for no hint at all
    };
    const Row rows[] = {
        {EADDRINUSE, "--port 0"},          {EADDRNOTAVAIL, "--host 127.0.0.1"},
        {EACCES, "--port 8080"},           {EMFILE, "ulimit -n"},
        {ENFILE, "ulimit -n"},             {0, ""},
        {EINVAL, ""},                      {ECONNRESET, ""},
    };
    for (const Row& row : rows) {
        CAPTURE(row.err);
        std::string_view hint = ladder::hint_for(row.err);
        if (*row.hint == '\0')
            CHECK(hint.empty());
        else
            CHECK(hint.find(row.hint) != std::string_view::npos);
    }
}

// ---------------------------------------------------------------------------
// listen_tcp and the listener's address

TEST_CASE("listen_tcp on port 0: the kernel picks; local_address and local_port say which") {
    struct Row {
        std::string host;
        std::string prefix;  // of local_address()
    };
    std::vector<Row> rows = {
        {"127.0.0.1", "127.0.0.1:"},
        {"localhost", "127.0.0.1:"},
        {"[127.0.0.1]", "127.0.0.1:"},
    };
    if (ipv6_loopback_available()) {
        rows.push_back({"::1", "[::1]:"});
        rows.push_back({"[::1]", "[::1]:"});
    } else {
        MESSAGE("no IPv6 loopback here: IPv4 only");
    }
    // The backlog is kBacklog, as far as net.core.somaxconn (this network
    // namespace's) lets it be.
    int somaxconn = -1;
    std::ifstream("/proc/sys/net/core/somaxconn") >> somaxconn;
    for (const Row& row : rows) {
        CAPTURE(row.host);
        Fd fd = ladder::listen_tcp(row.host, 0, false);
        REQUIRE(fd.valid());
        std::uint16_t port = port_of(fd);
        CHECK(port != 0);
        CHECK(ladder::local_port(fd) == port);
        CHECK(ladder::local_address(fd) == row.prefix + std::to_string(port));
        CHECK((::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
        CHECK(int_option(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1);
        CHECK(int_option(fd, SOL_SOCKET, SO_REUSEADDR) == 1);
        CHECK(int_option(fd, SOL_SOCKET, SO_REUSEPORT) == 0);  // step 08 sets it itself
        if (somaxconn > 0) {
            // TCP_INFO of a listener: tcpi_sacked is its backlog limit.
            tcp_info info{};
            socklen_t len = sizeof info;
            REQUIRE(::getsockopt(fd.get(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0);
            CHECK(info.tcpi_sacked == unsigned(std::min(ladder::kBacklog, somaxconn)));
        }
    }
}

TEST_CASE("listen_tcp: nonblocking decides whether accept4 waits or says EAGAIN") {
    for (bool nonblocking : {false, true}) {
        CAPTURE(nonblocking);
        Fd listener = ladder::listen_tcp("127.0.0.1", 0, nonblocking);
        CHECK(((::fcntl(listener.get(), F_GETFL) & O_NONBLOCK) != 0) == nonblocking);
        if (nonblocking) {  // (a blocking one would sleep here)
            CHECK(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC) == -1);
            CHECK(errno == EAGAIN);
        }
        // Either way a waiting client is accepted.
        Fd client = connect_to(port_of(listener));
        REQUIRE(readable_within(listener.get(), kPatienceMs));
        Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        CHECK(conn.valid());
    }
}

TEST_CASE("listen_tcp: a failed bind names the call, the address, the errno and the way out") {
    struct Row {
        std::string host;
        std::uint16_t port;
        int err;
        std::string what;  // the start of what()
    };
    Fd taken = ladder::listen_tcp("127.0.0.1", 0, false);
    const std::string p = std::to_string(port_of(taken));
    std::vector<Row> rows = {
        {"127.0.0.1", port_of(taken), EADDRINUSE,
         "bind(127.0.0.1:" + p +
             "): EADDRINUSE (Address already in use) — another process has this port; "
             "choose one with --port N, or --port 0"},
        // TEST-NET-1 (RFC 5737): no machine has it.
        {"192.0.2.1", 0, EADDRNOTAVAIL,
         "bind(192.0.2.1:0): EADDRNOTAVAIL (Cannot assign requested address) — this machine "
         "has no such address; try --host 127.0.0.1"},
    };
    Fd taken6;
    if (ipv6_loopback_available()) {
        taken6 = ladder::listen_tcp("::1", 0, false);
        const std::string p6 = std::to_string(port_of(taken6));
        rows.push_back({"[::1]", port_of(taken6), EADDRINUSE,
                        "bind([::1]:" + p6 + "): EADDRINUSE (Address already in use) — "});
    }
    for (const Row& row : rows) {
        CAPTURE(row.host);
        try {
            Fd second = ladder::listen_tcp(row.host, row.port, false);
            FAIL("listened on ", ladder::local_address(second));
        } catch (const std::system_error& e) {
            std::string what = e.what();
            CAPTURE(what);
            CHECK(what.starts_with(row.what));
            CHECK(e.code().value() == row.err);
        }
    }
}

TEST_CASE("listen_tcp out of descriptors: socket() fails with EMFILE and says ulimit -n") {
    DescriptorsExhausted exhausted;
    REQUIRE(exhausted.full());
    try {
        Fd fd = ladder::listen_tcp("127.0.0.1", 0, false);
        FAIL("a socket out of no descriptors");
    } catch (const std::system_error& e) {
        CHECK(std::string(e.what()).starts_with(
            "socket: EMFILE (Too many open files) — out of file descriptors; raise the "
            "limit with ulimit -n"));
        CHECK(e.code().value() == EMFILE);
    }
}

TEST_CASE("listen_tcp: a host that is not an address is an invalid_argument") {
    for (std::string host : {"not-an-ip", "", "[::1"}) {
        CAPTURE(host);
        CHECK_THROWS_AS(ladder::listen_tcp(host, 0, false), std::invalid_argument);
    }
}

TEST_CASE("listen_tcp: SO_REUSEADDR lets a restarted server bind beside TIME_WAIT") {
    Fd listener = ladder::listen_tcp("127.0.0.1", 0, false);
    const std::uint16_t port = port_of(listener);
    {
        Fd client = connect_to(port);
        Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        REQUIRE(conn.valid());
        conn.reset();  // the server closes first: its side waits in TIME_WAIT
        CHECK(read_after_close(client) == 0);
    }
    listener.reset();  // the server exits
    // Without SO_REUSEADDR the port is still taken ...
    Fd plain(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(::bind(plain.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == -1);
    CHECK(errno == EADDRINUSE);
    // ... with it, the restarted server listens again.
    Fd again = ladder::listen_tcp("127.0.0.1", port, false);
    CHECK(port_of(again) == port);
}

TEST_CASE("local_address and local_port of something that is not a socket throw") {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    Fd r(fds[0]), w(fds[1]);
    for (auto call : {+[](ladder::FdRef fd) { (void)ladder::local_address(fd); },
                      +[](ladder::FdRef fd) { (void)ladder::local_port(fd); }}) {
        try {
            call(r);
            FAIL("no exception");
        } catch (const std::system_error& e) {
            CHECK(std::string(e.what()).starts_with("getsockname: ENOTSOCK"));
        }
    }
}

TEST_CASE("announce_listening: exactly the ready line on stdout") {
    Fd listener = ladder::listen_tcp("127.0.0.1", 0, false);
    Capture out(STDOUT_FILENO);
    ladder::announce_listening(listener);
    CHECK(out.text() == "listening on 127.0.0.1:" + std::to_string(port_of(listener)) + "\n");
}

TEST_CASE("raise_fd_limit: the soft limit goes up to the hard one") {
    rlimit now{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &now) == 0);
    for (rlim_t soft : {std::min<rlim_t>(now.rlim_max, 64), now.rlim_max}) {
        CAPTURE(soft);
        SoftFdLimit lowered(soft);
        long raised = ladder::raise_fd_limit();
        rlimit after{};
        REQUIRE(::getrlimit(RLIMIT_NOFILE, &after) == 0);
        CHECK(after.rlim_cur == after.rlim_max);
        CHECK(after.rlim_max == lowered.saved().rlim_max);
        CHECK(raised == static_cast<long>(after.rlim_cur));
    }
}

// ---------------------------------------------------------------------------
// What accept4's errors mean

TEST_CASE("client_gone_before_accept: the pending connection's own errors, and only those") {
    struct Row {
        int err;
        bool gone;
    };
    const Row rows[] = {
        // accept(2): "Linux accept() passes already-pending network errors on
        // the new socket as an error code from accept()".
        {ECONNABORTED, true}, {EPROTO, true},       {ENETDOWN, true},
        {ENOPROTOOPT, true},  {EHOSTDOWN, true},    {ENONET, true},
        {EHOSTUNREACH, true}, {EOPNOTSUPP, true},   {ENETUNREACH, true},
        {EPERM, true},  // a firewall rule refused it
        // The server's own state: not the client's doing.
        {EAGAIN, false},      {EINTR, false},       {EMFILE, false},
        {ENFILE, false},      {ENOBUFS, false},     {ENOMEM, false},
        {EINVAL, false},  // not listening (shut down by a stop)
        {EBADF, false},       {ENOTSOCK, false},    {EFAULT, false},
        {0, false},
    };
    for (const Row& row : rows) {
        CAPTURE(row.err);
        CHECK(ladder::client_gone_before_accept(row.err) == row.gone);
    }
}

// ---------------------------------------------------------------------------
// refuse_one_client: the spare descriptor
//
// Its stderr line comes at most once a second, process-wide: the first case
// below makes this process's first call, so its line is the one to see.

TEST_CASE("refuse_one_client out of descriptors: each waiting client gets a clean close") {
    constexpr int kWaiting = 3;
    Capture err(STDERR_FILENO);
    const long long first_second = steady_second();
    for (bool nonblocking : {true, false}) {
        CAPTURE(nonblocking);
        ladder::Stats stats("00", "http");
        ladder::Counters& counters = stats.counters();
        Fd listener = ladder::listen_tcp("127.0.0.1", 0, nonblocking);
        std::vector<Fd> clients;
        for (int i = 0; i < kWaiting; ++i) clients.push_back(connect_to(port_of(listener)));
        REQUIRE(readable_within(listener.get(), kPatienceMs));
        {
            DescriptorsExhausted exhausted;
            REQUIRE(exhausted.fill_errno() == EMFILE);
            REQUIRE(exhausted.full());
            // What the step sees: the client stays in the queue.
            REQUIRE(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC) == -1);
            REQUIRE(errno == EMFILE);
            // No CAPTURE in here: UBSan's vptr check of its scope object needs a pipe.
            for (int i = 1; i <= kWaiting; ++i) {
                CHECK(ladder::refuse_one_client(listener, EMFILE, counters));
                CHECK(counters.refused == std::uint64_t(i));
                CHECK(exhausted.full());  // the spare was opened again
            }
            // Nobody waits any more (it looked for 100 ms): nothing refused.
            CHECK_FALSE(ladder::refuse_one_client(listener, EMFILE, counters));
            CHECK(counters.refused == std::uint64_t(kWaiting));
        }
        for (const Fd& client : clients) CHECK(read_after_close(client) == 0);

        // With descriptors to spare, the step's own accept4 serves again.
        Fd next = connect_to(port_of(listener));
        REQUIRE(readable_within(listener.get(), kPatienceMs));
        Fd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        REQUIRE(conn.valid());
        REQUIRE(::write(next.get(), "x", 1) == 1);
        char c = 0;
        REQUIRE(readable_within(conn.get(), kPatienceMs));
        CHECK(::read(conn.get(), &c, 1) == 1);
        CHECK(c == 'x');
        CHECK(counters.refused == std::uint64_t(kWaiting));
        CHECK(counters.accepted == 0);  // refused, not accepted: "open" stays right
    }
    const long long last_second = steady_second();
    std::string said = err.text();
    CAPTURE(said);
    CHECK(said.starts_with(
        "accept: EMFILE (Too many open files) — closing new connections; raise ulimit -n\n"));
    CHECK(lines_in(said) <= std::size_t(last_second - first_second + 1));  // once a second
}

TEST_CASE("refuse_one_client from several threads: each waiting client refused once") {
    constexpr int kThreads = 4;
    constexpr int kWaiting = 8;
    ladder::Stats stats("00", "http");
    Fd listener = ladder::listen_tcp("127.0.0.1", 0, true);
    std::vector<Fd> clients;
    for (int i = 0; i < kWaiting; ++i) clients.push_back(connect_to(port_of(listener)));
    REQUIRE(readable_within(listener.get(), kPatienceMs));
    int refused_by[kThreads] = {};
    {
        Capture err(STDERR_FILENO);  // its once-a-second line is not this test's
        // The threads start and end with descriptors to spare: UBSan checks
        // std::thread's virtual calls with the help of a pipe.
        std::latch ready(kThreads), go(1), finished(kThreads), leave(1);
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                ready.count_down();
                go.wait();
                while (ladder::refuse_one_client(listener, EMFILE, stats.counters()))
                    ++refused_by[t];
                finished.count_down();
                leave.wait();
            });
        ready.wait();
        {
            DescriptorsExhausted exhausted;
            go.count_down();
            finished.wait();
            CHECK(exhausted.full());
        }
        leave.count_down();
        for (std::thread& t : threads) t.join();
    }
    int total = 0;
    for (int n : refused_by) total += n;
    CHECK(total == kWaiting);
    CHECK(stats.counters().refused == std::uint64_t(kWaiting));
    for (const Fd& client : clients) CHECK(read_after_close(client) == 0);
}

TEST_CASE("refuse_one_client while other threads accept: none of them takes the freed slot") {
    constexpr int kThreads = 3;
    constexpr int kWaiting = 50;
    ladder::Stats stats("00", "http");
    Fd listener = ladder::listen_tcp("127.0.0.1", 0, true);
    std::vector<Fd> clients;
    for (int i = 0; i < kWaiting; ++i) clients.push_back(connect_to(port_of(listener)));
    REQUIRE(readable_within(listener.get(), kPatienceMs));
    std::atomic<bool> stop{false};
    std::atomic<int> taken{0};  // clients the other threads' accept4 got
    int refused = 0;
    {
        Capture err(STDERR_FILENO);  // its once-a-second line is not this test's
        std::latch ready(kThreads), go(1), finished(kThreads), leave(1);
        std::vector<std::thread> threads;
        std::vector<Fd> kept[kThreads];
        for (int t = 0; t < kThreads; ++t)
            threads.emplace_back([&, t] {
                ready.count_down();
                go.wait();
                // What every other worker of a herd does meanwhile: accept4,
                // EMFILE, accept4 again. One that succeeds keeps the client.
                while (!stop) {
                    int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
                    if (fd >= 0) {
                        ++taken;
                        kept[t].emplace_back(fd);
                    }
                }
                finished.count_down();
                leave.wait();
                kept[t].clear();
            });
        ready.wait();
        {
            DescriptorsExhausted exhausted;
            go.count_down();
            while (refused < kWaiting &&
                   ladder::refuse_one_client(listener, EMFILE, stats.counters()))
                ++refused;
            stop = true;
            finished.wait();
            CHECK(exhausted.full());
        }
        leave.count_down();
        for (std::thread& t : threads) t.join();
    }
    CHECK(taken == 0);
    CHECK(refused == kWaiting);
    CHECK(stats.counters().refused == std::uint64_t(kWaiting));
}
