// TODO: co_await read(desc, room), send(desc, bytes), accept(desc): make the
// non-blocking call first; only if it says EAGAIN, park the coroutine on the
// descriptor until epoll reports it, then call again. The result is the
// call's, or -errno.
struct Io {
    enum class Call { read, send, accept } call;
    PollDesc& desc;
    std::span<char> room = {};  // read
    std::string_view out = {};  // send
    bool cancellable = false;   // a stop may end the wait (ECANCELED)
    ssize_t result = 0;
    bool waited = false;

    bool await_ready() { throw std::logic_error("not written yet: Io (exercise 10-io)"); }
    bool await_suspend(Task::Handle h) {
        throw std::logic_error("not written yet: Io (exercise 10-io)");
    }
    ssize_t await_resume() { throw std::logic_error("not written yet: Io (exercise 10-io)"); }
};
