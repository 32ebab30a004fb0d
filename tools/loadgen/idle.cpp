#include "idle.h"

#include "error.h"
#include "net.h"  // raise_fd_limit
#include "signals.h"
#include "worker.h"  // now_ns

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace loadgen {

namespace {

constexpr int kInFlight = 1024;   // handshakes under way at once, per process
constexpr int kPerSource = 2000;  // idle sockets per source address, by default
constexpr int kMaxSources = 250;  // 127.0.0.1 … 127.0.0.250
constexpr long kSpareFds = 64;    // a child's descriptors besides its sockets

bool is_loopback_v4(const sockaddr_storage& a) {
    if (a.ss_family != AF_INET) return false;
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
}

int pick_sources(const sockaddr_storage& address, int count, int asked) {
    if (!is_loopback_v4(address)) {
        if (asked > 1)
            throw std::invalid_argument(
                "--idle-sources needs a 127/8 --host: only loopback has those source addresses");
        return 1;
    }
    return asked > 0 ? asked : std::clamp(count / kPerSource + 1, 1, kMaxSources);
}

void print_summary(const std::string& target, int count, int held, int failed, int closed,
                   const std::map<int, int>& errors, int sources, int procs, double seconds) {
    if (failed > 0) {
        std::string why;
        for (auto [err, n] : errors)
            why += (why.empty() ? "" : ", ") + ladder::errno_text(err) + " x" + std::to_string(n);
        std::fprintf(stderr, "loadgen: %d of %d idle connections to %s failed: %s\n", failed,
                     count, target.c_str(), why.c_str());
    }
    std::fprintf(stderr,
                 "loadgen: holding %d idle connections (from %d source address%s, "
                 "%d process%s) in %.2f s\n",
                 held, sources, sources > 1 ? "es" : "", std::max(procs, 1),
                 procs > 1 ? "es" : "", seconds);
    if (closed > 0)
        std::fprintf(stderr, "loadgen: the server closed %d idle connections at once\n",
                     closed);
}

void write_line(int fd, const std::string& line) {
    // A pipe takes up to PIPE_BUF bytes at once, whole: these lines are short.
    while (::write(fd, line.data(), line.size()) < 0 && errno == EINTR) {
    }
}

}  // namespace

// -- IdlePool: the idle connections of this process

IdlePool::IdlePool(const sockaddr_storage& address, socklen_t length, std::string target,
                   int first, int sources)
    : address_(address),
      length_(length),
      target_(std::move(target)),
      first_(first),
      sources_(sources),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) ladder::throw_sys("epoll_create1");
}

void IdlePool::fail(int err) {
    ++failed_;
    ++errors_[err];
}

void IdlePool::start_one(std::size_t i, std::int64_t now) {
    started_[i] = now;
    ladder::Fd fd(
        ::socket(address_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail(errno);
    if (sources_ > 1) {
        sockaddr_in source{};
        source.sin_family = AF_INET;
        source.sin_addr.s_addr =
            htonl((127u << 24) | unsigned(1 + (std::size_t(first_) + i) % std::size_t(sources_)));
        // Choose the port at connect(), from the whole 4-tuple, not at bind()
        // from the address alone: otherwise each source gets only one set of
        // ports for every destination together.
        int on = 1;
        if (::setsockopt(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof on))
            return fail(errno);
        if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&source), sizeof source) != 0)
            return fail(errno);
    }
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLRDHUP;
    ev.data.u64 = std::uint64_t(i);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) return fail(errno);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address_), length_) != 0 &&
        errno != EINPROGRESS)
        return fail(errno);
    sockets_[i] = std::move(fd);
    ++connecting_;
}

