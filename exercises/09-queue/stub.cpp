// TODO: the bounded queue. Never block: full (or stopping), count the
// refusal and return false, and the session answers 503; else queue the job
// and wake one worker.
bool try_submit(Pool& pool, Job job) {
    throw std::logic_error("not written yet: try_submit (exercise 09-queue)");
}
