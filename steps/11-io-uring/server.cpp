// Step 11 — io_uring: the kernel does the I/O, the loop handles completions.
// Adds:    io_uring_prep_multishot_accept, io_uring_prep_recv, io_uring_prep_send, io_uring_submit_and_wait.
// Why:     one io_uring_enter hands the kernel a batch and returns many completions.
// Costs:   the kernel owns a buffer until its completion; closing cancels what is in flight.
// Observe: make step-11; make test-steps PYTEST_ARGS='-k "11 and uring"'

#include "conn.h"
#include "error.h"
#include "net.h"
#include "options.h"
#include "protocol_limits.h"
#include "signals.h"
#include "stats.h"

#include <liburing.h>

#include <atomic>
#include <bit>
#include <cassert>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <latch>
#include <memory>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace {

using ladder::Clock;
using ladder::Conn;

constexpr ladder::StepInfo kStep{
    .summary = "Step 11 — io_uring: the kernel accepts, receives and sends; the loop reaps.",
};
constexpr unsigned kEntries = 4096;          // submission slots; twice as many completion slots
constexpr int kBuffers = 256;                // receive buffers per ring (--buffers) ...
constexpr unsigned kBufferSize = 16 * 1024;  // ... of 16 KiB: 4 MiB for all its connections
constexpr int kGroup = 0;                    // the buffer group a receive selects from

// What the rings use, chosen once at start: what the kernel offers, the buffers.
struct Features {
    std::string kernel;           // uname -r
    bool multishot_recv = true;   // Linux 6.0: one receive SQE keeps receiving
    bool deferred = true;         // Linux 6.1: completions run only while we wait
    unsigned buffers = kBuffers;  // in a ring of the next power of two slots
};

// What a completion is for: the operation in the low byte, the socket above.
enum Op : std::uint8_t { kAccept, kRecv, kSend, kTick, kStopped, kListener, kCancel };
std::uint64_t tag(Op op, int fd = 0) { return std::uint64_t(fd) << 8 | op; }

// What the kernel holds for one connection. While anything is in flight
// its socket stays open and its buffers stay where they are.
struct Ops {
    bool recv = false;  // a receive is armed (multishot: until a CQE without F_MORE)
    bool send = false;  // a send is in flight: output() is the kernel's until it completes
    bool fin = false;   // the FIN came during a send: on_eof() once the send is done
};

struct Counts {  // beside Stats: what the rings did, for the stats line
    std::atomic<std::uint64_t> submits{0};      // SQEs handed to the kernel
    std::atomic<std::uint64_t> completions{0};  // CQEs reaped
    std::atomic<std::uint64_t> nobufs{0};       // receives that found the buffer ring empty
};

// Memory from mmap, unmapped on destruction.
struct Mapping {
    void* addr = MAP_FAILED;
    std::size_t size = 0;
    Mapping() = default;
    Mapping(const Mapping&) = delete;
    ~Mapping() {
        if (addr != MAP_FAILED) ::munmap(addr, size);
    }
};

// One io_uring: the submission and completion queues the kernel shares with us.
struct Ring {
    io_uring queues{};
    bool up = false;
    Ring() = default;
    Ring(const Ring&) = delete;
    ~Ring() {
        if (up) io_uring_queue_exit(&queues);
    }
};

struct Loop {
    ladder::Fd listener;
    ladder::Mode mode;
    ladder::Stats& stats;
    ladder::Timeouts timeouts;
    ladder::WorkerCounters& worker;  // this ring's own counts, in stats
    Counts& counts;
    Features features;
    ladder::ConnTable conns = {};
    std::vector<Ops> ops = {};  // by descriptor, as conns
    __kernel_timespec tick = {.tv_sec = 1, .tv_nsec = 0};
    Mapping memory = {};        // the buffer ring's slots, then its buffers
    io_uring_buf_ring* buffers = nullptr;
    Ring ring = {};  // last: torn down first, before the memory the kernel writes to
};

