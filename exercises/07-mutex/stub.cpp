// TODO: nginx's accept mutex. take_accept_mutex: try_lock it (never lock),
// and make the epoll set agree: the listener is in it exactly while this
// worker holds the mutex; return how long to wait. release: let it go.
int take_accept_mutex(Loop& loop, int wait_ms) {
    throw std::logic_error("not written yet: take_accept_mutex (exercise 07-mutex)");
}

void release_accept_mutex(Loop& loop) {
    throw std::logic_error("not written yet: release_accept_mutex (exercise 07-mutex)");
}
