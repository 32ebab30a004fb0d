// Lab connect-nonblocking — connect() returns at once; SO_ERROR tells the result.
// Claim:   on a non-blocking socket connect() fails with EINPROGRESS at once;
//          the socket turning writable says the handshake ended, and
//          getsockopt(SO_ERROR) says how: 0, or ECONNREFUSED. To a listener
//          that drops SYNs (its accept queue is full) it never completes:
//          the program's own timeout ends the wait, where a blocking
//          connect() would wait out the kernel's SYN retries.
// Observe: make lab-connect-nonblocking; tests/labs -k connect
#include "lab.h"

#include <fstream>
#include <netinet/tcp.h>
#include <poll.h>

using ladder::Fd;

namespace {

constexpr int kGiveUpMs = 1500;  // our own connect timeout: past the first SYN resend (1 s)
constexpr int kSynResends = 1;   // TCP_SYNCNT for the blocking connect: the kernel's limit

struct Attempt {
    int started = 0;        // errno of connect() itself: EINPROGRESS, or 0 if it finished
    bool finished = false;  // writable within the time we gave it
    int result = 0;         // SO_ERROR once finished: 0 = connected
    double start = 0, ms = 0;  // from connect() to writable, or to giving up
    Fd fd;
};

// The non-blocking connect, and the poll that waits for its end.
Attempt attempt(std::uint16_t port, int wait_ms) {
    Attempt a;
    a.fd = Fd(lab::check(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
                         "socket"));
    sockaddr_in to = lab::loopback(port);
    a.start = lab::now_ms();
    if (::connect(a.fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == -1) {
        if (errno != EINPROGRESS) ladder::throw_sys("connect");
        a.started = EINPROGRESS;
    }
    // Writable = the handshake is over, one way or the other. POLLOUT alone
    // does not say which: a refused connect is writable (and POLLERR) too.
    pollfd pfd{a.fd.get(), POLLOUT, 0};
    a.finished = a.started == 0 || lab::check(::poll(&pfd, 1, wait_ms), "poll") == 1;
    a.ms = lab::now_ms() - a.start;
    if (a.finished) {
        socklen_t len = sizeof a.result;
        lab::check(::getsockopt(a.fd.get(), SOL_SOCKET, SO_ERROR, &a.result, &len),
                   "getsockopt(SO_ERROR)");
    }
    return a;
}

// A port on which nobody listens: bound, so no other program takes it, and
// not listening, so the kernel answers a SYN to it with RST.
Fd closed_port() {
    Fd fd(lab::check(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    sockaddr_in a = lab::loopback(0);
    lab::check(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), "bind");
    return fd;
}

// Connects until one attempt stays pending: with backlog 0 the accept queue
// holds one connection, and a listener with a full accept queue drops SYNs.
// The filler connections stay open in `fillers`.
Attempt blackholed(const Fd& listener, std::vector<Attempt>& fillers) {
    for (int i = 0; i < 8; ++i) {
        Attempt a = attempt(lab::port_of(listener), 200);
        if (!a.finished) {
            // Give it the rest of our timeout, from its own start.
            pollfd pfd{a.fd.get(), POLLOUT, 0};
            a.finished = lab::check(::poll(&pfd, 1, kGiveUpMs - 200), "poll") == 1;
            a.ms = lab::now_ms() - a.start;
            return a;
        }
        fillers.push_back(std::move(a));
    }
    throw std::runtime_error("the accept queue never filled: 8 connections completed");
}

// A blocking connect() to the same full queue, allowed only `resends` SYN
// resends (TCP_SYNCNT) instead of tcp_syn_retries: how the kernel ends it.
std::pair<int, double> blocking_connect(std::uint16_t port, int resends) {
    Fd fd(lab::check(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    lab::check(::setsockopt(fd.get(), IPPROTO_TCP, TCP_SYNCNT, &resends, sizeof resends),
               "setsockopt(TCP_SYNCNT)");
    sockaddr_in to = lab::loopback(port);
    double start = lab::now_ms();
    int r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to);
    return {r == 0 ? 0 : errno, lab::now_ms() - start};
}

tcp_info info_of(const Fd& fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    lab::check(::getsockopt(fd.get(), IPPROTO_TCP, TCP_INFO, &info, &len),
               "getsockopt(TCP_INFO)");
    return info;
}

int read_proc_int(const char* path) {
    int v = -1;
    std::ifstream(path) >> v;
    return v;
}

void report(const char* target, const Attempt& a) {
    std::printf("%-34s connect() %s; ", target,
                a.started ? "failed with EINPROGRESS at once" : "returned 0 at once");
    if (a.finished)
        std::printf("writable after %.2f ms; SO_ERROR = %s\n", a.ms,
                    a.result ? ladder::errno_text(a.result).c_str() : "0 (connected)");
    else
        std::printf("not writable after %.0f ms: we gave up\n", a.ms);
}

void add_facts(lab::Facts& facts, const std::string& key, const Attempt& a) {
    facts.add(key + "_started", lab::errno_name(a.started));
    facts.add(key + "_finished", a.finished);
    facts.add(key + "_result", lab::errno_name(a.result));
    facts.add(key + "_ms", a.ms);
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run("lab-connect-nonblocking", argc, argv, [](lab::Facts& facts, auto&) {
        Fd listener = lab::tcp_listener(16);
        Attempt ok = attempt(lab::port_of(listener), kGiveUpMs);
        Fd nobody = closed_port();
        Attempt refused = attempt(lab::port_of(nobody), kGiveUpMs);
        Fd full = lab::tcp_listener(0);  // never accepted from
        std::vector<Attempt> fillers;
        Attempt dropped = blackholed(full, fillers);
        tcp_info info = info_of(dropped.fd);
        report("to a listener:", ok);
        report("to a port with no listener:", refused);
        report("to a listener whose queue is full:", dropped);
        std::printf(
            "%-34s (%zu connection(s) filled its queue; ours is still in state %s, "
            "the kernel resent its SYN %u time(s))\n",
            "", fillers.size(), info.tcpi_state == TCP_SYN_SENT ? "SYN_SENT" : "other",
            info.tcpi_total_retrans);
        auto [blocked_err, blocked_ms] = blocking_connect(lab::port_of(full), kSynResends);
        std::printf(
            "%-34s a blocking connect() allowed %d SYN resend (TCP_SYNCNT): %s "
            "after %.0f ms\n",
            "", kSynResends, ladder::errno_text(blocked_err).c_str(), blocked_ms);
        int retries = read_proc_int("/proc/sys/net/ipv4/tcp_syn_retries");
        std::printf(
            "Without TCP_SYNCNT the kernel allows tcp_syn_retries = %d resends, "
            "each wait at least as long as the one before.\n",
            retries);
        bool lesson = ok.started == EINPROGRESS && ok.finished && ok.result == 0 &&
                      refused.finished && refused.result == ECONNREFUSED &&
                      !dropped.finished && blocked_err == ETIMEDOUT;
        lab::verdict(lesson,
                     "EINPROGRESS at once in every case; SO_ERROR told connected from "
                     "refused; the dropped SYN only ended by our own timeout");
        add_facts(facts, "ok", ok);
        add_facts(facts, "refused", refused);
        add_facts(facts, "dropped", dropped);
        facts.add("dropped_syn_sent", info.tcpi_state == TCP_SYN_SENT);
        facts.add("dropped_syn_resends", info.tcpi_total_retrans);
        facts.add("fillers", fillers.size());
        facts.add("blocking_error", lab::errno_name(blocked_err));
        facts.add("blocking_ms", blocked_ms);
        facts.add("syn_retries", retries);
    });
}