unsigned slots(const Loop& loop) { return std::bit_ceil(loop.features.buffers); }

char* buffer(Loop& loop, unsigned id) {
    return static_cast<char*>(loop.memory.addr) + slots(loop) * sizeof(io_uring_buf) +
           std::size_t(id) * kBufferSize;
}

// Hands buffer `id` back to the kernel: the next receive may take it.
void give_back(Loop& loop, unsigned id) {
    io_uring_buf_ring_add(loop.buffers, buffer(loop, id), kBufferSize,
                          static_cast<unsigned short>(id), io_uring_buf_ring_mask(slots(loop)), 0);
    io_uring_buf_ring_advance(loop.buffers, 1);
}

// A free submission slot. A full queue is submitted first: the kernel
// copies the SQEs it takes, so their slots are free again at once.
io_uring_sqe* get_sqe(Loop& loop) {
    io_uring_sqe* sqe = io_uring_get_sqe(&loop.ring.queues);
    if (!sqe) {
        int n = io_uring_submit(&loop.ring.queues);
        if (n < 0) ladder::throw_sys("io_uring_submit", -n);
        ladder::bump(loop.counts.submits, unsigned(n));
        sqe = io_uring_get_sqe(&loop.ring.queues);
        assert(sqe && "a submitted queue has free slots");
    }
    return sqe;
}

// Asks the kernel to cancel the operation tagged `target`, or (fd >= 0)
// every operation on that socket. Its CQE says nothing we need.
void cancel(Loop& loop, std::uint64_t target, int fd = -1) {
    io_uring_sqe* sqe = get_sqe(loop);
    if (fd >= 0)
        io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    else
        io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, tag(kCancel));
}

// [snip:uring-accept]
// One SQE accepts every client from now on: each gives a CQE with its new
// socket and IORING_CQE_F_MORE, until an error ends it (a CQE without).
void arm_accept(Loop& loop) {
    io_uring_sqe* sqe = get_sqe(loop);
    io_uring_prep_multishot_accept(sqe, loop.listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tag(kAccept));
}
// [/snip]

