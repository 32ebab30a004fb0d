// TODO: serve one client until it leaves: read() what it sends into the
// session, and send() every answer, all of it (a send may take only part).
void serve(ladder::FdRef conn, ladder::Session& session) {
    throw std::logic_error("not written yet: serve (exercise 01-serve)");
}
