// floor — the bench's bottom rung: /hello served as cheaply as one file can.
// One thread, epoll edge-triggered, no common/, no parser worth the name:
// it answers what the bench sends (GET, keep-alive, pipelined) and refuses
// the rest. The steps' distance to it is what their clarity costs.
//
//   build/bin/floor --port 0      prints: listening on 127.0.0.1:PORT
//   GET / or /hello   the steps' exact bytes; GET /stats   the counters, JSON
//   anything else     404 (unknown GET path) or 400 and close (not a GET)
//   --mode echo       every byte read goes back (the steps' echo mode)
//   SIGINT/SIGTERM    print the counters on stdout, exit 0
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr std::string_view kHello =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n";
constexpr std::string_view kHelloClose =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
    "Connection: close\r\n\r\nHello, World!\n";
constexpr std::string_view kNotFound =
    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nNot Found\n";
constexpr std::string_view kBadRequest =
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
constexpr std::size_t kMaxHead = 16 * 1024;  // a request head longer than this is refused

struct Conn {
    int fd;
    std::string in;   // bytes of a request not complete yet
    std::string out;  // responses the socket did not take yet
    bool closing = false;
};

struct Stats {
    unsigned long long accepted = 0, requests = 0, wakeups = 0;  // echo: requests = reads echoed
} stats;
bool echo_mode = false;

[[noreturn]] void die(const char* call) {
    std::fprintf(stderr, "floor: %s: %s\n", call, std::strerror(errno));
    std::exit(1);
}

std::string stats_json() {
    char buf[160];
    std::snprintf(buf, sizeof buf,
                  "{\"step\":\"floor\",\"mode\":\"%s\",\"accepted\":%llu,\"requests\":%llu,"
                  "\"wakeups\":%llu}",
                  echo_mode ? "echo" : "http", stats.accepted, stats.requests, stats.wakeups);
    return buf;
}

bool iequals_prefix(std::string_view text, std::string_view prefix) {
    return text.size() >= prefix.size() &&
           strncasecmp(text.data(), prefix.data(), prefix.size()) == 0;
}

// HTTP/1.1 keeps the connection unless told "close"; HTTP/1.0 closes unless
// told "keep-alive". Only the bench's spelling is recognised.
bool keeps_alive(std::string_view head) {
    bool http10 = head.substr(0, head.find("\r\n")).ends_with("HTTP/1.0");
    for (std::size_t at = head.find("\r\n"); at != std::string_view::npos;
         at = head.find("\r\n", at + 2)) {
        std::string_view line = head.substr(at + 2);
        if (!iequals_prefix(line, "connection:")) continue;
        line = line.substr(11, line.find("\r\n") - 11);
        line.remove_prefix(std::min(line.find_first_not_of(' '), line.size()));
        if (iequals_prefix(line, "close")) return false;
        if (iequals_prefix(line, "keep-alive")) return true;
    }
    return !http10;
}

// Every complete request in c.in gets its response appended to c.out, in order.
void answer(Conn& c) {
    std::size_t done = 0;
    for (std::size_t end; !c.closing && (end = c.in.find("\r\n\r\n", done)) != std::string::npos;
         done = end + 4) {
        std::string_view head(c.in.data() + done, end - done);
        ++stats.requests;
        if (!head.starts_with("GET ")) {
            c.out += kBadRequest;
            c.closing = true;
            break;
        }
        std::string_view path = head.substr(4, head.find(' ', 4) - 4);
        bool keep = keeps_alive(head);
        if (path == "/" || path == "/hello") {
            c.out += keep ? kHello : kHelloClose;
        } else if (path == "/stats") {
            std::string body = stats_json();
            c.out += "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body;
        } else {
            c.out += kNotFound;
        }
        c.closing = !keep;
    }
    c.in.erase(0, done);
    if (c.in.size() > kMaxHead && !c.closing) {
        c.out += kBadRequest;
        c.closing = true;
    }
}

// Returns false when the connection is finished (closed by the peer, an
// error, or a "close" response fully sent).
bool flush(Conn& c) {
    while (!c.out.empty()) {
        ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN || errno == EINTR;  // EAGAIN: wait for EPOLLOUT
        c.out.erase(0, std::size_t(n));
    }
    return !c.closing;
}

// Edge-triggered: read until EAGAIN, or no new edge ever comes for what is left.
// A short read means the socket is empty, unless the peer's FIN is already in
// (hup): then read on, to the EOF, since no later edge will announce it.
bool on_readable(Conn& c, bool hup) {
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(c.fd, buf, sizeof buf);
        if (n > 0) {
            c.in.append(buf, std::size_t(n));
            if (std::size_t(n) < sizeof buf && !hup) break;  // a short read: the socket is empty
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n < 0) return false;
        c.closing = true;  // EOF: answer what came before it, then close
        answer(c);
        flush(c);
        return false;
    }
    answer(c);
    return flush(c);
}

