// Lab close-rst — close() with unread input resets the connection.
// Claim:   close() on a socket that still holds unread input sends RST, not
//          FIN: the peer's recv fails with ECONNRESET once it has read what
//          had reached it, and all the closer had sent beyond that is lost.
//          shutdown(SHUT_WR), read to EOF, then close() loses nothing.
// Observe: make lab-close-rst; tests/labs -k close_rst
#include "lab.h"

#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

using ladder::Fd;

namespace {

constexpr int kRequest = 100;  // bytes the client sends and the server never reads

struct Outcome {
    long long sent = 0;      // bytes the server's send() calls accepted
    long long received = 0;  // bytes the client's recv() calls returned
    int err = 0;             // how the client's reading ended: 0 = EOF
    int queued = 0;          // in the client's receive queue when the RST came
};

// Bytes that reached a socket's receive queue and wait to be read.
int queued_bytes(const Fd& fd) {
    int n = 0;
    lab::check(::ioctl(fd.get(), SIOCINQ, &n), "ioctl(SIOCINQ)");
    return n;
}

// send() until the kernel takes no more: the client reads nothing yet, so
// its receive buffer fills and the rest waits in the server's send buffer.
// Every byte counted here was "sent" as far as the server program knows.
long long fill(const Fd& fd) {
    static char chunk[64 * 1024];
    long long total = 0;
    for (;;) {
        ssize_t n = ::send(fd.get(), chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == -1 && errno == EAGAIN) return total;
        total += lab::check(n, "send");
    }
}

// recv() until EOF or an error, counting what arrives.
void read_all(const Fd& fd, Outcome& out) {
    static char buf[64 * 1024];
    for (;;) {
        ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
        if (n == 0) return;
        if (n == -1 && errno == EINTR) continue;
        if (n == -1) {
            out.err = errno;
            return;
        }
        out.received += n;
    }
}

// A connection whose client has sent a request the server has not read,
// and whose server has sent all the kernel would take.
struct Pair {
    Fd client, server;
    long long sent = 0;
};

Pair connected_pair(const Fd& listener) {
    Pair p;
    p.client = lab::tcp_connect(lab::port_of(listener));
    p.server = lab::tcp_accept(listener);
    // A lab never hangs: a recv that waits 2 s fails with EAGAIN instead.
    timeval limit{2, 0};
    for (const Fd* fd : {&p.client, &p.server})
        lab::check(::setsockopt(fd->get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit),
                   "setsockopt(SO_RCVTIMEO)");
    char request[kRequest] = {};
    lab::check(::send(p.client.get(), request, sizeof request, 0), "send(request)");
    p.sent = fill(p.server);
    return p;
}

Outcome abortive(const Fd& listener) {
    Pair p = connected_pair(listener);
    Outcome out{p.sent};
    // The request is still in the server's receive queue: tcp_close() sees
    // unread data and sends RST instead of FIN (RFC 2525, section 2.17),
    // dropping its own send queue, which is the data still on its way.
    p.server.reset();
    // poll() always reports POLLERR and POLLHUP: with no other events asked
    // for, it returns when the RST has arrived.
    pollfd pfd{p.client.get(), 0, 0};
    if (lab::check(::poll(&pfd, 1, 2000), "poll") == 0)
        std::printf("(no RST within 2 s)\n");
    out.queued = queued_bytes(p.client);
    read_all(p.client, out);
    return out;
}

Outcome graceful(const Fd& listener) {
    Pair p = connected_pair(listener);
    // FIN after the last byte: the kernel keeps sending the send queue as the
    // client reads it, then tells it EOF.
    lab::check(::shutdown(p.server.get(), SHUT_WR), "shutdown(SHUT_WR)");
    Outcome out{p.sent};
    read_all(p.client, out);
    p.client.reset();
    // Read the request and the client's FIN: nothing unread, so close() is
    // an ordinary close and no RST is sent.
    Outcome drained;
    read_all(p.server, drained);
    if (drained.err) ladder::throw_sys("recv(server)", drained.err);
    return out;
}

void report(const char* how, const Outcome& o) {
    std::printf(
        "%s\n  the server sent %lld bytes; the client read %lld, lost %lld; "
        "its reading ended with %s\n",
        how, o.sent, o.received, o.sent - o.received,
        o.err ? ladder::errno_text(o.err).c_str() : "EOF (recv returned 0)");
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run("lab-close-rst", argc, argv, [](lab::Facts& facts, auto&) {
        Fd listener = lab::tcp_listener(16);
        Outcome rst = abortive(listener);
        Outcome fin = graceful(listener);
        std::printf(
            "The client sent %d bytes the server never read, then the server "
            "sent until its buffers were full.\n",
            kRequest);
        report("close() with the request unread:", rst);
        std::printf(
            "  %d bytes had reached the client's receive queue when the RST came: it "
            "read those, then the error;\n  the %lld still in the server's kernel "
            "were thrown away with its send queue\n",
            rst.queued, rst.sent - rst.queued);
        report("shutdown(SHUT_WR), read to EOF, close():", fin);
        bool lesson = rst.err == ECONNRESET && rst.received < rst.sent && fin.err == 0 &&
                      fin.received == fin.sent;
        lab::verdict(lesson,
                     "close() with unread input reset the connection and lost data; "
                     "draining first lost nothing");
        facts.add("rst_sent", rst.sent);
        facts.add("rst_received", rst.received);
        facts.add("rst_error", lab::errno_name(rst.err));
        facts.add("rst_queued", rst.queued);
        facts.add("fin_sent", fin.sent);
        facts.add("fin_received", fin.received);
        facts.add("fin_error", lab::errno_name(fin.err));
    });
}
