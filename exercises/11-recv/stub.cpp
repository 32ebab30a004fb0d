// TODO: a receive completed: its bytes are already in one of the ring's
// buffers (the id is in the CQE's flags). Copy them into the session's input
// and give the buffer back at once; 0 is the client's FIN.
void on_readable(Loop& loop, Conn& c, const io_uring_cqe& cqe) {
    throw std::logic_error("not written yet: on_readable (exercise 11-recv)");
}
