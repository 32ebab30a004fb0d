        // TODO: the poll() loop: one pollfd per socket in `fds`, sleep in
        // poll() until one is ready, then run the handlers of the ready ones.
        throw std::logic_error("not written yet: the poll() loop in run (exercise 04-pollfd)");