// Echo, on any event: first send what the socket did not take last time;
// only when that is all gone, read until a short read (or EAGAIN) and send
// each chunk straight back. What send leaves over waits in c.out for
// EPOLLOUT, and nothing more is read meanwhile: TCP's flow control holds a
// client that does not read, and the bytes still in the socket are read
// when EPOLLOUT brings us back here (no EPOLLIN edge will come for them).
bool on_echo(Conn& c, bool hup) {
    if (!flush(c)) return false;
    char buf[65536];
    while (c.out.empty()) {
        ssize_t n = ::read(c.fd, buf, sizeof buf);
        if (n > 0) {
            ++stats.requests;
            ssize_t sent = ::send(c.fd, buf, std::size_t(n), MSG_NOSIGNAL);
            if (sent < 0 && errno != EAGAIN && errno != EINTR) return false;
            sent = std::max<ssize_t>(sent, 0);
            if (sent < n) c.out.append(buf + sent, std::size_t(n - sent));
            if (std::size_t(n) < sizeof buf && !hup) break;  // a short read: the socket is empty
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        return false;  // EOF or an error: nothing more to echo
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::string host = "127.0.0.1";
    int port = 8080;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--help") {
            std::puts("usage: floor [--host ADDR] [--port N] [--mode http|echo]\n"
                      "  the bench's reference: one epoll thread, GET /hello (or echo) only");
            return 0;
        } else if (arg == "--host" && i + 1 < argc) {
            host = argv[++i];
        } else if (arg == "--port" && i + 1 < argc) {
            port = std::atoi(argv[++i]);
        } else if (arg == "--mode" && i + 1 < argc &&
                   (std::string_view(argv[i + 1]) == "http" ||
                    std::string_view(argv[i + 1]) == "echo")) {
            echo_mode = std::string_view(argv[++i]) == "echo";
        } else {
            std::fprintf(stderr, "floor: unknown or incomplete flag %s\n"
                                 "usage: floor [--host ADDR] [--port N] [--mode http|echo]\n",
                         argv[i]);
            return 2;
        }
    }

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    // Blocked signals wait in the signalfd: SIGTERM becomes one more event.
    if (sigprocmask(SIG_BLOCK, &stop, nullptr) != 0) die("sigprocmask");
    int sfd = signalfd(-1, &stop, SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");

    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die("setsockopt");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(std::uint16_t(port));
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
        std::fprintf(stderr, "floor: --host %s: not an IPv4 address\n", host.c_str());
        return 2;
    }
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind");
    if (::listen(lfd, 4096) != 0) die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) die("getsockname");
    std::printf("listening on %s:%d\n", host.c_str(), ntohs(addr.sin_port));
    std::fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) die("epoll_ctl(listener)");
    ev.data.fd = sfd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) != 0) die("epoll_ctl(signalfd)");

    // EMFILE leaves the client in the backlog and the listener readable: a
    // level-triggered loop would spin. A spare descriptor, closed to accept
    // and refuse that one client, keeps the loop honest (libev's trick).
    int spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (spare < 0) die("open(/dev/null)");
    std::vector<std::unique_ptr<Conn>> conns;  // indexed by fd
    auto close_conn = [&](int fd) {
        ::close(fd);  // also drops it from the epoll set: no epoll_ctl(DEL) needed
        conns[std::size_t(fd)].reset();
    };
    epoll_event events[256];
    for (bool running = true; running;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        ++stats.wakeups;
        for (int i = 0; i < n; ++i) {
            int fd = events[i].data.fd;
            if (fd == sfd) {
                running = false;
            } else if (fd == lfd) {
                for (int cfd; (cfd = accept4(lfd, nullptr, nullptr,
                                             SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
                    ++stats.accepted;
                    if (conns.size() <= std::size_t(cfd)) conns.resize(std::size_t(cfd) + 1);
                    conns[std::size_t(cfd)] = std::make_unique<Conn>(Conn{cfd, {}, {}});
                    // Registered once for both directions: no epoll_ctl per request.
                    epoll_event cev{};
                    cev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
                    cev.data.fd = cfd;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev) != 0) close_conn(cfd);
                }
                if (errno == EMFILE || errno == ENFILE) {
                    std::fprintf(stderr, "floor: accept4: %s: refusing (ulimit -n)\n",
                                 std::strerror(errno));
                    ::close(spare);
                    ::close(::accept(lfd, nullptr, nullptr));
                    spare = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
            } else if (Conn* c = conns[std::size_t(fd)].get()) {
                bool alive = true;
                bool hup = events[i].events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP);
                if (echo_mode)
                    alive = on_echo(*c, hup);
                else if (hup || (events[i].events & EPOLLIN))
                    alive = on_readable(*c, hup);
                else if (events[i].events & EPOLLOUT)
                    alive = flush(*c);
                if (!alive) close_conn(fd);
            }
        }
    }
    std::printf("%s\n", stats_json().c_str());
    std::fflush(stdout);
    return 0;
}
