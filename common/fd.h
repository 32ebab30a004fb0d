// fd.h — an owning, move-only file descriptor and a non-owning view of one.
//
//   Fd     owns: closes on destruction, on reset() and on move-assignment.
//   FdRef  borrows: never closes; cheap to copy; what functions take.
//
// No implicit conversion to int: the raw number is spelled .get(), so every
// place that leaves RAII is visible.
#pragma once

#include <utility>

namespace ladder {

class FdRef;

class Fd {
public:
    Fd() noexcept = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    ~Fd() { reset(); }

    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }

    // Hands the descriptor to the caller, who must close it.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

    // Closes the current descriptor (if any) and owns `fd` instead.
    // errno is preserved, and close() is never retried on EINTR: on Linux the
    // descriptor is released even when close reports EINTR, and a retry
    // could close a descriptor another thread has just been given.
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

class FdRef {
public:
    explicit constexpr FdRef(int fd) noexcept : fd_(fd) {}
    FdRef(const Fd& fd) noexcept : fd_(fd.get()) {}  // NOLINT: borrowing is implicit by design
    constexpr int get() const noexcept { return fd_; }

private:
    int fd_;
};

}  // namespace ladder
