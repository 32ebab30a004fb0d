// TODO: the listener reported one edge for however many clients are queued:
// take them all, until the queue is empty (EAGAIN).
void on_accept(Loop& loop) {
    throw std::logic_error("not written yet: on_accept (exercise 06-accept-drain)");
}
