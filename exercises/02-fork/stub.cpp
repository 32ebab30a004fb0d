// TODO: --processes. start_process: fork(); the child serves the client and
// _exit()s, the parent remembers its pid. reap: waitpid() every child that
// has exited, so none stays a zombie.
void start_process(ladder::Fd conn, ladder::Mode mode, ladder::Stats& stats,
                   int listener_slot, std::set<pid_t>& children) {
    throw std::logic_error("not written yet: start_process (exercise 02-fork)");
}

void reap(std::set<pid_t>& children, bool block) {
    throw std::logic_error("not written yet: reap (exercise 02-fork)");
}
