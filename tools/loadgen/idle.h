// idle.h — connections that connect and then say nothing (--idle K).
//
// They measure what an idle client costs a server: a select() or poll()
// loop pays for each one on every call; an epoll loop does not. They are
// opened before the measured load starts and watched until it ends; the
// ones the server closes are counted as lost.
//
// Each idle socket is bound to one of the source addresses 127.0.0.1 …
// 127.0.0.N (every 127/8 address is this host). The kernel keeps its
// ephemeral ports per (source, destination) pair (about 28,000 by default,
// net.ipv4.ip_local_port_range); spreading over several sources keeps a
// large K clear of that limit even when earlier runs left ports in TIME_WAIT.
//
// A process may hold no more descriptors than its RLIMIT_NOFILE, so K past
// that is held by child processes (IdleHolder), each with its own limit and
// its own share: fork()ed before any thread starts, told to connect once
// the load's connections are up, and reporting their counts on a pipe.
#pragma once

#include "fd.h"

#include <cstdint>
#include <map>
#include <string>
#include <sys/socket.h>
#include <sys/types.h>
#include <vector>

namespace loadgen {

// Idle connections held by this process.
class IdlePool {
public:
    // Sockets first..first+count-1 of all the idle ones, over `sources`
    // source addresses (1: no bind, the kernel picks the source).
    IdlePool(const sockaddr_storage& address, socklen_t length, std::string target,
             int first = 0, int sources = 1);

    // Opens `count` connections, at most kInFlight handshakes at a time; a
    // handshake not done within `timeout_s` of its start counts as failed.
    // Stops early on a stop request.
    void open(int count, double timeout_s);
    // Waits up to `ms` for the server to close some; counts and drops them.
    void watch(int ms);
    // The summary lines on stderr (what failed, how many are held).
    void report(double seconds) const;

    int requested() const { return requested_; }
    int held() const { return held_; }
    int failed() const { return failed_; }
    int closed() const { return closed_; }
    int lost() const { return failed_ + closed_; }
    // Why they failed: errno -> how many.
    const std::map<int, int>& errors() const { return errors_; }
    int epoll_fd() const { return epoll_.get(); }

private:
    void start_one(std::size_t i, std::int64_t now);
    void fail(int err);

    sockaddr_storage address_;
    socklen_t length_;
    std::string target_;
    int first_, sources_;
    ladder::Fd epoll_;
    std::vector<ladder::Fd> sockets_;
    std::vector<char> connected_;
    std::vector<std::int64_t> started_;  // when each handshake began
    int requested_ = 0, held_ = 0, connecting_ = 0, failed_ = 0, closed_ = 0;
    std::map<int, int> errors_;
};

// Every idle connection of a run: in this process, or shared out among
// child processes.
class IdleHolder {
public:
    // procs: 0 holds them here; N > 0 in N children; -1: here if `budget`
    // descriptors leave room for them, else in as many children as needed.
    // sources: 0 picks one per 2,000 on a 127/8 target (at most 250).
    IdleHolder(const sockaddr_storage& address, socklen_t length, std::string target,
               int count, int procs, int sources, long budget);
    IdleHolder(const IdleHolder&) = delete;
    IdleHolder& operator=(const IdleHolder&) = delete;
    ~IdleHolder();  // children still running are killed

    // Forks the children (before any thread exists); they wait for open().
    // A handshake not done within `timeout_s` of its start has failed.
    void fork_children(double timeout_s);
    // Connects them all (in the children, in parallel) and waits until each
    // has finished or failed; prints the summary on stderr.
    void open(double timeout_s);
    bool in_children() const { return procs_ > 0; }
    void watch(int ms);
    // Children: tells them to stop, collects their last counts, reaps them.
    void finish();

    int requested() const { return count_; }
    int held() const;
    int lost() const;
    int sources() const { return sources_; }
    int procs() const { return int(children_.size()); }
    double connect_s() const { return connect_s_; }
    // Descriptors this process needs for them.
    long descriptors() const;

private:
    struct Child {
        pid_t pid = -1;
        ladder::Fd control;  // parent → child: 'g' go, 's' stop
        ladder::Fd reports;  // child → parent: lines of counts
        std::string pending; // a line not complete yet
        int first = 0, count = 0;
        int held = 0, failed = 0, closed = 0;
        std::map<int, int> errors;
        bool opened = false, done = false;
    };
    [[noreturn]] void child_main(Child& me, double timeout_s);
    // Reads what each child has said within `ms`; true if anything came.
    bool read_reports(int ms);
    void tell_all(char what);

    sockaddr_storage address_;
    socklen_t length_;
    std::string target_;
    int count_, procs_, sources_;
    std::vector<Child> children_;
    IdlePool here_;
    double connect_s_ = 0;
};

}  // namespace loadgen