// [snip:uring-recv]
// Asks for this client's next bytes without naming a buffer:
// IOSQE_BUFFER_SELECT lets the kernel take one from the ring when bytes
// arrive, so a connection waiting for its client holds no buffer at all.
void arm_recv(Loop& loop, Conn& c) {
    io_uring_sqe* sqe = get_sqe(loop);
    if (loop.features.multishot_recv)
        io_uring_prep_recv_multishot(sqe, c.fd.get(), nullptr, 0, 0);
    else
        io_uring_prep_recv(sqe, c.fd.get(), nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kGroup;
    io_uring_sqe_set_data64(sqe, tag(kRecv, c.fd.get()));
    loop.ops[c.fd.get()].recv = true;
}
// [/snip]

// [snip:uring-send]
// Sends the output as it is. The kernel reads it when the socket has room,
// maybe after this call returns: nothing may append to output() or move it
// until the CQE says the send is over, so one send at a time.
void arm_send(Loop& loop, Conn& c) {
    std::string_view out = c.session.output().readable();
    io_uring_sqe* sqe = get_sqe(loop);
    // MSG_NOSIGNAL: a client that has gone is EPIPE, not a SIGPIPE.
    io_uring_prep_send(sqe, c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(kSend, c.fd.get()));
    loop.ops[c.fd.get()].send = true;
}
// [/snip]

// [snip:uring-close]
// A receive or send the kernel still holds keeps the socket open (it holds
// the socket, not its number): close() now would leave the client without
// a FIN, and give the number to the next client while the old operations'
// CQEs, tagged with it, are still to come. So cancel them, and close once
// the last CQE has come: the kernel has let go of the connection's buffers.
void close_conn(Loop& loop, Conn& c) {
    Ops& ops = loop.ops[c.fd.get()];
    c.session.abort();  // nothing more to read or send
    if (ops.recv || ops.send) {
        cancel(loop, 0, c.fd.get());
    } else {
        ladder::bump(loop.stats.counters().closed);
        loop.conns.remove(c);  // closes the socket
    }
}
// [/snip]

// [snip:uring-rewatch]
// A completion has been handled: answer what has arrived, and hand the
// kernel what this connection needs next — a send of its output, a receive
// when none is armed — or start closing it. A session that stops reading
// (its output above the high-water mark, or closing) has its multishot
// receive cancelled: it would go on filling the input otherwise. So does
// one whose send is out: process() waits for it, and a client that does
// not read keeps that send out while the receive fills the input for ever.
void rewatch(Loop& loop, Conn& c) {
    Ops& ops = loop.ops[c.fd.get()];
    if (!ops.send) {
        if (std::exchange(ops.fin, false)) c.session.on_eof();
        c.session.process();
        if (!c.session.output().empty()) arm_send(loop, c);
    }
    if (c.session.done()) return close_conn(loop, c);
    bool piling_up = ops.send && c.session.input().size() > ladder::kOutputHighWater;
    bool read = c.session.want().read && !piling_up;
    if (read && !ops.recv && !ops.fin)
        arm_recv(loop, c);
    else if (!read && ops.recv)
        cancel(loop, tag(kRecv, c.fd.get()));  // a second one finds none: harmless
    c.rearm(Clock::now(), loop.timeouts);
}
// [/snip]

// A new client: its Conn, and a receive armed before its bytes exist.
void add_conn(Loop& loop, int fd) {
    ladder::bump(loop.stats.counters().accepted);
    ladder::bump(loop.worker.accepted);
    ladder::bump(loop.worker.connections);
    Conn& c = loop.conns.add(ladder::Fd(fd), loop.mode, loop.stats);
    c.session.count_requests_in(&loop.worker.requests);
    c.deadline = loop.timeouts.deadline(Clock::now(), false);
    if (std::size_t(fd) >= loop.ops.size()) loop.ops.resize(std::size_t(fd) + 1);
    loop.ops[fd] = {};
    arm_recv(loop, c);
}

// [snip:uring-on-accept]
// A multishot accept's completion: res is a new client's socket, or -errno.
// Without IORING_CQE_F_MORE the accept has ended: arm it again. Out of
// descriptors (EMFILE) it ends at once each time, as the kernel takes a
// descriptor before it looks at the queue: so turn the waiting clients away
// (the spare-descriptor trick), then wait for the listener to be readable
// — a new client — before accepting again. No spin.
void on_accept(Loop& loop, const io_uring_cqe& cqe) {
    bool more = cqe.flags & IORING_CQE_F_MORE;
    if (cqe.res >= 0) {
        add_conn(loop, cqe.res);
    } else if (cqe.res == -EMFILE || cqe.res == -ENFILE) {
        while (ladder::refuse_one_client(loop.listener, -cqe.res, loop.stats.counters())) {
        }
        io_uring_sqe* sqe = get_sqe(loop);
        io_uring_prep_poll_add(sqe, loop.listener.get(), POLLIN);
        io_uring_sqe_set_data64(sqe, tag(kListener));
        return;
    } else if (cqe.res != -ECANCELED && cqe.res != -EINTR &&
               !ladder::client_gone_before_accept(-cqe.res)) {
        ladder::throw_sys("accept (io_uring)", -cqe.res);
    }
    if (!more && !ladder::stop_requested()) arm_accept(loop);
}
// [/snip]

// [exercise:recv]
// [snip:uring-on-recv]
// A receive completed: its bytes are in one of the ring's buffers already
// (the buffer's id is in the CQE's flags). Copy them into the session's
// input and give the buffer back at once: the ring runs dry only while
// many receives complete together. 0 is the client's FIN; -ENOBUFS: the
// ring was empty when bytes came, so they wait in the socket and rewatch
// receives again, once this batch has given its buffers back.
void on_readable(Loop& loop, Conn& c, const io_uring_cqe& cqe) {
    Ops& ops = loop.ops[c.fd.get()];
    if (!(cqe.flags & IORING_CQE_F_MORE)) ops.recv = false;
    if (cqe.res > 0) {
        assert(cqe.flags & IORING_CQE_F_BUFFER);
        unsigned id = cqe.flags >> IORING_CQE_BUFFER_SHIFT;
        // A session that stopped reading at the high-water mark keeps these
        // bytes: they have left the socket. One that is closing (an error
        // answered, Connection: close) will never read them: drop them.
        bool paused = c.session.output().size() > ladder::kOutputHighWater;
        if (c.session.want().read || paused) {
            char* room = c.session.input().writable(std::size_t(cqe.res)).data();
            std::memcpy(room, buffer(loop, id), std::size_t(cqe.res));
            c.session.input().commit(std::size_t(cqe.res));
        }
        give_back(loop, id);
    } else if (cqe.res == 0) {
        ops.fin = true;  // on_eof() in rewatch, once no send holds the output
    } else if (cqe.res == -ENOBUFS) {
        ladder::bump(loop.counts.nobufs);
    } else if (cqe.res != -ECANCELED) {
        c.session.abort();  // ECONNRESET: this client only
    }
}
// [/snip]
// [/exercise]

// [snip:uring-on-send]
// A send completed: res bytes of output() have gone — fewer than asked
// when the socket's buffer filled (a short send); rewatch sends the rest.
// EPIPE, ECONNRESET: this client only.
void on_writable(Loop& loop, Conn& c, const io_uring_cqe& cqe) {
    loop.ops[c.fd.get()].send = false;
    if (c.session.done()) return;  // aborted meanwhile: its output was dropped
    if (cqe.res >= 0)
        c.session.output().consume(std::size_t(cqe.res));
    else if (cqe.res != -ECANCELED)
        c.session.abort();
}
// [/snip]

// Once a second: close the connections past their deadline.
void on_tick(Loop& loop) {
    loop.conns.close_expired(Clock::now(), [&](Conn& c) {
        if (c.session.done()) return;  // closing already: being cancelled
        ladder::bump(loop.stats.counters().timeouts);
        close_conn(loop, c);
    });
    io_uring_sqe* sqe = get_sqe(loop);
    io_uring_prep_timeout(sqe, &loop.tick, 0, 0);  // a timer is one more operation
    io_uring_sqe_set_data64(sqe, tag(kTick));
}

void on_completion(Loop& loop, const io_uring_cqe& cqe) {
    std::uint64_t data = io_uring_cqe_get_data64(&cqe);
    int fd = int(data >> 8);
    switch (Op(data & 0xff)) {
    case kAccept: on_accept(loop, cqe); break;
    case kListener:  // readable again after EMFILE: accept again
        if (!ladder::stop_requested()) arm_accept(loop);
        break;
    case kTick: on_tick(loop); break;
    case kStopped: ladder::request_stop(); break;  // stop_fd() is readable: the stop has begun
    case kCancel: break;
    case kRecv:
    case kSend: {
        Conn* c = loop.conns.find(fd);
        assert(c && "a connection outlives its operations");
        bool closing = c->session.done();
        if (Op(data & 0xff) == kRecv)
            on_readable(loop, *c, cqe);
        else
            on_writable(loop, *c, cqe);
        if (!closing)
            rewatch(loop, *c);
        else if (!loop.ops[fd].recv && !loop.ops[fd].send)
            close_conn(loop, *c);  // the last of its operations: close it now
        break;
    }
    }
}

// Takes one client off the accept queue with accept4, as step 06 does.
// False when there is none to take now.
bool accept_one(Loop& loop) {
    int fd = ::accept4(loop.listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno == EAGAIN) return false;  // the queue is empty
        if (errno == EMFILE || errno == ENFILE)
            return ladder::refuse_one_client(loop.listener, errno, loop.stats.counters());
        if (errno == EINTR || ladder::client_gone_before_accept(errno)) return true;
        ladder::throw_sys("accept4");
    }
    add_conn(loop, fd);
    return true;
}

