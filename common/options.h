// options.h — the command line every step shares.
//
//   --host ADDR  --port N  --mode http|echo  --workers M  --help
//
// plus the flags a step adds for itself (Flag). A bad flag prints one line
// naming it, then the usage, on stderr, and exits 2.
#pragma once

#include <climits>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace ladder {

// http: the HTTP/1.1 subset; echo: every byte back; frame: length-prefixed
// messages back, one by one (a 4-byte big-endian length, then that many
// bytes: the boundaries a byte stream does not keep, kept by the protocol).
enum class Mode { http, echo, frame };
std::string_view to_string(Mode mode) noexcept;

struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    Mode mode = Mode::http;
    int workers = 0;  // 0: the step's default
};

// A step-specific flag. A bool* target is a switch (--naive-et); an int*
// takes a number in [min, max]; a std::string* takes any word, or one of
// `choices` (separated by '|') when given.
struct Flag {
    std::string_view name;  // without the leading "--"
    std::string_view help;
    std::variant<bool*, int*, std::string*> target;
    long min = 0;
    long max = INT_MAX;
    std::string_view choices = {};
};

// LADDER_STEP is the step's number ("05"), defined by CMake for each step
// from its directory's name (CMakeLists.txt: ladder_step).
#ifndef LADDER_STEP
#define LADDER_STEP "00"
#endif

struct StepInfo {
    std::string_view summary;  // one line for --help
    bool has_workers = false;  // whether --workers means something here
    std::string_view number = LADDER_STEP;             // "05": the stats' "step"
    std::string_view program = "step-" LADDER_STEP;    // "step-05": messages and usage
};

// Parses argv; on --help prints usage to stdout and exits 0; on a bad flag
// prints "step-NN: <problem>" and the usage to stderr and exits 2.
Options parse_options(int argc, char** argv, const StepInfo& step,
                      const std::vector<Flag>& extra = {});

// Result of parsing, without exiting: for tests. `error` is empty on success.
struct ParseOutcome {
    Options options;
    bool help = false;
    std::string error;
};
ParseOutcome try_parse_options(int argc, const char* const* argv, const StepInfo& step,
                               const std::vector<Flag>& extra = {});

std::string usage(const StepInfo& step, const std::vector<Flag>& extra = {});

// The CPUs this process may run on (what nproc prints): under taskset or a
// container's cpuset that is fewer than the machine has. At least 1. The
// default loop count of the steps with one loop per CPU.
int usable_cpus();

}  // namespace ladder