void IdlePool::open(int count, double timeout_s) {
    requested_ = count;
    if (count == 0) return;
    auto total = std::size_t(count);
    sockets_.resize(total);
    connected_.assign(total, 0);
    started_.assign(total, 0);
    const auto timeout = std::int64_t(timeout_s * 1e9);
    std::vector<epoll_event> events(512);
    std::size_t next = 0, oldest = 0;  // oldest: the first that may still be connecting
    for (;;) {
        std::int64_t now = now_ns();
        while (next < total && connecting_ < kInFlight) start_one(next++, now);
        std::int64_t wait_ns = 100'000'000;
        if (oldest < next && started_[oldest] > 0)
            wait_ns = std::min(wait_ns, started_[oldest] + timeout - now);
        int n = ::epoll_wait(epoll_.get(), events.data(), int(events.size()),
                             int(std::max<std::int64_t>(wait_ns / 1'000'000 + 1, 0)));
        if (n < 0 && errno != EINTR) ladder::throw_sys("epoll_wait");
        for (int k = 0; k < n; ++k) {
            auto i = std::size_t(events[std::size_t(k)].data.u64);
            ladder::Fd& fd = sockets_[i];
            if (!fd) continue;
            if (connected_[i]) {  // connected earlier, and already closed by the server
                fd.reset();
                --held_;
                ++closed_;
                continue;
            }
            --connecting_;
            if (events[std::size_t(k)].events & (EPOLLERR | EPOLLHUP)) {
                int err = 0;
                socklen_t len = sizeof err;
                ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
                fail(err ? err : ECONNREFUSED);
                fd.reset();
                continue;
            }
            // Connected: from now on only a close by the server is news.
            epoll_event ev{};
            ev.events = EPOLLRDHUP;
            ev.data.u64 = i;
            if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd.get(), &ev) != 0)
                ladder::throw_sys("epoll_ctl(MOD, idle socket)");
            connected_[i] = 1;
            ++held_;
        }
        // Handshakes past their time count as failed: a full accept queue
        // drops SYNs, and the retry comes a second later, then three... They
        // started in order, so the oldest are at the front; what has
        // completed was taken just above, however slow this loop was.
        now = now_ns();
        while (oldest < next) {
            if (!sockets_[oldest] || connected_[oldest]) {
                ++oldest;
                continue;
            }
            if (now - started_[oldest] < timeout) break;
            sockets_[oldest].reset();
            --connecting_;
            fail(ETIMEDOUT);
            ++oldest;
        }
        if ((next == total && connecting_ == 0) || ladder::stop_requested()) break;
    }
    // Stopped early: what is still connecting, and what was never started.
    for (std::size_t i = 0; i < total; ++i) {
        if (i >= next || (sockets_[i] && !connected_[i])) {
            sockets_[i].reset();
            fail(i >= next ? ECANCELED : ETIMEDOUT);
        }
    }
    connecting_ = 0;
    watch(0);
}

void IdlePool::report(double seconds) const {
    print_summary(target_, requested_, held_, failed_, closed_, errors_, sources_, 1,
                  seconds);
}

void IdlePool::watch(int ms) {
    epoll_event events[256];
    int n = 0;
    do {
        n = ::epoll_wait(epoll_.get(), events, 256, ms);
        if (n < 0 && errno != EINTR) ladder::throw_sys("epoll_wait");
        for (int k = 0; k < n; ++k) {
            auto i = std::size_t(events[k].data.u64);
            if (!sockets_[i]) continue;
            // The server closed (or reset) it: an idle client it dropped.
            sockets_[i].reset();
            --held_;
            ++closed_;
        }
        ms = 0;  // then take whatever else is already there
    } while (n == 256);
}

// -- IdleHolder: here, or in child processes

IdleHolder::IdleHolder(const sockaddr_storage& address, socklen_t length, std::string target,
                       int count, int procs, int sources, long budget)
    : address_(address),
      length_(length),
      target_(std::move(target)),
      count_(count),
      procs_(0),
      sources_(pick_sources(address, count, sources)),
      here_(address, length, target_, 0, sources_) {
    long per_child = ladder::raise_fd_limit() - kSpareFds;
    if (procs < 0)
        procs = count <= budget ? 0 : int((count + per_child - 1) / std::max(per_child, 1L));
    procs_ = std::min(procs, count);
    if (procs_ > 0 && (count + procs_ - 1) / procs_ > per_child)
        throw std::runtime_error(
            "--idle " + std::to_string(count) + " over --idle-procs " + std::to_string(procs_) +
            " is more than a process may hold (" + std::to_string(per_child) +
            " descriptors each); use more processes, or leave --idle-procs out");
}

