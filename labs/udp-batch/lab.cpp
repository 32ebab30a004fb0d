// Lab udp-batch — recvmmsg: many datagrams per system call; SO_REUSEPORT spreads them.
// Claim:   for a burst of datagrams recvfrom() costs one system call each,
//          recvmmsg() with 64 slots up to 64 per call, and less CPU per
//          datagram (both measured in the same run, bursts alternated).
//          UDP sockets sharing a port with SO_REUSEPORT split the senders
//          between them by a hash of the source: each sender sticks to one.
// Observe: make lab-udp-batch; tests/labs -k udp
#include "lab.h"

#include <algorithm>
#include <poll.h>
#include <stdexcept>

using ladder::Fd;

namespace {

constexpr int kBurst = 256;  // datagrams per burst: fits the receive buffer
constexpr int kRounds = 40;  // bursts per method, alternated
constexpr int kSlots = 64;   // recvmmsg's vector
constexpr int kSize = 64;    // bytes per datagram
constexpr int kSockets = 4, kSenders = 64, kPerSender = 4;  // the SO_REUSEPORT part

Fd udp_socket(bool reuseport) {
    Fd fd(lab::check(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
                     "socket"));
    int on = 1;
    if (reuseport)
        lab::check(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on),
                   "setsockopt(SO_REUSEPORT)");
    return fd;
}

// 0, or bind's errno.
int bind_loopback(const Fd& fd, std::uint16_t port) {
    sockaddr_in a = lab::loopback(port);
    return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 ? 0 : errno;
}

double thread_cpu_ns() {
    timespec t{};
    lab::check(::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t), "clock_gettime");
    return double(t.tv_sec) * 1e9 + double(t.tv_nsec);
}

