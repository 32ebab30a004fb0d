// Lab backlog — listen()'s backlog bounds the connections nobody has accepted.
// Claim:   the accept queue holds finished handshakes the program has not
//          accepted yet, backlog + 1 of them; past that the kernel drops
//          SYNs, and those clients connect only when a SYN resend finds
//          room: a second instead of microseconds. net.core.somaxconn caps
//          the backlog; ss -lnt shows the queue (Recv-Q) and the cap (Send-Q).
// Observe: make lab-backlog; tests/labs -k backlog
#include "lab.h"

#include <fstream>
#include <netinet/tcp.h>
#include <poll.h>

using ladder::Fd;

namespace {

constexpr int kBacklog = 4;
constexpr int kClients = 8;

struct Client {
    Fd fd;
    double start = 0;
    double ms = -1;  // connect() to writable; -1 = not yet
};

// Waits up to `wait_ms` for the client's handshake to end.
void wait_connected(Client& c, int wait_ms) {
    pollfd pfd{c.fd.get(), POLLOUT, 0};
    if (lab::check(::poll(&pfd, 1, wait_ms), "poll") == 1) c.ms = lab::now_ms() - c.start;
}

// What ss -lnt prints for a listener comes from the same place: for a
// listening socket TCP_INFO reports the accept queue's length in
// tcpi_unacked (Recv-Q) and its limit in tcpi_sacked (Send-Q).
tcp_info info_of(const Fd& fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    lab::check(::getsockopt(fd.get(), IPPROTO_TCP, TCP_INFO, &info, &len),
               "getsockopt(TCP_INFO)");
    return info;
}

void show_ss(std::uint16_t port) {
    std::string cmd =
        "ss -lnt 'sport = :" + std::to_string(port) + "' 2>/dev/null | sed 's/^/    /'";
    std::printf("  ss -lnt for that port:\n");
    std::fflush(stdout);
    if (std::system(cmd.c_str()) != 0) std::printf("    (ss is not installed)\n");
}

int somaxconn() {
    int v = -1;
    std::ifstream("/proc/sys/net/core/somaxconn") >> v;
    return v;
}

// What the first clients saw: connected at once, or left in SYN_SENT.
struct Crowd {
    int fast = 0, syn_sent = 0;
    double fast_max = 0;  // the slowest of the fast ones, ms
    unsigned queued = 0, limit = 0;
};

// kClients connects, each given 100 ms, to a listener nobody accepts from.
Crowd crowd(const Fd& listener, std::vector<Client>& clients) {
    for (Client& c : clients) {
        c.start = lab::now_ms();
        c.fd = lab::tcp_connect_started(lab::port_of(listener));
        wait_connected(c, 100);
    }
    Crowd r;
    tcp_info q = info_of(listener);
    r.queued = q.tcpi_unacked, r.limit = q.tcpi_sacked;
    for (const Client& c : clients) {
        if (c.ms >= 0)
            ++r.fast, r.fast_max = std::max(r.fast_max, c.ms);
        else
            r.syn_sent += info_of(c.fd).tcpi_state == TCP_SYN_SENT;
    }
    return r;
}

// Accepts every queued connection, then waits for the others: every SYN
// resent after this finds room. Returns how many got in; `quickest`: ms.
int make_room(const Fd& listener, unsigned queued, std::vector<Client>& clients,
              double& quickest) {
    for (unsigned i = 0; i < queued; ++i) lab::tcp_accept(listener);
    int late = 0;
    quickest = -1;
    for (Client& c : clients) {
        if (c.ms >= 0) continue;
        wait_connected(c, 3000);
        if (c.ms < 0) continue;
        ++late;
        quickest = quickest < 0 ? c.ms : std::min(quickest, c.ms);
    }
    return late;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run("lab-backlog", argc, argv, [](lab::Facts& facts, auto&) {
        Fd listener = lab::tcp_listener(kBacklog);  // nobody calls accept() yet
        std::vector<Client> clients(kClients);
        Crowd r = crowd(listener, clients);
        std::printf("listen(fd, %d), no accept(): %d of %d clients connected at once "
                    "(slowest %.2f ms);\n  %d still in SYN_SENT: the kernel dropped their "
                    "SYN. Accept queue: %u waiting, limit %u.\n",
                    kBacklog, r.fast, kClients, r.fast_max, r.syn_sent, r.queued, r.limit);
        show_ss(lab::port_of(listener));
        double room_at = lab::now_ms() - clients[0].start, quickest = -1;
        int late = make_room(listener, r.queued, clients, quickest);
        std::printf("After accept() emptied the queue (%.0f ms after the first connect): "
                    "%d more connected, the quickest after %.0f ms: a SYN resend.\n",
                    room_at, late, quickest);
        Fd big = lab::tcp_listener(1 << 20);  // capped by net.core.somaxconn
        unsigned big_limit = info_of(big).tcpi_sacked;
        std::printf("listen(fd, %d): the kernel kept a limit of %u (net.core.somaxconn = "
                    "%d).\n", 1 << 20, big_limit, somaxconn());
        bool lesson = r.fast == kBacklog + 1 && r.queued == unsigned(r.fast) &&
                      r.syn_sent == kClients - r.fast && late == r.syn_sent &&
                      quickest > 10 * r.fast_max && int(big_limit) == somaxconn();
        lab::verdict(lesson, "the queue held backlog + 1 connections; the rest waited for "
                             "a SYN resend; somaxconn capped the backlog");
        facts.add("backlog", kBacklog);
        facts.add("clients", kClients);
        facts.add("fast", r.fast);
        facts.add("fast_max_ms", r.fast_max);
        facts.add("queued", r.queued);
        facts.add("limit", r.limit);
        facts.add("syn_sent", r.syn_sent);
        facts.add("late", late);
        facts.add("late_min_ms", quickest);
        facts.add("big_limit", big_limit);
        facts.add("somaxconn", somaxconn());
    });
}
