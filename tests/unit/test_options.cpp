// test_options.cpp — try_parse_options and usage (parse_options exits, so it is
// exercised through try_parse_options).
#include "options.h"

#include <doctest/doctest.h>

#include <initializer_list>
#include <string>
#include <vector>

using ladder::Flag;
using ladder::Mode;
using ladder::ParseOutcome;
using ladder::StepInfo;

namespace {

const StepInfo plain{"step-01", "one connection at a time", false, false};
const StepInfo threaded{"step-09", "threads and workers", true, true};

ParseOutcome parse(std::initializer_list<const char*> args, const StepInfo& step = plain,
                   const std::vector<Flag>& extra = {}) {
    std::vector<const char*> argv{step.program.data()};
    argv.insert(argv.end(), args);
    argv.push_back(nullptr);  // argv[argc] is NULL, as in main
    return ladder::try_parse_options(static_cast<int>(argv.size() - 1), argv.data(), step,
                                     extra);
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("no arguments: the defaults") {
    ParseOutcome r = parse({});
    CHECK(r.error.empty());
    CHECK_FALSE(r.help);
    CHECK(r.options.host == "127.0.0.1");
    CHECK(r.options.port == 8080);
    CHECK(r.options.mode == Mode::http);
    CHECK(r.options.threads == 0);
    CHECK(r.options.workers == 0);
}

TEST_CASE("to_string(Mode)") {
    CHECK(ladder::to_string(Mode::http) == "http");
    CHECK(ladder::to_string(Mode::echo) == "echo");
}

TEST_CASE("good command lines") {
    struct Case {
        std::vector<const char*> args;
        std::string host;
        int port;
        Mode mode;
    };
    const Case cases[] = {
        {{"--port", "0"}, "127.0.0.1", 0, Mode::http},
        {{"--port=0"}, "127.0.0.1", 0, Mode::http},
        {{"--port", "65535"}, "127.0.0.1", 65535, Mode::http},
        {{"--port=1"}, "127.0.0.1", 1, Mode::http},
        {{"--host", "::1"}, "::1", 8080, Mode::http},
        {{"--host=0.0.0.0"}, "0.0.0.0", 8080, Mode::http},
        {{"--mode", "echo"}, "127.0.0.1", 8080, Mode::echo},
        {{"--mode=http"}, "127.0.0.1", 8080, Mode::http},
        {{"--mode=echo", "--port=9000", "--host", "10.0.0.1"}, "10.0.0.1", 9000, Mode::echo},
        {{"--port", "1", "--port", "2"}, "127.0.0.1", 2, Mode::http},  // the last one wins
    };
    for (const Case& c : cases) {
        std::string line;
        for (const char* a : c.args) line += std::string(a) + " ";
        CAPTURE(line);
        std::vector<const char*> argv{"step-01"};
        argv.insert(argv.end(), c.args.begin(), c.args.end());
        ParseOutcome r =
            ladder::try_parse_options(static_cast<int>(argv.size()), argv.data(), plain);
        CHECK(r.error.empty());
        CHECK(r.options.host == c.host);
        CHECK(r.options.port == c.port);
        CHECK(r.options.mode == c.mode);
    }
}

TEST_CASE("bad command lines: the error names the flag") {
    struct Case {
        std::vector<const char*> args;
        std::string error;  // a substring of the error
    };
    const Case cases[] = {
        {{"--port", "65536"}, "--port wants a number in 0..65535, got '65536'"},
        {{"--port=65536"}, "--port wants a number in 0..65535, got '65536'"},
        {{"--port", "-1"}, "--port wants a number in 0..65535, got '-1'"},
        {{"--port", "abc"}, "--port wants a number in 0..65535, got 'abc'"},
        {{"--port", "80x"}, "--port wants a number in 0..65535, got '80x'"},
        {{"--port", ""}, "--port wants a number in 0..65535, got ''"},
        {{"--port="}, "--port wants a number in 0..65535, got ''"},
        {{"--port", "99999999999999999999999"}, "--port wants a number"},
        {{"--port"}, "--port needs a value"},
        {{"--host"}, "--host needs a value"},
        {{"--host="}, "--host needs an address"},
        {{"--mode"}, "--mode needs a value"},
        {{"--mode", "bogus"}, "--mode wants http or echo, got 'bogus'"},
        {{"--mode=HTTP"}, "--mode wants http or echo, got 'HTTP'"},
        {{"--bogus"}, "unknown option '--bogus'"},
        {{"--bogus=1"}, "unknown option '--bogus'"},
        {{"--port=80", "--bogus"}, "unknown option '--bogus'"},
        {{"port"}, "unexpected argument 'port'"},
        {{"-p", "80"}, "unexpected argument '-p'"},
        {{"--threads", "4"}, "unknown option '--threads'"},  // plain step: no threads
        {{"--workers=2"}, "unknown option '--workers'"},
    };
    for (const Case& c : cases) {
        std::string line;
        for (const char* a : c.args) line += std::string(a) + " ";
        CAPTURE(line);
        std::vector<const char*> argv{"step-01"};
        argv.insert(argv.end(), c.args.begin(), c.args.end());
        ParseOutcome r =
            ladder::try_parse_options(static_cast<int>(argv.size()), argv.data(), plain);
        CHECK_FALSE(r.help);
        CHECK_MESSAGE(contains(r.error, c.error), "error was: ", r.error);
    }
}

TEST_CASE("--threads and --workers where the step has them") {
    struct Case {
        std::vector<const char*> args;
        int threads;
        int workers;
        std::string error;
    };
    const Case cases[] = {
        {{"--threads", "4"}, 4, 0, ""},
        {{"--threads=1", "--workers=1024"}, 1, 1024, ""},
        {{"--workers", "3"}, 0, 3, ""},
        {{"--threads", "0"}, 0, 0, "--threads wants a number in 1..1024, got '0'"},
        {{"--workers=1025"}, 0, 0, "--workers wants a number in 1..1024, got '1025'"},
        {{"--threads"}, 0, 0, "--threads needs a value"},
    };
    for (const Case& c : cases) {
        std::string line;
        for (const char* a : c.args) line += std::string(a) + " ";
        CAPTURE(line);
        std::vector<const char*> argv{"step-09"};
        argv.insert(argv.end(), c.args.begin(), c.args.end());
        ParseOutcome r =
            ladder::try_parse_options(static_cast<int>(argv.size()), argv.data(), threaded);
        CHECK_MESSAGE(contains(r.error, c.error), "error was: ", r.error);
        CHECK(r.error.empty() == c.error.empty());
        if (c.error.empty()) {
            CHECK(r.options.threads == c.threads);
            CHECK(r.options.workers == c.workers);
        }
    }

    // has_threads and has_workers are independent.
    const StepInfo threads_only{"step-03", "threads only", true, false};
    CHECK(parse({"--threads", "2"}, threads_only).error.empty());
    CHECK(parse({"--workers", "2"}, threads_only).error == "unknown option '--workers'");
}

TEST_CASE("--help and -h ask for the usage") {
    const std::vector<std::vector<const char*>> lines = {
        {"--help"}, {"-h"}, {"--port", "80", "--help"}, {"--help", "--bogus"}};
    for (const auto& args : lines) {
        std::vector<const char*> argv{"step-01"};
        argv.insert(argv.end(), args.begin(), args.end());
        ParseOutcome r =
            ladder::try_parse_options(static_cast<int>(argv.size()), argv.data(), plain);
        CAPTURE(args.size());
        CHECK(r.help);
        CHECK(r.error.empty());
    }
}

TEST_CASE("step-specific flags: bool, int in a range, string from choices") {
    bool naive = false;
    int backlog = 128;
    std::string policy = "fifo";
    std::string label;
    const std::vector<Flag> extra = {
        {"naive-et", "stop before EAGAIN (the bug)", &naive},
        {"backlog", "listen backlog", &backlog, 1, 65535},
        {"policy", "who goes first", &policy, 0, 0, "fifo|lifo|random"},
        {"label", "any word", &label},
    };

    struct Case {
        std::vector<const char*> args;
        std::string error;  // empty: success
    };
    const Case cases[] = {
        {{"--naive-et"}, ""},
        {{"--naive-et=1"}, "--naive-et takes no value"},
        {{"--backlog", "1"}, ""},
        {{"--backlog=65535"}, ""},
        {{"--backlog", "0"}, "--backlog wants a number in 1..65535, got '0'"},
        {{"--backlog=65536"}, "--backlog wants a number in 1..65535, got '65536'"},
        {{"--backlog", "many"}, "--backlog wants a number in 1..65535, got 'many'"},
        {{"--backlog"}, "--backlog needs a value"},
        {{"--policy", "lifo"}, ""},
        {{"--policy=random"}, ""},
        {{"--policy", "fif"}, "--policy wants one of fifo|lifo|random, got 'fif'"},
        {{"--policy", "fifo|lifo"}, "--policy wants one of fifo|lifo|random"},
        {{"--policy="}, "--policy wants one of fifo|lifo|random, got ''"},
        {{"--policy"}, "--policy needs a value"},
        {{"--label", "anything at all"}, ""},
        {{"--label"}, "--label needs a value"},
    };
    for (const Case& c : cases) {
        std::string line;
        for (const char* a : c.args) line += std::string(a) + " ";
        CAPTURE(line);
        std::vector<const char*> argv{"step-06"};
        argv.insert(argv.end(), c.args.begin(), c.args.end());
        ParseOutcome r =
            ladder::try_parse_options(static_cast<int>(argv.size()), argv.data(), plain, extra);
        CHECK_MESSAGE(contains(r.error, c.error), "error was: ", r.error);
        CHECK(r.error.empty() == c.error.empty());
    }

    naive = false;
    backlog = 128;
    policy = "fifo";
    label.clear();
    ParseOutcome r = parse({"--naive-et", "--backlog", "512", "--policy=lifo", "--label", "x y",
                            "--mode", "echo"},
                           plain, extra);
    REQUIRE(r.error.empty());
    CHECK(naive);
    CHECK(backlog == 512);
    CHECK(policy == "lifo");
    CHECK(label == "x y");
    CHECK(r.options.mode == Mode::echo);

    // A flag left out keeps the value its variable had.
    naive = false;
    backlog = 128;
    REQUIRE(parse({"--port", "0"}, plain, extra).error.empty());
    CHECK_FALSE(naive);
    CHECK(backlog == 128);
}

TEST_CASE("usage() lists the shared flags and the step's own") {
    bool naive = false;
    int backlog = 0;
    std::string policy;
    const std::vector<Flag> extra = {
        {"naive-et", "stop before EAGAIN", &naive},
        {"backlog", "listen backlog", &backlog, 1, 65535},
        {"policy", "who goes first", &policy, 0, 0, "fifo|lifo"},
    };
    std::string u = ladder::usage(plain, extra);
    const char* expected[] = {
        "usage: step-01 [options]",
        "one connection at a time",
        "--host ADDR",
        "--port N",
        "--mode http|echo",
        "--naive-et",
        "stop before EAGAIN",
        "--backlog N",
        "listen backlog",
        "--policy fifo|lifo",
        "who goes first",
        "--help",
    };
    for (const char* part : expected) {
        CAPTURE(part);
        CHECK(contains(u, part));
    }
    CHECK_FALSE(contains(u, "--threads"));
    CHECK_FALSE(contains(u, "--workers"));
    CHECK(u.back() == '\n');

    std::string t = ladder::usage(threaded);
    CHECK(contains(t, "--threads N"));
    CHECK(contains(t, "--workers M"));

    // Help texts line up in one column, the step's flags included.
    std::size_t column = std::string::npos;
    bool aligned = true;
    for (const char* help : {"address to listen on", "stop before EAGAIN", "listen backlog",
                             "who goes first", "this text"}) {
        std::size_t at = u.find(help);
        REQUIRE(at != std::string::npos);
        std::size_t col = at - (u.rfind('\n', at) + 1);
        if (column == std::string::npos) column = col;
        if (col != column) aligned = false;
    }
    CHECK(aligned);
}