// One receive call: how many datagrams it returned, 0 for EAGAIN.
int receive(const Fd& fd, bool batch) {
    static char bufs[kSlots][kSize];
    if (!batch) {
        ssize_t n = ::recvfrom(fd.get(), bufs[0], kSize, 0, nullptr, nullptr);
        if (n == -1 && errno == EAGAIN) return 0;
        lab::check(n, "recvfrom");
        return 1;
    }
    iovec iov[kSlots];
    mmsghdr msgs[kSlots] = {};
    for (int i = 0; i < kSlots; ++i) {
        iov[i] = {bufs[i], kSize};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = ::recvmmsg(fd.get(), msgs, kSlots, MSG_DONTWAIT, nullptr);
    if (n == -1 && errno == EAGAIN) return 0;
    return lab::check(n, "recvmmsg");
}

struct Tally {
    long long sent = 0, datagrams = 0, calls = 0;
    double cpu_ns = 0;
};

// Sends a burst, then drains it with one method, timing only the receiver.
void burst(const Fd& tx, const Fd& rx, bool batch, Tally& t) {
    char payload[kSize] = {};
    for (int i = 0; i < kBurst; ++i)
        lab::check(::send(tx.get(), payload, kSize, 0), "send");
    t.sent += kBurst;
    double cpu = thread_cpu_ns();
    int got = 0;
    for (double end = lab::now_ms() + 500; got < kBurst && lab::now_ms() < end;) {
        int n = receive(rx, batch);
        ++t.calls;  // a call that finds nothing costs too
        got += n;
        pollfd pfd{rx.get(), POLLIN, 0};
        if (n == 0) lab::check(::poll(&pfd, 1, 10), "poll");
    }
    t.cpu_ns += thread_cpu_ns() - cpu;
    t.datagrams += got;
}

bool batching(lab::Facts& facts) {
    Fd rx = udp_socket(false);
    if (int err = bind_loopback(rx, 0)) ladder::throw_sys("bind", err);
    Fd tx = udp_socket(false);
    sockaddr_in to = lab::loopback(lab::port_of(rx));
    lab::check(::connect(tx.get(), reinterpret_cast<sockaddr*>(&to), sizeof to), "connect");
    Tally one, many;
    for (int r = 0; r < 2 * kRounds; ++r) burst(tx, rx, r % 2 == 1, r % 2 ? many : one);
    for (auto [name, t] : {std::pair{"recvfrom:", &one}, {"recvmmsg(64):", &many}}) {
        std::printf(
            "  %-14s %lld of %lld datagrams in %lld calls: %5.1f per call, %6.0f ns "
            "of CPU each\n",
            name, t->datagrams, t->sent, t->calls, double(t->datagrams) / double(t->calls),
            t->cpu_ns / double(t->datagrams));
    }
    for (auto [key, t] : {std::pair{"recvfrom", &one}, {"recvmmsg", &many}}) {
        facts.add(std::string(key) + "_sent", t->sent);
        facts.add(std::string(key) + "_datagrams", t->datagrams);
        facts.add(std::string(key) + "_calls", t->calls);
        facts.add(std::string(key) + "_cpu_ns", t->cpu_ns / double(t->datagrams));
    }
    return one.datagrams == one.sent && many.datagrams == many.sent &&
           many.calls * 10 < one.calls && many.cpu_ns < one.cpu_ns;
}

// Reads socket k's datagrams, noting in `landed` which sender each came from.
int drain(const Fd& fd, int k, std::vector<std::vector<int>>& landed) {
    int count = 0;
    for (;;) {
        int sender = -1;
        ssize_t n = ::recv(fd.get(), &sender, sizeof sender, 0);
        if (n == -1 && errno == EAGAIN) return count;  // all read
        if (lab::check(n, "recv") != sizeof sender || sender < 0 || sender >= kSenders)
            throw std::runtime_error("recv: a datagram this lab did not send");
        ++count;
        landed[std::size_t(sender)].push_back(k);
    }
}

// kSenders sockets, each with its own source port, send kPerSender
// datagrams (payload: the sender's number) to kSockets sockets on one port.
bool spreading(lab::Facts& facts) {
    std::vector<Fd> rx;
    for (int k = 0; k < kSockets; ++k) {
        rx.push_back(udp_socket(true));
        std::uint16_t port = k ? lab::port_of(rx[0]) : 0;
        if (int err = bind_loopback(rx[k], port))
            ladder::throw_sys("bind(SO_REUSEPORT)", err);
    }
    std::uint16_t port = lab::port_of(rx[0]);
    int plain_err = bind_loopback(udp_socket(false), port);  // the port is taken without it
    sockaddr_in to = lab::loopback(port);
    for (int s = 0; s < kSenders; ++s) {
        Fd tx = udp_socket(false);
        for (int i = 0; i < kPerSender; ++i)
            lab::check(::sendto(tx.get(), &s, sizeof s, 0, reinterpret_cast<sockaddr*>(&to),
                                sizeof to),
                       "sendto");
    }
    std::vector<std::vector<int>> landed(kSenders);  // the sockets each sender reached
    std::printf("  %d senders x %d datagrams to %d sockets on port %u; per socket:",
                kSenders, kPerSender, kSockets, port);
    int used = 0;
    for (int k = 0; k < kSockets; ++k) {
        int count = drain(rx[k], k, landed);
        std::printf(" %d", count);
        used += count > 0;
        facts.add("socket" + std::to_string(k), count);
    }
    int split =
        int(std::count_if(landed.begin(), landed.end(), [](const std::vector<int>& l) {
            return l.empty() ||
                   !std::all_of(l.begin(), l.end(), [&](int k) { return k == l[0]; });
        }));
    std::printf(
        "\n  senders whose datagrams went to more than one socket (or were lost): %d\n"
        "  a 5th socket without SO_REUSEPORT on that port: bind %s\n",
        split, plain_err ? ladder::errno_text(plain_err).c_str() : "succeeded");
    facts.add("sockets_used", used);
    facts.add("senders_split", split);
    facts.add("plain_bind", lab::errno_name(plain_err));
    return used == kSockets && split == 0 && plain_err == EADDRINUSE;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run("lab-udp-batch", argc, argv, [](lab::Facts& facts, auto&) {
        std::printf("%d bursts of %d datagrams of %d bytes per method, alternated:\n",
                    kRounds, kBurst, kSize);
        bool batched = batching(facts);
        std::printf("SO_REUSEPORT:\n");
        bool spread = spreading(facts);
        lab::verdict(batched && spread,
                     "recvmmsg took 64 datagrams per call for less CPU each; SO_REUSEPORT "
                     "spread the senders over every socket, each sender on one");
    });
}
