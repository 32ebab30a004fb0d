// TODO: watch: one epoll_ctl() that tells the kernel what to watch on `fd`.
// rewatch: close a finished session, or tell the kernel when the want
// changed (EPOLL_CTL_MOD); EPOLLOUT only while output waits.
void watch(Loop& loop, int op, int fd, std::uint32_t events) {
    throw std::logic_error("not written yet: watch (exercise 05-rewatch)");
}

// Closing a socket also takes it off every epoll interest list.
void close_conn(Loop& loop, Conn& c) {
    ladder::bump(loop.stats.counters().closed);
    loop.conns.remove(c);  // closes the socket
}

void rewatch(Loop& loop, Conn& c, ladder::Want want) {
    throw std::logic_error("not written yet: rewatch (exercise 05-rewatch)");
}