void run(Loop& loop) {
    ladder::Drain drain;
    auto close = [&](Conn& c) {
        if (!c.session.done()) close_conn(loop, c);
    };
    // At a stop: cancel the multishot accept (no new clients), and take the
    // clients already queued now, or closing the listener would reset them.
    auto take_queue = [&] {
        cancel(loop, 0, loop.listener.get());
        while (accept_one(loop)) {
        }
    };
    while (!drain.finished(loop.conns, close, take_queue)) {
        // [snip:submit-and-wait]
        // One system call: the kernel takes every SQE prepared since the last
        // one, runs what it can at once, and returns when a CQE is there.
        int submitted = io_uring_submit_and_wait(&loop.ring.queues, 1);
        ladder::bump(loop.stats.counters().wakeups);
        ladder::bump(loop.worker.wakeups);
        if (submitted < 0 && submitted != -EINTR)
            ladder::throw_sys("io_uring_submit_and_wait", -submitted);
        if (submitted > 0) ladder::bump(loop.counts.submits, unsigned(submitted));
        // The CQEs are in memory we share with the kernel: reading them is no
        // system call. Mark them seen in one go at the end.
        unsigned head = 0, seen = 0;
        io_uring_cqe* cqe = nullptr;
        io_uring_for_each_cqe(&loop.ring.queues, head, cqe) {
            on_completion(loop, *cqe);
            ++seen;
        }
        io_uring_cq_advance(&loop.ring.queues, seen);
        ladder::bump(loop.counts.completions, seen);
        // [/snip]
    }
}

