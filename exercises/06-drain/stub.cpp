// TODO: read until EAGAIN. Edge-triggered epoll reported this socket once:
// read() into the session's input and answer (on_writable), again and again,
// until read() fails with EAGAIN or the session wants no more input.
ladder::Want on_readable(Loop& loop, Conn& c) {
    throw std::logic_error("not written yet: on_readable (exercise 06-drain)");
}
