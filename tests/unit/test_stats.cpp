// test_stats.cpp — Stats: the JSON line, per-worker counts, extras, sharing across fork().
#include "stats.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

using ladder::bump;
using ladder::Counters;
using ladder::Stats;

namespace {

// The text right after "key": up to the next ',' or '}' at the same level.
// Empty when the key is absent.
std::string value_of(const std::string& json, const std::string& key) {
    std::string tag = "\"" + key + "\":";
    auto at = json.find(tag);
    if (at == std::string::npos) return {};
    at += tag.size();
    return json.substr(at, json.find_first_of(",}", at) - at);
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// Exit status of a child that ran f() and then _exit(0): 0 when all went well.
template <class F>
int in_child(F f) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        f();
        ::_exit(0);  // no doctest teardown, no atexit handlers in the child
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

}  // namespace

TEST_CASE("a fresh Stats: every key present, every count zero") {
    Stats stats("01", "http");
    std::string json = stats.json();
    CAPTURE(json);
    CHECK(json.front() == '{');
    CHECK(json.back() == '}');
    CHECK(json.find('\n') == std::string::npos);  // one line
    CHECK(value_of(json, "step") == "\"01\"");
    CHECK(value_of(json, "mode") == "\"http\"");
    for (const char* key : {"accepted", "closed", "open", "refused", "requests", "bytes_in",
                            "bytes_out", "wakeups", "timeouts"}) {
        CAPTURE(key);
        CHECK(value_of(json, key) == "0");
    }
    CHECK_FALSE(contains(json, "workers"));
    CHECK(stats.worker_count() == 0);
}

TEST_CASE("each counter lands under its own key") {
    struct Case {
        const char* key;
        std::atomic<std::uint64_t> Counters::*counter;
        std::uint64_t by;
    };
    // Distinct amounts, so a counter printed under the wrong key shows.
    const Case cases[] = {
        {"accepted", &Counters::accepted, 11},   {"closed", &Counters::closed, 4},
        {"refused", &Counters::refused, 3},      {"requests", &Counters::requests, 17},
        {"bytes_in", &Counters::bytes_in, 1000}, {"bytes_out", &Counters::bytes_out, 123456789},
        {"wakeups", &Counters::wakeups, 29},     {"timeouts", &Counters::timeouts, 2},
    };
    Stats stats("06", "echo");
    for (const Case& c : cases) {
        bump(stats.counters().*c.counter);      // bump by one ...
        bump(stats.counters().*c.counter, c.by - 1);  // ... and by n
    }
    std::string json = stats.json();
    CAPTURE(json);
    CHECK(value_of(json, "step") == "\"06\"");
    CHECK(value_of(json, "mode") == "\"echo\"");
    for (const Case& c : cases) {
        CAPTURE(c.key);
        CHECK(value_of(json, c.key) == std::to_string(c.by));
    }
    CHECK(value_of(json, "open") == "7");  // accepted - closed
}

TEST_CASE("workers: one object per worker, in order") {
    Stats stats("08", "http", 3);
    CHECK(stats.worker_count() == 3);
    bump(stats.worker(0).wakeups, 5);
    bump(stats.worker(1).accepted, 2);
    bump(stats.worker(1).connections, 2);
    bump(stats.worker(2).wasted_wakeups, 7);
    bump(stats.worker(2).silent_wakeups);
    bump(stats.worker(2).requests, 9);
    bump(stats.counters().accepted, 2);
    std::string json = stats.json();
    CAPTURE(json);
    auto at = json.find("\"workers\":[");
    REQUIRE(at != std::string::npos);
    std::string workers = json.substr(at);
    CHECK(contains(workers,
                   "{\"id\":0,\"wakeups\":5,\"accepted\":0,\"wasted_wakeups\":0,"
                   "\"silent_wakeups\":0,\"requests\":0,\"connections\":0}"));
    CHECK(contains(workers,
                   "{\"id\":1,\"wakeups\":0,\"accepted\":2,\"wasted_wakeups\":0,"
                   "\"silent_wakeups\":0,\"requests\":0,\"connections\":2}"));
    CHECK(contains(workers,
                   "{\"id\":2,\"wakeups\":0,\"accepted\":0,\"wasted_wakeups\":7,"
                   "\"silent_wakeups\":1,\"requests\":9,\"connections\":0}"));
    CHECK(contains(workers, "}]"));
    CHECK_FALSE(contains(workers, "\"id\":3"));
    // The totals are still at the top level, before the array.
    CHECK(value_of(json, "accepted") == "2");
    CHECK(json.find("\"accepted\":2") < at);
}

TEST_CASE("set_extra appends the step's own fields") {
    Stats stats("07", "http");
    std::uint64_t timers = 4;
    stats.set_extra([&](std::string& out) {
        out += ",\"timers\":";
        out += std::to_string(timers);
        out += ",\"policy\":\"lifo\"";
    });
    std::string json = stats.json();
    CAPTURE(json);
    CHECK(json.ends_with(",\"timers\":4,\"policy\":\"lifo\"}"));
    CHECK(value_of(json, "accepted") == "0");  // the shared keys are still there
    timers = 5;  // evaluated each time json() runs
    CHECK(value_of(stats.json(), "timers") == "5");
}

TEST_CASE("without share_across_fork a child's counts stay in the child") {
    Stats stats("02", "http", 1);
    bump(stats.counters().accepted);
    CHECK(in_child([&] {
              bump(stats.counters().accepted, 10);
              bump(stats.worker(0).requests, 10);
          }) == 0);
    CHECK(value_of(stats.json(), "accepted") == "1");
    CHECK(stats.worker(0).requests.load() == 0);
}

TEST_CASE("share_across_fork: children count into the parent's numbers") {
    Stats stats("02", "echo", 2);
    stats.share_across_fork();
    bump(stats.counters().accepted);

    const int children = 3;
    for (int i = 0; i < children; ++i) {
        CHECK(in_child([&] {
                  bump(stats.counters().accepted, 5);
                  bump(stats.counters().bytes_in, 100);
                  bump(stats.worker(i % 2).requests);
              }) == 0);
    }
    std::string json = stats.json();
    CAPTURE(json);
    CHECK(value_of(json, "accepted") == "16");
    CHECK(value_of(json, "bytes_in") == "300");
    CHECK(stats.worker(0).requests.load() == 2);
    CHECK(stats.worker(1).requests.load() == 1);

    // A second call keeps the mapping, and the counts in it.
    stats.share_across_fork();
    CHECK(value_of(stats.json(), "accepted") == "16");
    CHECK(in_child([&] { bump(stats.counters().accepted); }) == 0);
    CHECK(value_of(stats.json(), "accepted") == "17");
}