// [snip:uring-setup]
// Why io_uring_setup failed, for the one line main prints.
std::string why_no_io_uring(int err) {
    if (err == ENOSYS) return "this kernel has no io_uring, or a seccomp filter hides it";
    if (err == ENOMEM) return "the ring needs locked memory: raise ulimit -l";
    if (err != EPERM) return {};
    std::ifstream file("/proc/sys/kernel/io_uring_disabled");
    int disabled = 0;
    file >> disabled;
    if (disabled == 2) return "io_uring is disabled here (sysctl kernel.io_uring_disabled=2)";
    if (disabled == 1)
        return "io_uring is for kernel.io_uring_group only (sysctl kernel.io_uring_disabled=1)";
    return "a seccomp filter forbids io_uring (a container's default profile?)";
}

// The ring, and the buffer ring its receives take buffers from: an array
// of {address, length, id} slots in memory shared with the kernel, which
// consumes slots at its head while we add returned buffers at the tail.
void setup_ring(Loop& loop) {
    io_uring_params params{};
    params.flags = IORING_SETUP_SUBMIT_ALL |
                   (loop.features.deferred ? IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
                                           : IORING_SETUP_COOP_TASKRUN);
    if (int err = io_uring_queue_init_params(kEntries, &loop.ring.queues, &params); err < 0)
        ladder::throw_sys("io_uring_setup", -err, why_no_io_uring(-err));
    loop.ring.up = true;
    loop.memory.size = slots(loop) * sizeof(io_uring_buf) + loop.features.buffers * kBufferSize;
    loop.memory.addr = ::mmap(nullptr, loop.memory.size, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (loop.memory.addr == MAP_FAILED) ladder::throw_sys("mmap(buffer ring)");
    loop.buffers = static_cast<io_uring_buf_ring*>(loop.memory.addr);
    io_uring_buf_ring_init(loop.buffers);
    io_uring_buf_reg reg{.ring_addr = reinterpret_cast<std::uintptr_t>(loop.memory.addr),
                         .ring_entries = slots(loop), .bgid = kGroup, .pad = 0, .resv = {}};
    if (int err = io_uring_register_buf_ring(&loop.ring.queues, &reg, 0); err < 0)
        ladder::throw_sys("io_uring_register_buf_ring", -err);
    for (unsigned id = 0; id < loop.features.buffers; ++id) give_back(loop, id);
}
// [/snip]

// Arms what the loop always waits for: clients, the stop, the tick.
void start_ring(Loop& loop) {
    setup_ring(loop);
    arm_accept(loop);
    io_uring_sqe* sqe = get_sqe(loop);
    io_uring_prep_poll_add(sqe, ladder::stop_fd(), POLLIN);  // not a read: every ring sees it
    io_uring_sqe_set_data64(sqe, tag(kStopped));
    sqe = get_sqe(loop);
    io_uring_prep_timeout(sqe, &loop.tick, 0, 0);
    io_uring_sqe_set_data64(sqe, tag(kTick));
    // Submitted now, before the ready line: the kernel reads an accept's
    // descriptor limit (RLIMIT_NOFILE) when it takes the SQE.
    int n = io_uring_submit(&loop.ring.queues);
    if (n < 0) ladder::throw_sys("io_uring_submit", -n);
    ladder::bump(loop.counts.submits, unsigned(n));
}

// Multishot accept and buffer rings came in Linux 5.19, multishot receive
// in 6.0, deferred task work in 6.1: the version says which to use.
Features choose_features(bool single_recv, int buffers) {
    utsname u{};
    if (::uname(&u) != 0) ladder::throw_sys("uname");
    int major = 0, minor = 0;
    std::sscanf(u.release, "%d.%d", &major, &minor);
    int version = major * 100 + minor;
    if (version < 519)
        throw std::runtime_error(std::string("Linux ") + u.release +
                                 " lacks multishot accept and buffer rings (5.19 or later)");
    return {.kernel = u.release, .multishot_recv = version >= 600 && !single_recv,
            .deferred = version >= 601, .buffers = unsigned(buffers)};
}

std::string describe(const Features& f, int threads) {
    return "io_uring on Linux " + f.kernel + ": multishot accept, " +
           (f.multishot_recv ? "multishot" : "single-shot") + " recv, " +
           std::to_string(f.buffers) + " x " + std::to_string(kBufferSize / 1024) +
           " KiB buffer ring, " + (f.deferred ? "deferred" : "cooperative") + " task work; " +
           std::to_string(threads) + (threads == 1 ? " ring" : " rings");
}

// [snip:reuseport]
// Ring i's listener, as step 08's: SO_REUSEPORT before bind() lets every
// ring bind the same address, and the kernel hashes each new connection to one.
ladder::Fd open_listener(const ladder::Options& options, std::uint16_t port) {
    ladder::Address addr = ladder::parse_address(options.host, port);
    ladder::Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) ladder::throw_sys("socket", errno, ladder::hint_for(errno));
    int on = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
        ladder::throw_sys("setsockopt(SO_REUSEADDR)");
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
        ladder::throw_sys("setsockopt(SO_REUSEPORT)");
    if (::bind(fd.get(), addr.get(), addr.length) != 0)
        ladder::throw_sys("bind(" + addr.text + ")", errno, ladder::hint_for(errno));
    if (::listen(fd.get(), ladder::kBacklog) != 0)
        ladder::throw_sys("listen(" + addr.text + ")");
    return fd;
}
// [/snip]

