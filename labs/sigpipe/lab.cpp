// Lab sigpipe — the second send to a closed peer kills the process.
// Claim:   to a peer that has closed, the first send succeeds and draws an
//          RST; the second raises SIGPIPE, whose default action kills the
//          process (shown in a child). With SIGPIPE ignored, or with
//          MSG_NOSIGNAL on the call, that send fails with EPIPE instead.
// Observe: make lab-sigpipe; tests/labs -k sigpipe
#include "lab.h"

#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

using ladder::Fd;

namespace {

enum class Guard { none, ignore, nosignal };
const char* const kGuardName[] = {"default action", "SIG_IGN", "MSG_NOSIGNAL"};
const char* const kGuardKey[] = {"default", "ignore", "nosignal"};  // in the facts

// What the child saw, sent to the parent through a pipe.
struct Sends {
    ssize_t first = 0, second = 0;
    int first_err = 0, second_err = 0;
    bool rst = false;  // POLLERR after the first send: the peer's RST arrived
};

// In the child: the two sends. Writes the record after each step, so the
// parent knows how far it got if SIGPIPE kills it in the second.
[[noreturn]] void child(const Fd& sock, Guard guard, const Fd& report) {
    if (guard == Guard::ignore && ::signal(SIGPIPE, SIG_IGN) == SIG_ERR) ::_exit(3);
    int flags = guard == Guard::nosignal ? MSG_NOSIGNAL : 0;
    Sends s;
    pollfd pfd{sock.get(), POLLRDHUP, 0};
    if (::poll(&pfd, 1, 1000) != 1) ::_exit(4);  // the peer's FIN: it has closed
    s.first = ::send(sock.get(), "hello", 5, flags);
    s.first_err = s.first == -1 ? errno : 0;
    // The peer's socket is gone, so its kernel answers the data with RST;
    // on our side that is POLLERR. Waiting for it makes the order certain.
    pfd.events = 0;
    s.rst = ::poll(&pfd, 1, 1000) == 1 && (pfd.revents & POLLERR);
    if (::write(report.get(), &s, sizeof s) != sizeof s) ::_exit(5);
    s.second = ::send(sock.get(), "again", 5, flags);
    s.second_err = s.second == -1 ? errno : 0;
    if (::write(report.get(), &s, sizeof s) != sizeof s) ::_exit(5);
    ::_exit(0);
}

struct Outcome {
    Sends sends;
    bool second_done = false;  // the child lived to report its second send
    int signal = 0;            // the signal that killed the child, or 0
};

Outcome run_case(const Fd& listener, Guard guard) {
    Fd client = lab::tcp_connect(lab::port_of(listener));
    // Closed before fork: a child inherits every descriptor, and its copy
    // would keep the server's socket open, so no FIN would go out.
    lab::tcp_accept(listener).reset();
    int ends[2];
    lab::check(::pipe2(ends, O_CLOEXEC), "pipe2");
    Fd from_child(ends[0]), to_parent(ends[1]);
    pid_t pid = lab::check(::fork(), "fork");
    if (pid == 0) child(client, guard, to_parent);
    to_parent.reset();
    Outcome out;
    int status = 0;
    lab::check(ladder::retry_eintr([&] { return ::waitpid(pid, &status, 0); }), "waitpid");
    if (WIFSIGNALED(status))
        out.signal = WTERMSIG(status);
    else if (WEXITSTATUS(status) != 0)
        throw std::runtime_error("child: exit status " +
                                 std::to_string(WEXITSTATUS(status)) +
                                 " (3 signal, 4 no FIN within 1 s, 5 write)");
    // One record after the first send, a second one if it survived the second.
    ssize_t n = lab::check(::read(from_child.get(), &out.sends, sizeof out.sends), "read");
    if (n != sizeof out.sends) throw std::runtime_error("child: reported nothing");
    n = lab::check(::read(from_child.get(), &out.sends, sizeof out.sends), "read");
    out.second_done = n == sizeof out.sends;
    return out;
}

std::string signal_name(int sig) {
    return sig ? "SIG" + std::string(::sigabbrev_np(sig)) : "none";
}

std::string result(ssize_t n, int err) {
    return n >= 0 ? "returned " + std::to_string(n)
                  : "failed with " + ladder::errno_text(err);
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run("lab-sigpipe", argc, argv, [](lab::Facts& facts, auto&) {
        Fd listener = lab::tcp_listener(16);
        std::printf(
            "Each case: the peer accepts and closes; a child process sends twice.\n");
        bool lesson = true;
        for (Guard g : {Guard::none, Guard::ignore, Guard::nosignal}) {
            Outcome o = run_case(listener, g);
            const char* name = kGuardName[int(g)];
            std::printf("%-14s  1st send %s%s\n", name,
                        result(o.sends.first, o.sends.first_err).c_str(),
                        o.sends.rst ? ", and the peer answered RST" : ", no RST seen");
            if (o.signal)
                std::printf("%-14s  2nd send: the child was killed by %s\n", "",
                            signal_name(o.signal).c_str());
            else
                std::printf("%-14s  2nd send %s; the child lived\n", "",
                            result(o.sends.second, o.sends.second_err).c_str());
            std::string key = kGuardKey[int(g)];
            facts.add(key + "_first", o.sends.first);
            facts.add(key + "_rst", o.sends.rst);
            facts.add(key + "_signal", signal_name(o.signal));
            facts.add(key + "_second_error",
                      o.second_done ? lab::errno_name(o.sends.second_err) : "killed");
            lesson = lesson && o.sends.first == 5 && o.sends.rst &&
                     (g == Guard::none ? o.signal == SIGPIPE
                                       : !o.signal && o.sends.second_err == EPIPE);
        }
        lab::verdict(lesson,
                     "the first send succeeded; the second killed the process by "
                     "SIGPIPE, or failed with EPIPE when guarded");
    });
}
