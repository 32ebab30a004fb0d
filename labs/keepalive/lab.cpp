// Lab keepalive — a dead peer goes unnoticed for hours unless you ask.
// Claim:   TCP sends nothing on an idle connection, so a peer whose link was
//          cut is noticed only by keepalive: after tcp_keepalive_time (from
//          /proc: hours), and only on sockets with SO_KEEPALIVE. TCP_KEEPIDLE,
//          TCP_KEEPINTVL and TCP_KEEPCNT notice it in the seconds they say;
//          TCP_USER_TIMEOUT bounds how long sent data may stay unacknowledged.
// Needs:   root for the cut link (two network namespaces, a veth pair):
//          labs/keepalive/run.sh sets them up, runs the lab, removes them.
// Observe: make lab-keepalive; tests/labs -k keepalive
#include "lab.h"
#include "net.h"

#include <fcntl.h>
#include <fstream>
#include <net/if.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>

using ladder::Fd;

namespace {

constexpr int kIdle = 1, kIntvl = 1, kCnt = 3;  // seconds, seconds, probes
constexpr int kUserTimeoutMs = 2000;
constexpr int kDeadlineMs = 12000;  // the lab stops waiting after this

long proc(const char* name) {
    long v = -1;
    std::ifstream(std::string("/proc/sys/net/ipv4/") + name) >> v;
    return v;
}

void set(const Fd& fd, int level, int option, int value, const char* name) {
    lab::check(::setsockopt(fd.get(), level, option, &value, sizeof value), name);
}

// New sockets belong to the network namespace the thread is in; a socket
// stays in the one it was made in. `path`: /run/netns/NAME.
void enter_netns(const std::string& path) {
    Fd ns(lab::check(::open(path.c_str(), O_RDONLY | O_CLOEXEC), "open(" + path + ")"));
    lab::check(::setns(ns.get(), CLONE_NEWNET), "setns(" + path + ")");
}

// Clears IFF_UP on `dev` in the namespace of the socket `in_ns`: `ip link
// set dev down`. The veth's other end then has no carrier: the link is cut.
void link_down(const Fd& in_ns, const std::string& dev) {
    ifreq ifr{};
    dev.copy(ifr.ifr_name, IFNAMSIZ - 1);
    lab::check(::ioctl(in_ns.get(), SIOCGIFFLAGS, &ifr), "ioctl(SIOCGIFFLAGS)");
    ifr.ifr_flags = short(ifr.ifr_flags & ~IFF_UP);
    lab::check(::ioctl(in_ns.get(), SIOCSIFFLAGS, &ifr), "ioctl(SIOCSIFFLAGS)");
}

struct Conn {
    const char* what;
    Fd fd, peer;
    double noticed_ms = -1;  // from the cut until the kernel gave up; -1 = not yet
    int err = 0;             // SO_ERROR, read at the end
    unsigned retrans = 0;    // segments resent, from TCP_INFO
    bool established = false;
};

// Four connections, each with other options: idle with the defaults, idle
// with keepalive, sending with a user timeout, sending with the defaults.
std::vector<Conn> open_conns(const Fd& listener, const ladder::Address& at) {
    std::vector<Conn> c(4);
    const char* what[] = {"defaults, idle:", "keepalive 1 s, 1 s x 3:",
                          "user timeout 2 s, sent 4 B:", "defaults, sent 4 B:"};
    for (int i = 0; i < 4; ++i) {
        c[i].what = what[i];
        c[i].fd.reset(lab::check(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    }
    set(c[1].fd, SOL_SOCKET, SO_KEEPALIVE, 1, "setsockopt(SO_KEEPALIVE)");
    set(c[1].fd, IPPROTO_TCP, TCP_KEEPIDLE, kIdle, "setsockopt(TCP_KEEPIDLE)");
    set(c[1].fd, IPPROTO_TCP, TCP_KEEPINTVL, kIntvl, "setsockopt(TCP_KEEPINTVL)");
    set(c[1].fd, IPPROTO_TCP, TCP_KEEPCNT, kCnt, "setsockopt(TCP_KEEPCNT)");
    set(c[2].fd, IPPROTO_TCP, TCP_USER_TIMEOUT, kUserTimeoutMs,
        "setsockopt(TCP_USER_TIMEOUT)");
    for (Conn& x : c) {
        lab::check(::connect(x.fd.get(), at.get(), at.length), "connect(" + at.text + ")");
        // Kept open: the peer never closes, it vanishes.
        x.peer = lab::tcp_accept(listener);
    }
    return c;
}

// Until the deadline: the kernel giving up on a connection is POLLERR.
// Returns how long it watched.
double wait_for_errors(std::vector<Conn>& c, double cut) {
    for (double left; (left = cut + kDeadlineMs - lab::now_ms()) > 0;) {
        std::vector<pollfd> p;
        for (Conn& x : c)
            p.push_back({x.fd.get(), short(x.noticed_ms < 0 ? POLLERR : 0), 0});
        if (lab::check(::poll(p.data(), p.size(), int(left) + 1), "poll") == 0) break;
        for (std::size_t i = 0; i < c.size(); ++i)
            if (p[i].revents && c[i].noticed_ms < 0) c[i].noticed_ms = lab::now_ms() - cut;
        if (c[1].noticed_ms >= 0 && c[2].noticed_ms >= 0) break;  // the two that should
    }
    for (Conn& x : c) {
        tcp_info info{};
        socklen_t len = sizeof info;
        lab::check(::getsockopt(x.fd.get(), IPPROTO_TCP, TCP_INFO, &info, &len),
                   "TCP_INFO");
        x.retrans = info.tcpi_total_retrans;
        x.established = info.tcpi_state == TCP_ESTABLISHED;
        len = sizeof x.err;
        lab::check(::getsockopt(x.fd.get(), SOL_SOCKET, SO_ERROR, &x.err, &len),
                   "SO_ERROR");
    }
    return lab::now_ms() - cut;
}

// args: SERVER_NETNS CLIENT_NETNS SERVER_DEV SERVER_IP (from run.sh).
std::vector<Conn> cut_link(const std::vector<std::string>& a, double& watched_ms) {
    enter_netns(a[0]);
    Fd listener = ladder::listen_tcp(a[3], 0, false);
    ladder::Address at = ladder::parse_address(a[3], lab::port_of(listener));
    enter_netns(a[1]);
    std::vector<Conn> c = open_conns(listener, at);
    double cut = lab::now_ms();
    link_down(listener, a[2]);
    for (int i : {2, 3}) lab::check(::send(c[i].fd.get(), "ping", 4, MSG_NOSIGNAL), "send");
    watched_ms = wait_for_errors(c, cut);
    return c;
}

// The defaults, from /proc and from a fresh socket. Returns the seconds
// until keepalive, once switched on, drops a dead peer.
long defaults(lab::Facts& facts, int& keepalive_on) {
    long time = proc("tcp_keepalive_time"), intvl = proc("tcp_keepalive_intvl"),
         probes = proc("tcp_keepalive_probes");
    long dead_s = time + intvl * probes;
    Fd fresh(lab::check(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket"));
    socklen_t len = sizeof keepalive_on;
    lab::check(::getsockopt(fresh.get(), SOL_SOCKET, SO_KEEPALIVE, &keepalive_on, &len),
               "getsockopt(SO_KEEPALIVE)");
    std::printf(
        "Defaults: SO_KEEPALIVE is %s on a new socket; with it, the first probe "
        "after %ld s idle,\n  then %ld probes %ld s apart: a dead peer is noticed "
        "after %ld s (%.1f hours).\n",
        keepalive_on ? "on" : "off", time, probes, intvl, dead_s, double(dead_s) / 3600);
    facts.add("default_so_keepalive", keepalive_on);
    facts.add("default_dead_s", dead_s);
    facts.add("tcp_retries2", proc("tcp_retries2"));
    return dead_s;
}

void report(lab::Facts& facts, const std::vector<Conn>& c, double watched_ms, long dead_s) {
    std::printf(
        "The server's end of the veth went down; what each client socket saw in "
        "the %.1f s after:\n",
        watched_ms / 1e3);
    for (std::size_t i = 0; i < c.size(); ++i) {
        if (c[i].noticed_ms >= 0)
            std::printf("  %-28s noticed after %5.0f ms: %s (%u segments resent)\n",
                        c[i].what, c[i].noticed_ms, ladder::errno_text(c[i].err).c_str(),
                        c[i].retrans);
        else
            std::printf("  %-28s nothing noticed, %s (%u segments resent)\n", c[i].what,
                        c[i].established ? "still ESTABLISHED" : "not ESTABLISHED",
                        c[i].retrans);
        std::string key = "conn" + std::to_string(i);
        facts.add(key + "_noticed_ms", c[i].noticed_ms);
        facts.add(key + "_error", lab::errno_name(c[i].err));
        facts.add(key + "_retrans", c[i].retrans);
        facts.add(key + "_established", c[i].established);
    }
    if (c[1].noticed_ms > 0)
        std::printf(
            "The defaults would have taken %ld s: %.0f times as long as keepalive "
            "set to %d + %d x %d s.\n",
            dead_s, double(dead_s) * 1e3 / c[1].noticed_ms, kIdle, kIntvl, kCnt);
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run("lab-keepalive", argc, argv, [](lab::Facts& facts, auto& args) {
        int on = -1;
        long dead_s = defaults(facts, on);
        facts.add("cut_link", args.size() == 5 && args[0] == "--netns");
        if (args.size() != 5 || args[0] != "--netns") {
            std::printf(
                "The cut-link half needs two network namespaces: run as root\n"
                "  labs/keepalive/run.sh build/bin/lab-keepalive\n");
            lab::verdict(on == 0,
                         "a new socket sends no keepalive probes; switched on, "
                         "they take hours to notice a dead peer");
            return;
        }
        double watched_ms = 0;
        std::vector<Conn> c = cut_link({args.begin() + 1, args.end()}, watched_ms);
        report(facts, c, watched_ms, dead_s);
        bool lesson = c[0].noticed_ms < 0 && c[3].noticed_ms < 0 && c[1].err == ETIMEDOUT &&
                      c[2].err == ETIMEDOUT;
        lab::verdict(lesson,
                     "only the sockets that asked noticed the dead peer, in the "
                     "seconds they set");
    });
}