// Ring 0 runs on the main thread, ring i > 0 on a thread of its own, which
// makes its ring (IORING_SETUP_SINGLE_ISSUER: only that thread submits).
// The ready line comes once every ring has armed its accept: a multishot
// accept submitted later would read a descriptor limit changed meanwhile.
// A ring that fails stops the server, and main reports why.
void run_rings(std::vector<std::unique_ptr<Loop>>& loops) {
    std::vector<std::exception_ptr> failures(loops.size());
    std::latch armed(std::ptrdiff_t(loops.size() - 1));
    std::atomic<bool> unarmed{false};
    std::vector<std::thread> threads;
    try {
        for (std::size_t i = 1; i < loops.size(); ++i)
            threads.emplace_back([&, i] {
                bool up = false;
                try {
                    start_ring(*loops[i]);
                    up = true;
                    armed.count_down();
                    run(*loops[i]);
                } catch (...) {
                    failures[i] = std::current_exception();
                    ladder::request_stop();
                    if (!up) {
                        unarmed = true;
                        armed.count_down();
                    }
                }
            });
    } catch (...) {
        failures[0] = std::current_exception();  // a thread could not start
        ladder::request_stop();
        unarmed = true;
        armed.count_down(std::ptrdiff_t(loops.size() - 1 - threads.size()));
    }
    armed.wait();
    try {
        if (!unarmed) {
            ladder::announce_listening(loops[0]->listener);
            run(*loops[0]);
        }
    } catch (...) {
        failures[0] = std::current_exception();
        ladder::request_stop();
    }
    for (std::thread& t : threads) t.join();
    for (std::exception_ptr& f : failures)
        if (f) std::rethrow_exception(f);
}

}  // namespace

