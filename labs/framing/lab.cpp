// Lab framing — TCP delivers bytes, not messages: boundaries are the program's job.
// Claim:   two send()s can arrive as one recv(), and one send() as many
//          recv()s: the stream keeps the bytes and their order, never the
//          calls that wrote them. A length prefix in front of each message
//          gives the boundaries back however the bytes are cut.
// Observe: make lab-framing; tests/labs -k framing
#include "lab.h"

#include <sys/ioctl.h>
#include <thread>
#include <unistd.h>

using ladder::Fd;

namespace {

// Writes all of `data` with send() calls of at most `chunk` bytes. A
// blocking send can still return less than asked (a signal, a timeout):
// the loop goes on from where it stopped.
void send_all(const Fd& fd, std::string_view data, std::size_t chunk) {
    while (!data.empty()) {
        ssize_t n =
            ::send(fd.get(), data.data(), std::min(chunk, data.size()), MSG_NOSIGNAL);
        if (n == -1 && errno == EINTR) continue;
        data.remove_prefix(lab::check(n, "send"));
    }
}

// Returns once `bytes` wait in the socket's receive queue (or after 2 s).
void wait_queued(const Fd& fd, int bytes) {
    for (double end = lab::now_ms() + 2000; lab::now_ms() < end;) {
        int queued = 0;
        lab::check(::ioctl(fd.get(), FIONREAD, &queued), "ioctl(FIONREAD)");
        if (queued >= bytes) return;
        lab::sleep_us(1000);
    }
}

// A length-prefixed stream: each message is a 4-byte big-endian length,
// then that many bytes.
std::string encode(const std::vector<std::string>& messages) {
    std::string out;
    for (const std::string& m : messages) {
        std::uint32_t len = htonl(std::uint32_t(m.size()));
        out.append(reinterpret_cast<const char*>(&len), 4).append(m);
    }
    return out;
}

// Takes every whole message off the front of `buffer`; a partial one stays
// there until the bytes it lacks arrive.
void decode(std::string& buffer, std::vector<std::string>& out) {
    for (;;) {
        if (buffer.size() < 4) return;
        std::uint32_t len;
        std::memcpy(&len, buffer.data(), 4);
        len = ntohl(len);
        if (buffer.size() < 4 + std::size_t(len)) return;
        out.push_back(buffer.substr(4, len));
        buffer.erase(0, 4 + len);
    }
}

struct Reads {
    int calls = 0;
    std::size_t largest = 0;
    std::string bytes;
};

// recv() with a `room`-byte buffer until `total` bytes have come.
Reads read_exactly(const Fd& fd, std::size_t total, std::size_t room) {
    Reads r;
    std::string buf(room, '\0');
    while (r.bytes.size() < total) {
        ssize_t n = ::recv(fd.get(), buf.data(), room, 0);
        if (n == -1 && errno == EINTR) continue;
        if (lab::check(n, "recv") == 0)
            throw std::runtime_error("recv: EOF before all bytes came");
        ++r.calls;
        r.largest = std::max(r.largest, std::size_t(n));
        r.bytes.append(buf.data(), std::size_t(n));
    }
    return r;
}

// recv() `room` bytes at a time, decoding as the bytes come in, until
// `count` messages are complete.
std::vector<std::string> read_messages(const Fd& fd, std::size_t count, std::size_t room,
                                       int& calls) {
    std::vector<std::string> got;
    std::string buffer, chunk(room, '\0');
    while (got.size() < count) {
        ssize_t n = ::recv(fd.get(), chunk.data(), room, 0);
        if (n == -1 && errno == EINTR) continue;
        if (lab::check(n, "recv") == 0)
            throw std::runtime_error("recv: EOF before all messages");
        ++calls;
        buffer.append(chunk.data(), std::size_t(n));
        decode(buffer, got);
    }
    return got;
}

// Two small sends, read after both have arrived.
bool two_sends(const Fd& out, const Fd& in, lab::Facts& facts) {
    send_all(out, "hello", 5);
    send_all(out, "world", 5);
    wait_queued(in, 10);
    Reads joined = read_exactly(in, 1, 4096);  // one recv(): whatever is there
    std::printf("Two send()s of 5 bytes; the first recv() returned %zu bytes: \"%s\".\n",
                joined.largest, joined.bytes.c_str());
    facts.add("joined_bytes", joined.largest);
    return joined.largest == 10;
}

// One large send (in a thread: it blocks until the reader makes room).
bool one_send(const Fd& out, const Fd& in, lab::Facts& facts) {
    const std::string big(4 << 20, 'x');
    std::thread sender([&] { send_all(out, big, big.size()); });
    Reads split = read_exactly(in, big.size(), big.size());
    sender.join();
    std::printf("One send() of %zu bytes, read into a buffer as large: %d recv() calls "
                "(the largest %zu bytes).\n", big.size(), split.calls, split.largest);
    std::printf("A program that took each recv() for a message saw 1 message instead of "
                "2, then %d instead of 1.\n", split.calls);
    facts.add("split_bytes", big.size());
    facts.add("split_recvs", split.calls);
    facts.add("split_largest", split.largest);
    return split.calls > 1;
}

// Length-prefixed messages in one stream, read 3 bytes per recv(): fewer
// than a length prefix, so every prefix arrives cut in two.
bool framed(const Fd& out, const Fd& in, lab::Facts& facts) {
    std::vector<std::string> sent = {"hello", "", std::string(50000, 'm'), "bye"};
    std::string stream = encode(sent);
    std::thread sender([&] { send_all(out, stream, stream.size()); });
    int calls = 0;
    std::vector<std::string> got = read_messages(in, sent.size(), 3, calls);
    sender.join();
    bool same = got == sent;
    std::printf("Length-prefixed: %zu messages (5, 0, 50000 and 3 bytes) in one send(), "
                "read 3 bytes per recv() (%d calls):\n  %zu messages decoded, %s.\n",
                sent.size(), calls, got.size(), same ? "each identical" : "NOT the same");
    facts.add("frames_sent", sent.size());
    facts.add("frames_decoded", got.size());
    facts.add("frames_identical", same);
    facts.add("frame_recvs", calls);
    return same;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run("lab-framing", argc, argv, [](lab::Facts& facts, auto&) {
        Fd listener = lab::tcp_listener(16);
        Fd out = lab::tcp_connect(lab::port_of(listener));
        Fd in = lab::tcp_accept(listener);
        bool joined = two_sends(out, in, facts);
        bool split = one_send(out, in, facts);
        bool kept = framed(out, in, facts);
        lab::verdict(joined && split && kept,
                     "the stream joined two sends and split one; the length prefix "
                     "recovered every message");
    });
}
