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

const StepInfo plain{.summary = "one connection at a time", .number = "01",
                     .program = "step-01"};
const StepInfo pooled{.summary = "a pool of workers", .has_workers = true, .number = "09",
                      .program = "step-09"};

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
    CHECK(r.options.workers == 0);
}

TEST_CASE("StepInfo: number and program default to the LADDER_STEP of the build") {
    // CMake defines LADDER_STEP for each step from its directory's name; the
    // unit tests are no step, so they get the header's fallback, "00".
    const StepInfo unnamed{.summary = "a summary"};
    CHECK(unnamed.number == "00");
    CHECK(unnamed.program == "step-00");
    CHECK_FALSE(unnamed.has_workers);
    CHECK(ladder::usage(unnamed).starts_with("usage: step-00 [options]\n  a summary\n"));
    // A step may still name itself.
    CHECK(ladder::usage(plain).starts_with("usage: step-01 [options]\n"));
}

TEST_CASE("to_string(Mode)") {
    CHECK(ladder::to_string(Mode::http) == "http");
    CHECK(ladder::to_string(Mode::echo) == "echo");
    CHECK(ladder::to_string(Mode::frame) == "frame");
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
        {{"--mode", "frame"}, "127.0.0.1", 8080, Mode::frame},
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
        {{"--mode", "bogus"}, "--mode wants http, echo or frame, got 'bogus'"},
        {{"--mode=HTTP"}, "--mode wants http, echo or frame, got 'HTTP'"},
        {{"--bogus"}, "unknown option '--bogus'"},
        {{"--bogus=1"}, "unknown option '--bogus'"},
        {{"--port=80", "--bogus"}, "unknown option '--bogus'"},
        {{"port"}, "unexpected argument 'port'"},
        {{"-p", "80"}, "unexpected argument '-p'"},
        {{"--threads", "4"}, "unknown option '--threads'"},
        {{"--workers=2"}, "unknown option '--workers'"},  // plain step: no workers
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

TEST_CASE("--workers where the step has it; --threads nowhere") {
    struct Case {
        std::vector<const char*> args;
        int workers;
        std::string error;
    };
    const Case cases[] = {
        {{"--workers", "3"}, 3, ""},
        {{"--workers=1"}, 1, ""},
        {{"--workers=1024"}, 1024, ""},
        {{"--workers", "2", "--workers", "5"}, 5, ""},  // the last one wins
        {{"--workers", "0"}, 0, "--workers wants a number in 1..1024, got '0'"},
        {{"--workers=1025"}, 0, "--workers wants a number in 1..1024, got '1025'"},
        {{"--workers", "x"}, 0, "--workers wants a number in 1..1024, got 'x'"},
        {{"--workers"}, 0, "--workers needs a value"},
        // --threads is gone: a step with threads says how many with its own flag.
        {{"--threads", "4"}, 0, "unknown option '--threads'"},
        {{"--threads=4", "--workers=2"}, 0, "unknown option '--threads'"},
    };
    for (const Case& c : cases) {
        std::string line;
        for (const char* a : c.args) line += std::string(a) + " ";
        CAPTURE(line);
        std::vector<const char*> argv{"step-09"};
        argv.insert(argv.end(), c.args.begin(), c.args.end());
        ParseOutcome r =
            ladder::try_parse_options(static_cast<int>(argv.size()), argv.data(), pooled);
        CHECK_MESSAGE(contains(r.error, c.error), "error was: ", r.error);
        CHECK(r.error.empty() == c.error.empty());
        if (c.error.empty()) CHECK(r.options.workers == c.workers);
    }
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

    std::string t = ladder::usage(pooled);
    CHECK(t.starts_with("usage: step-09 [options]\n"));
    CHECK(contains(t, "--workers M"));
    CHECK_FALSE(contains(t, "--threads"));

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