IdleHolder::~IdleHolder() {
    for (Child& c : children_) {
        if (c.pid <= 0) continue;
        ::kill(c.pid, SIGKILL);
        while (::waitpid(c.pid, nullptr, 0) < 0 && errno == EINTR) {
        }
    }
}

long IdleHolder::descriptors() const { return procs_ == 0 ? count_ : 2L * procs_; }

void IdleHolder::fork_children(double timeout_s) {
    children_.resize(std::size_t(procs_));
    const pid_t parent = ::getpid();
    for (int k = 0, first = 0; k < procs_; ++k) {
        Child& c = children_[std::size_t(k)];
        c.first = first;
        c.count = count_ / procs_ + (k < count_ % procs_);
        first += c.count;
        int control[2], reports[2];
        if (::pipe2(control, O_CLOEXEC) != 0) ladder::throw_sys("pipe2");
        ladder::Fd control_read(control[0]), control_write(control[1]);
        if (::pipe2(reports, O_CLOEXEC) != 0) ladder::throw_sys("pipe2");
        ladder::Fd reports_read(reports[0]), reports_write(reports[1]);
        std::fflush(nullptr);  // nothing buffered is written twice
        pid_t pid = ::fork();
        if (pid < 0) ladder::throw_sys("fork");
        if (pid == 0) {
            // The child: the pipes of the children before it are the parent's.
            for (int j = 0; j < k; ++j) {
                children_[std::size_t(j)].control.reset();
                children_[std::size_t(j)].reports.reset();
            }
            // Killed with its parent, however the parent ends.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(1);
            c.control = std::move(control_read);
            c.reports = std::move(reports_write);
            child_main(c, timeout_s);
        }
        c.pid = pid;
        c.control = std::move(control_write);
        c.reports = std::move(reports_read);
    }
}

void IdleHolder::child_main(Child& me, double timeout_s) {
    int status = 0;
    try {
        ladder::handle_stop_signals_in_child();  // SIGTERM from the parent: stop
        char what = 0;
        for (;;) {  // wait for the word: the load's connections are up
            ssize_t n = ::read(me.control.get(), &what, 1);
            if (n == 1) break;
            if (n == 0 || errno != EINTR || ladder::stop_requested()) ::_exit(0);
        }
        if (what != 'g') ::_exit(0);
        IdlePool pool(address_, length_, target_, me.first, sources_);
        pool.open(me.count, timeout_s);
        std::ostringstream line;
        line << "opened " << pool.held() << ' ' << pool.failed() << ' ' << pool.closed();
        for (auto [err, n] : pool.errors()) line << ' ' << err << ':' << n;
        line << '\n';
        write_line(me.reports.get(), line.str());
        int said = pool.held();
        while (!ladder::stop_requested()) {
            pollfd fds[2] = {{me.control.get(), POLLIN, 0}, {pool.epoll_fd(), POLLIN, 0}};
            int n = ::poll(fds, 2, -1);
            if (n < 0 && errno != EINTR) ladder::throw_sys("poll");
            if (n <= 0) continue;
            if (fds[0].revents) break;  // 's', or the parent has gone
            pool.watch(0);
            if (pool.held() != said) {
                said = pool.held();
                write_line(me.reports.get(), "held " + std::to_string(said) + ' ' +
                                                 std::to_string(pool.closed()) + '\n');
            }
        }
        write_line(me.reports.get(), "final " + std::to_string(pool.held()) + ' ' +
                                         std::to_string(pool.closed()) + '\n');
    } catch (const std::exception& e) {
        std::fprintf(stderr, "loadgen: idle process: %s\n", e.what());
        status = 1;
    }
    ::_exit(status);  // the sockets close with the process
}

