// test_error.cpp — errno_text, sys_error, retry_eintr, report_fatal.
#include "error.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <unistd.h>

TEST_CASE("errno_text names the errno and describes it") {
    struct Case {
        int err;
        const char* text;
    };
    const Case cases[] = {
        {EADDRINUSE, "EADDRINUSE (Address already in use)"},
        {EMFILE, "EMFILE (Too many open files)"},
        {EPIPE, "EPIPE (Broken pipe)"},
        {ECONNRESET, "ECONNRESET (Connection reset by peer)"},
        {EAGAIN, "EAGAIN (Resource temporarily unavailable)"},
        {9999, "errno 9999 (unknown error)"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.err);
        CHECK(ladder::errno_text(c.err) == c.text);
    }
}

TEST_CASE("sys_error names the call, the errno and the hint") {
    struct Case {
        const char* call;
        int err;
        const char* hint;
        const char* starts;
    };
    const Case cases[] = {
        {"bind(127.0.0.1:8080)", EADDRINUSE, "",
         "bind(127.0.0.1:8080): EADDRINUSE (Address already in use)"},
        {"bind(127.0.0.1:8080)", EADDRINUSE, "use --port 0",
         "bind(127.0.0.1:8080): EADDRINUSE (Address already in use) — use --port 0"},
        {"fcntl(F_SETFL,O_NONBLOCK)", EBADF, "",
         "fcntl(F_SETFL,O_NONBLOCK): EBADF (Bad file descriptor)"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.starts);
        std::system_error e = ladder::sys_error(c.call, c.err, c.hint);
        std::string what = e.what();
        CHECK(what.starts_with(c.starts));
        CHECK(e.code().value() == c.err);
        CHECK(e.code().category() == std::generic_category());
        if (*c.hint == '\0') CHECK(what.find(" — ") == std::string::npos);
    }
}

TEST_CASE("sys_error takes errno by default and throw_sys throws it") {
    errno = ECONNREFUSED;
    CHECK(ladder::sys_error("connect").code().value() == ECONNREFUSED);

    errno = EACCES;
    try {
        ladder::throw_sys("bind(0.0.0.0:80)");
        FAIL("throw_sys returned");
    } catch (const std::system_error& e) {
        CHECK(std::string(e.what()).starts_with("bind(0.0.0.0:80): EACCES (Permission denied)"));
        CHECK(e.code().value() == EACCES);
    }
}

TEST_CASE("retry_eintr repeats a call only while it fails with EINTR") {
    struct Case {
        const char* name;
        int eintr_failures;  // how many times the call fails with EINTR first
        long final_result;
        int final_errno;
        int expected_calls;
    };
    const Case cases[] = {
        {"success at once", 0, 42, 0, 1},
        {"success after two EINTRs", 2, 7, 0, 3},
        {"zero (EOF) is a result", 1, 0, 0, 2},
        {"EAGAIN is returned, not retried", 0, -1, EAGAIN, 1},
        {"EPIPE after an EINTR", 1, -1, EPIPE, 2},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        int calls = 0;
        long r = ladder::retry_eintr([&]() -> long {
            ++calls;
            if (calls <= c.eintr_failures) {
                errno = EINTR;
                return -1;
            }
            if (c.final_result == -1) errno = c.final_errno;
            return c.final_result;
        });
        CHECK(r == c.final_result);
        CHECK(calls == c.expected_calls);
        if (r == -1) CHECK(errno == c.final_errno);
    }
}

namespace {

// Runs f() with stderr redirected into a pipe; returns what it wrote.
template <class F>
std::string capture_stderr(F f) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    std::fflush(stderr);
    int saved = ::dup(STDERR_FILENO);
    REQUIRE(saved >= 0);
    REQUIRE(::dup2(fds[1], STDERR_FILENO) == STDERR_FILENO);
    ::close(fds[1]);
    f();
    std::fflush(stderr);
    ::dup2(saved, STDERR_FILENO);
    ::close(saved);
    std::string out;
    char chunk[256];
    for (ssize_t n; (n = ::read(fds[0], chunk, sizeof chunk)) > 0;)
        out.append(chunk, static_cast<std::size_t>(n));
    ::close(fds[0]);
    return out;
}

}  // namespace

TEST_CASE("report_fatal prints one line naming the program, returns 1") {
    struct Case {
        const char* name;
        std::function<int()> report;
        std::string line;
    };
    const Case cases[] = {
        {"system_error: the category's strerror suffix is trimmed",
         [] {
             return ladder::report_fatal("step-01",
                                         ladder::sys_error("bind(127.0.0.1:8080)", EADDRINUSE));
         },
         "step-01: bind(127.0.0.1:8080): EADDRINUSE (Address already in use)\n"},
        {"system_error with a hint",
         [] {
             return ladder::report_fatal(
                 "step-02", ladder::sys_error("socket", EMFILE, "raise ulimit -n"));
         },
         "step-02: socket: EMFILE (Too many open files) — raise ulimit -n\n"},
        {"any other exception: what() as is",
         [] {
             return ladder::report_fatal("step-03",
                                         std::invalid_argument("--host 'x' is not an address"));
         },
         "step-03: --host 'x' is not an address\n"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        int status = -1;
        std::string printed = capture_stderr([&] { status = c.report(); });
        CHECK(status == 1);
        CHECK(printed == c.line);
    }
}
