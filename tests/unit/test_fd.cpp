// test_fd.cpp — Fd owns and closes; FdRef borrows and never closes.
#include "fd.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <fcntl.h>
#include <functional>
#include <type_traits>
#include <unistd.h>
#include <utility>

using ladder::Fd;
using ladder::FdRef;

static_assert(!std::is_copy_constructible_v<Fd> && !std::is_copy_assignable_v<Fd>);
static_assert(std::is_nothrow_move_constructible_v<Fd> && std::is_nothrow_move_assignable_v<Fd>);
static_assert(!std::is_convertible_v<Fd, int>, "no implicit int: .get() marks leaving RAII");
static_assert(!std::is_convertible_v<int, Fd>, "owning a number must be spelled out");
static_assert(std::is_convertible_v<const Fd&, FdRef>, "borrowing is implicit");
static_assert(std::is_trivially_copyable_v<FdRef>);

namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// fcntl(F_GETFD) on a closed descriptor fails with EBADF.
bool is_closed(int fd) {
    errno = 0;
    return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

int open_null() {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    return fd;
}

// A descriptor number that is not open: close() on it fails with EBADF.
int unused_number() {
    int fd = open_null();
    ::close(fd);
    REQUIRE(is_closed(fd));
    return fd;
}

}  // namespace

TEST_CASE("a default Fd owns nothing") {
    Fd fd;
    CHECK(fd.get() == -1);
    CHECK_FALSE(fd.valid());
    CHECK_FALSE(static_cast<bool>(fd));
    fd.reset();  // closing nothing is fine
    CHECK(fd.get() == -1);
}

TEST_CASE("every way an owner lets go closes the descriptor") {
    struct Case {
        const char* name;
        std::function<void(Fd&)> end;  // ends the ownership of the Fd passed in
    };
    const Case cases[] = {
        {"destructor", [](Fd& fd) { Fd gone(std::move(fd)); }},
        {"reset()", [](Fd& fd) { fd.reset(); }},
        {"reset(other)", [](Fd& fd) { fd.reset(open_null()); }},
        {"move-assign over it", [](Fd& fd) { fd = Fd(open_null()); }},
        {"move-assign an empty Fd over it", [](Fd& fd) { fd = Fd(); }},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        int raw = open_null();
        Fd fd(raw);
        CHECK(fd.get() == raw);
        CHECK(fd.valid());
        c.end(fd);
        CHECK(is_closed(raw));
        CHECK(fd.get() != raw);
    }
}

TEST_CASE("the destructor closes") {
    int raw = open_null();
    {
        Fd fd(raw);
        CHECK(is_open(raw));
    }
    CHECK(is_closed(raw));
}

TEST_CASE("move construction transfers ownership") {
    int raw = open_null();
    Fd a(raw);
    Fd b(std::move(a));
    CHECK(b.get() == raw);
    CHECK(a.get() == -1);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
    CHECK_FALSE(a.valid());
    CHECK(is_open(raw));
    a.reset();  // the moved-from Fd must not close what b owns
    CHECK(is_open(raw));
    b.reset();
    CHECK(is_closed(raw));
}

TEST_CASE("move assignment closes the old descriptor and takes the new one") {
    int old_raw = open_null();
    int new_raw = open_null();
    Fd target(old_raw);
    Fd source(new_raw);
    target = std::move(source);
    CHECK(is_closed(old_raw));
    CHECK(target.get() == new_raw);
    CHECK(is_open(new_raw));
    CHECK(source.get() == -1);  // NOLINT(bugprone-use-after-move)
    {
        Fd drop(std::move(source));  // destroying the moved-from shell closes nothing
    }
    CHECK(is_open(new_raw));
}

TEST_CASE("self-move keeps the descriptor open and owned") {
    int raw = open_null();
    Fd fd(raw);
    Fd& alias = fd;  // through a reference, so the compiler's -Wself-move stays quiet
    fd = std::move(alias);
    CHECK(fd.get() == raw);
    CHECK(is_open(raw));
}

TEST_CASE("release() hands the descriptor over without closing it") {
    int raw = open_null();
    int taken = -1;
    {
        Fd fd(raw);
        taken = fd.release();
        CHECK(fd.get() == -1);
        CHECK_FALSE(fd.valid());
    }
    CHECK(taken == raw);
    CHECK(is_open(raw));
    ::close(raw);
}

TEST_CASE("reset(same number) keeps the descriptor open") {
    int raw = open_null();
    Fd fd(raw);
    fd.reset(raw);
    CHECK(fd.get() == raw);
    CHECK(is_open(raw));
}

TEST_CASE("reset() preserves errno") {
    // A close that succeeds and a close that fails (EBADF) must both leave the
    // caller's errno alone: code often resets an Fd between a failing call
    // and the line that reports its errno.
    struct Case {
        const char* name;
        int raw;
    };
    const Case cases[] = {
        {"close succeeds", open_null()},
        {"close fails with EBADF", unused_number()},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        Fd fd(c.raw);
        errno = EDOM;  // a sentinel no close() ever reports
        fd.reset();
        CHECK(errno == EDOM);
        CHECK(fd.get() == -1);
        CHECK(is_closed(c.raw));
    }
}

TEST_CASE("FdRef borrows and never closes") {
    int raw = open_null();
    Fd owner(raw);
    {
        FdRef from_fd = owner;  // implicit: a function taking FdRef accepts an Fd
        FdRef from_int(raw);
        FdRef copy = from_fd;
        CHECK(from_fd.get() == raw);
        CHECK(from_int.get() == raw);
        CHECK(copy.get() == raw);
    }
    CHECK(is_open(raw));
    CHECK(owner.get() == raw);

    constexpr FdRef stdin_ref(0);
    static_assert(stdin_ref.get() == 0);
}
