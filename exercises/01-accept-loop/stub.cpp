// TODO: the accept loop. Until a stop is requested: accept4() the next client
// (it sleeps until one is queued), serve it to the end, count what happened.
void run(ladder::FdRef listener, ladder::Mode mode, ladder::Stats& stats) {
    throw std::logic_error("not written yet: run (exercise 01-accept-loop)");
}
