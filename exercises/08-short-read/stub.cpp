// TODO: edge-triggered, with nginx's shortcut: read and answer until the
// socket is empty; a short read has emptied it, unless the client's FIN came
// with it (peer_closed): then read on to the end of file.
ladder::Want on_readable(Loop& loop, Conn& c, bool peer_closed) {
    throw std::logic_error("not written yet: on_readable (exercise 08-short-read)");
}