void IdleHolder::tell_all(char what) {
    for (Child& c : children_)
        if (c.control) {
            while (::write(c.control.get(), &what, 1) < 0 && errno == EINTR) {
            }
        }
}

bool IdleHolder::read_reports(int ms) {
    std::vector<pollfd> fds;
    std::vector<Child*> whose;
    for (Child& c : children_)
        if (!c.done) {
            fds.push_back({c.reports.get(), POLLIN, 0});
            whose.push_back(&c);
        }
    if (fds.empty()) return false;
    int n = ::poll(fds.data(), fds.size(), ms);
    if (n < 0 && errno != EINTR) ladder::throw_sys("poll");
    if (n <= 0) return false;
    for (std::size_t k = 0; k < fds.size(); ++k) {
        if (!fds[k].revents) continue;
        Child& c = *whose[k];
        char buffer[512];
        ssize_t got = ::read(c.reports.get(), buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {  // it has exited (or died): its last counts stand
            c.done = c.opened = true;
            continue;
        }
        c.pending.append(buffer, std::size_t(got));
        for (std::size_t end; (end = c.pending.find('\n')) != std::string::npos;) {
            std::istringstream line(c.pending.substr(0, end));
            c.pending.erase(0, end + 1);
            std::string word;
            line >> word;
            if (word == "opened") {
                line >> c.held >> c.failed >> c.closed;
                std::string pair;
                while (line >> pair)
                    if (auto colon = pair.find(':'); colon != std::string::npos)
                        c.errors[std::stoi(pair.substr(0, colon))] +=
                            std::stoi(pair.substr(colon + 1));
                c.opened = true;
            } else if (word == "held" || word == "final") {
                line >> c.held >> c.closed;
            }
        }
    }
    return true;
}

void IdleHolder::open(double timeout_s) {
    std::int64_t start = now_ns();
    if (procs_ == 0) {
        here_.open(count_, timeout_s);
        connect_s_ = double(now_ns() - start) / 1e9;
        if (count_ > 0) here_.report(connect_s_);
        return;
    }
    tell_all('g');
    bool stopping = false;
    auto all_opened = [&] {
        return std::all_of(children_.begin(), children_.end(),
                           [](const Child& c) { return c.opened; });
    };
    while (!all_opened()) {
        read_reports(100);
        if (ladder::stop_requested() && !stopping) {
            stopping = true;  // a child stops opening at its next look
            for (Child& c : children_) ::kill(c.pid, SIGTERM);
        }
    }
    connect_s_ = double(now_ns() - start) / 1e9;
    int failed = 0, closed = 0;
    std::map<int, int> errors;
    for (const Child& c : children_) {
        failed += c.failed;
        closed += c.closed;
        for (auto [err, n] : c.errors) errors[err] += n;
    }
    print_summary(target_, count_, held(), failed, closed, errors, sources_, procs_,
                  connect_s_);
}

void IdleHolder::watch(int ms) {
    if (procs_ == 0) return here_.watch(ms);
    read_reports(ms);
}

void IdleHolder::finish() {
    if (procs_ == 0) return;
    tell_all('s');
    std::int64_t give_up = now_ns() + 10'000'000'000;
    while (std::any_of(children_.begin(), children_.end(),
                       [](const Child& c) { return !c.done; }) &&
           now_ns() < give_up)
        read_reports(100);
    for (Child& c : children_) {
        if (!c.done) ::kill(c.pid, SIGKILL);
        while (::waitpid(c.pid, nullptr, 0) < 0 && errno == EINTR) {
        }
        c.pid = -1;
    }
}

int IdleHolder::held() const {
    if (procs_ == 0) return here_.held();
    int sum = 0;
    for (const Child& c : children_) sum += c.held;
    return sum;
}

int IdleHolder::lost() const {
    if (procs_ == 0) return here_.lost();
    int sum = 0;
    for (const Child& c : children_) sum += c.failed + c.closed;
    return sum;
}

}  // namespace loadgen
