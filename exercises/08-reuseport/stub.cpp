// TODO: worker i's listener: step 01's socket, bind, listen, with
// SO_REUSEPORT set before bind() so that every worker can bind the same port.
ladder::Fd open_listener(const ladder::Options& options, std::uint16_t port) {
    throw std::logic_error("not written yet: open_listener (exercise 08-reuseport)");
}
