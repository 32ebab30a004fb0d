// test_stats.cpp — Stats: the JSON line, per-worker counts and how the
// connections were spread, extras, sharing across fork(); json_field and
// json_workers.
#include "stats.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using ladder::bump;
using ladder::Counters;
using ladder::Stats;
using ladder::WorkerCounters;

namespace {

// The text right after "key": up to the next ',' or '}' (an array: up to
// its ']', included). Empty when the key is absent.
std::string value_of(const std::string& json, const std::string& key) {
    std::string tag = "\"" + key + "\":";
    auto at = json.find(tag);
    if (at == std::string::npos) return {};
    at += tag.size();
    if (json[at] == '[') return json.substr(at, json.find(']', at) + 1 - at);
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
    CHECK_FALSE(contains(json, "fairness"));
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

TEST_CASE("json_field: a count, a ratio with 4 decimals, a quoted word") {
    struct Count {
        std::uint64_t value;
        std::string expected;
    };
    const Count counts[] = {
        {0, ",\"k\":0"},
        {42, ",\"k\":42"},
        {std::numeric_limits<std::uint64_t>::max(), ",\"k\":18446744073709551615"},
    };
    for (const Count& c : counts) {
        std::string out;
        ladder::json_field(out, "k", c.value);
        CHECK(out == c.expected);
    }
    struct Ratio {
        double value;
        std::string expected;
    };
    const Ratio ratios[] = {
        {0.0, ",\"k\":0.0000"},
        {1.0, ",\"k\":1.0000"},
        {1.0 / 3, ",\"k\":0.3333"},
        {2.0 / 3, ",\"k\":0.6667"},  // rounded, not cut
        {12345.5, ",\"k\":12345.5000"},
    };
    for (const Ratio& r : ratios) {
        std::string out;
        ladder::json_field(out, "k", r.value);
        CHECK(out == r.expected);
    }
    struct Word {
        std::string_view value;
        std::string expected;
    };
    const Word words[] = {
        {"lifo", ",\"k\":\"lifo\""},
        {"", ",\"k\":\"\""},
    };
    for (const Word& w : words) {
        std::string out;
        ladder::json_field(out, "k", w.value);
        CHECK(out == w.expected);
    }
    // Appended to what is there: the fields of one object, in order.
    std::string out = "{\"a\":1";
    ladder::json_field(out, "b", std::uint64_t{2});
    ladder::json_field(out, "c", 0.5);
    ladder::json_field(out, "d", "x");
    CHECK(out == "{\"a\":1,\"b\":2,\"c\":0.5000,\"d\":\"x\"");
}

TEST_CASE("json_workers: one object per set of counts, ids in order") {
    std::string none = "{";
    ladder::json_workers(none, "loops", {});
    CHECK(none == "{,\"loops\":[]");

    WorkerCounters a, b;
    bump(a.wakeups, 1);
    bump(a.accepted, 2);
    bump(a.wasted_wakeups, 3);
    bump(a.silent_wakeups, 4);
    bump(a.requests, 5);
    bump(a.connections, 6);
    bump(b.requests, 7);
    const WorkerCounters* each[] = {&a, &b, &a};
    std::string out;
    ladder::json_workers(out, "loops", each);
    CHECK(out ==
          ",\"loops\":["
          "{\"id\":0,\"wakeups\":1,\"accepted\":2,\"wasted_wakeups\":3,"
          "\"silent_wakeups\":4,\"requests\":5,\"connections\":6},"
          "{\"id\":1,\"wakeups\":0,\"accepted\":0,\"wasted_wakeups\":0,"
          "\"silent_wakeups\":0,\"requests\":7,\"connections\":0},"
          "{\"id\":2,\"wakeups\":1,\"accepted\":2,\"wasted_wakeups\":3,"
          "\"silent_wakeups\":4,\"requests\":5,\"connections\":6}]");
}

TEST_CASE("workers that served connections: shares, Jain's fairness, wasted per connection") {
    struct Worker {
        std::uint64_t connections, wasted, silent;
    };
    struct Row {
        std::vector<Worker> workers;
        std::string shares, fairness, wasted_per_connection;  // empty: the key is absent
    };
    const Row rows[] = {
        // Nobody served a connection yet: nothing to spread, no keys.
        {{{0, 0, 0}, {0, 5, 1}}, "", "", ""},
        {{{7, 0, 0}}, "[1.0000]", "1.0000", "0.0000"},
        {{{5, 0, 0}, {5, 0, 0}}, "[0.5000,0.5000]", "1.0000", "0.0000"},
        {{{3, 0, 0}, {1, 0, 0}}, "[0.7500,0.2500]", "0.8000", "0.0000"},  // 16 / (2 * 10)
        {{{1, 0, 0}, {2, 0, 0}, {3, 0, 0}},  // 36 / (3 * 14)
         "[0.1667,0.3333,0.5000]", "0.8571", "0.0000"},
        // One worker served them all: 1/n.
        {{{4, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}},
         "[1.0000,0.0000,0.0000,0.0000]", "0.2500", "0.0000"},
        // Wasted and silent wake-ups of every worker, over all connections.
        {{{2, 3, 1}, {2, 0, 0}}, "[0.5000,0.5000]", "1.0000", "1.0000"},
        {{{1, 0, 0}, {0, 4, 3}}, "[1.0000,0.0000]", "0.5000", "7.0000"},
    };
    for (const Row& row : rows) {
        Stats stats("07", "http", static_cast<int>(row.workers.size()));
        for (std::size_t i = 0; i < row.workers.size(); ++i) {
            WorkerCounters& w = stats.worker(static_cast<int>(i));
            bump(w.connections, row.workers[i].connections);
            bump(w.wasted_wakeups, row.workers[i].wasted);
            bump(w.silent_wakeups, row.workers[i].silent);
        }
        stats.set_extra([](std::string& out) { out += ",\"policy\":\"x\""; });
        std::string json = stats.json();
        CAPTURE(json);
        CHECK(value_of(json, "shares") == row.shares);
        CHECK(value_of(json, "fairness") == row.fairness);
        CHECK(value_of(json, "wasted_per_connection") == row.wasted_per_connection);
        // After the workers' array, before the step's own fields.
        auto workers = json.find("\"workers\":[");
        auto extra = json.find(",\"policy\":\"x\"}");
        REQUIRE(workers != std::string::npos);
        REQUIRE(extra != std::string::npos);
        for (std::string key : {"\"wasted_per_connection\":", "\"fairness\":", "\"shares\":"}) {
            CAPTURE(key);
            auto at = json.find(key);
            CHECK((at == std::string::npos || (workers < at && at < extra)));
        }
    }
}