int main(int argc, char** argv) try {
    ladder::Timeouts timeouts;
    std::vector<ladder::Flag> flags = timeouts.flags();
    int threads = 1, buffers = kBuffers;
    bool single_recv = false, probe = false;
    flags.push_back({.name = "threads", .help = "rings, each on its own thread and listener",
                     .target = &threads, .min = 1, .max = 256});
    flags.push_back({.name = "single-recv",
                     .help = "one receive per SQE, re-armed each time (as before Linux 6.0)",
                     .target = &single_recv});
    flags.push_back({.name = "buffers", .help = "receive buffers per ring, 16 KiB each (256)",
                     .target = &buffers, .min = 1, .max = 32768});
    flags.push_back({.name = "probe", .help = "say whether io_uring can run here, and exit",
                     .target = &probe});
    ladder::Options options = ladder::parse_options(argc, argv, kStep, flags);
    ladder::install_stop_handlers();
    ladder::raise_fd_limit();
    Features features = choose_features(single_recv, buffers);
    ladder::Stats stats(kStep.number, ladder::to_string(options.mode), threads);
    Counts counts;
    stats.set_extra([&](std::string& out) {
        ladder::json_field(out, "submits", counts.submits.load());
        ladder::json_field(out, "completions", counts.completions.load());
        ladder::json_field(out, "nobufs", counts.nobufs.load());
        ladder::json_field(out, "recv", features.multishot_recv ? "multishot" : "single");
    });
    std::vector<std::unique_ptr<Loop>> loops;
    for (int i = 0; i < (probe ? 1 : threads); ++i) {
        // With --port 0 the first listener gets a port; the others join it.
        std::uint16_t port = i == 0 ? options.port : ladder::local_port(loops[0]->listener);
        loops.push_back(std::unique_ptr<Loop>(new Loop{
            .listener = probe ? ladder::Fd() : open_listener(options, port), .mode = options.mode,
            .stats = stats, .timeouts = timeouts, .worker = stats.worker(i), .counts = counts,
            .features = features}));
    }
    if (probe) {
        setup_ring(*loops[0]);
        std::printf("%s\n", describe(features, threads).c_str());
        return 0;
    }
    start_ring(*loops[0]);  // here: where io_uring is refused, no thread has started
    std::fprintf(stderr, "%s: %s\n", kStep.program.data(), describe(features, threads).c_str());
    run_rings(loops);
    std::printf("%s\n", stats.json().c_str());
    return 0;
} catch (const std::exception& e) {
    return ladder::report_fatal(kStep.program, e);
}
