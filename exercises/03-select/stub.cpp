        // TODO: the select() loop: build the fd_sets from every connection's
        // want, sleep in select() until one is ready, then run their handlers.
        throw std::logic_error("not written yet: the select() loop in run (exercise 03-select)");
