// TODO: the acceptor. hand_over: put the client in the worker's inbox under
// its mutex, then ring its eventfd. run_acceptor: sleep in poll() on the
// listener and stop_fd(), accept every queued client, deal them round-robin.
void hand_over(Loop& loop, ladder::Fd fd) {
    throw std::logic_error("not written yet: hand_over (exercise 07-acceptor)");
}

void run_acceptor(Herd& herd, Loops& loops) {
    throw std::logic_error("not written yet: run_acceptor (exercise 07-acceptor)");
}
