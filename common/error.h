// error.h — system-call errors that name the call, its arguments and errno.
//
//   bind(127.0.0.1:8080): EADDRINUSE (Address already in use)
//
// Setup code throws sys_error(...); main() prints e.what() and exits 1.
// Per-connection code never throws: it inspects results and closes that
// connection only.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>

namespace ladder {

// "EADDRINUSE (Address already in use)"
std::string errno_text(int err);

// A std::system_error whose what() is "<call>: <errno_text>[ — <hint>]".
std::system_error sys_error(std::string_view call, int err = errno,
                            std::string_view hint = {});

[[noreturn]] inline void throw_sys(std::string_view call, int err = errno,
                                   std::string_view hint = {}) {
    throw sys_error(call, err, hint);
}

// Runs f() again while it fails with EINTR (a signal arrived mid-call).
// Never use it for close(): see Fd::reset.
template <class F>
auto retry_eintr(F f) {
    for (;;) {
        auto r = f();
        if (!(r == -1 && errno == EINTR)) return r;
    }
}

// Prints "step-NN: <what>" to stderr; returns the exit status for main.
int report_fatal(std::string_view program, const std::exception& e);

}  // namespace ladder
