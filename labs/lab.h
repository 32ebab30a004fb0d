// lab.h — what every lab needs besides its lesson: a checked-call helper, a
// loopback listener and client, a clock, and the facts the tests read.
//
// A lab prints what the kernel did in plain words, then one `verdict:` line.
// With --json it also prints, last, one line `facts: {...}` holding the same
// numbers, for tests/labs; the words and the facts come from one run.
#pragma once

#include "error.h"
#include "fd.h"

#include <arpa/inet.h>
#include <cerrno>
#include <concepts>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <netinet/in.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <vector>

namespace lab {

using ladder::Fd;

// A system call's -1 becomes an exception naming the call and errno:
// "connect(127.0.0.1:5): ECONNREFUSED (Connection refused)".
template <class T>
T check(T result, std::string_view call) {
    if (result == -1) ladder::throw_sys(call);
    return result;
}

// "ECONNRESET", or "0" for no error: the name the tests compare.
inline std::string errno_name(int err) {
    if (err == 0) return "0";
    const char* name = ::strerrorname_np(err);
    return name ? name : std::to_string(err);
}

// Milliseconds on the monotonic clock: durations only, never wall time.
inline double now_ms() {
    timespec t{};
    check(::clock_gettime(CLOCK_MONOTONIC, &t), "clock_gettime");
    return double(t.tv_sec) * 1e3 + double(t.tv_nsec) / 1e6;
}

// Sleeps `us` microseconds, all of them even when a signal interrupts.
inline void sleep_us(long us) {
    timespec t{us / 1000000, (us % 1000000) * 1000};
    while (::nanosleep(&t, &t) == -1)
        if (errno != EINTR) ladder::throw_sys("nanosleep");
}

inline sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

inline std::uint16_t port_of(const Fd& fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    check(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len), "getsockname");
    return ntohs(a.sin_port);
}

// A TCP listener on 127.0.0.1 with a port the kernel picks.
inline Fd tcp_listener(int backlog) {
    Fd fd(check(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    sockaddr_in a = loopback(0);
    check(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), "bind(127.0.0.1:0)");
    check(::listen(fd.get(), backlog), "listen");
    return fd;
}

// A blocking client connected to 127.0.0.1:port.
inline Fd tcp_connect(std::uint16_t port) {
    Fd fd(check(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    sockaddr_in a = loopback(port);
    check(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), "connect");
    return fd;
}

// A non-blocking client whose connect() to 127.0.0.1:port has started:
// poll for POLLOUT to learn when the handshake ends (lab connect-nonblocking).
inline Fd tcp_connect_started(std::uint16_t port) {
    Fd fd(
        check(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket"));
    sockaddr_in a = loopback(port);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == -1 &&
        errno != EINPROGRESS)
        ladder::throw_sys("connect");
    return fd;
}

inline Fd tcp_accept(const Fd& listener) {
    return Fd(check(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC), "accept4"));
}

// A lab's last line of words: the claim held, in one line, or it did not.
inline void verdict(bool held, const char* what_held) {
    std::printf("verdict: %s\n", held ? what_held
                                      : "this kernel did not behave as the claim says: "
                                        "read the lines above");
}

// The numbers a lab measured, as one JSON object for the tests.
class Facts {
public:
    void add(std::string_view key, std::integral auto v) { put(key, std::to_string(v)); }
    void add(std::string_view key, bool v) { put(key, v ? "true" : "false"); }
    void add(std::string_view key, std::floating_point auto v) {
        char text[32];
        std::snprintf(text, sizeof text, "%.3f", v);
        put(key, text);
    }
    void add(std::string_view key, const std::string& v) { put(key, "\"" + v + "\""); }
    void add(std::string_view key, const char* v) { add(key, std::string(v)); }
    std::string json() const { return text_ + "}"; }

private:
    void put(std::string_view key, const std::string& value) {
        text_ += text_.size() > 1 ? ", \"" : "\"";
        text_.append(key) += "\": " + value;
    }
    std::string text_ = "{";
};

// main() of every lab: runs body(facts, args) with the arguments other than
// --json, prints the facts with --json, and turns an exception into one line
// on stderr and exit status 1.
template <class Body>
int run(const char* program, int argc, char** argv, Body body) {
    bool json = false;
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--json")
            json = true;
        else
            args.emplace_back(argv[i]);
    }
    try {
        Facts facts;
        body(facts, args);
        std::fflush(stdout);
        if (json) std::printf("facts: %s\n", facts.json().c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fflush(stdout);
        return ladder::report_fatal(program, e);
    }
}

}  // namespace lab
