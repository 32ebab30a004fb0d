// TODO: the loop's inbox. Read its eventfd, take the clients and results
// out from under its mutex, then adopt each client and give each result to
// its connection's session.
void on_inbox(Loop& loop) {
    throw std::logic_error("not written yet: on_inbox (exercise 09-inbox)");
}
