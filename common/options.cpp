#include "options.h"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>

namespace ladder {

std::string_view to_string(Mode mode) noexcept {
    return mode == Mode::http ? "http" : mode == Mode::echo ? "echo" : "frame";
}

namespace {

bool parse_long(std::string_view text, long min, long max, long& out) {
    long value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return false;
    if (value < min || value > max) return false;
    out = value;
    return true;
}

bool in_choices(std::string_view word, std::string_view choices) {
    while (!choices.empty()) {
        auto bar = choices.find('|');
        if (choices.substr(0, bar) == word) return true;
        if (bar == std::string_view::npos) break;
        choices.remove_prefix(bar + 1);
    }
    return false;
}

std::string range_text(long min, long max) {
    return std::to_string(min) + ".." + std::to_string(max);
}

}  // namespace

std::string usage(const StepInfo& step, const std::vector<Flag>& extra) {
    std::string u = "usage: " + std::string(step.program) + " [options]\n";
    u += "  " + std::string(step.summary) + "\n\n";
    u += "  --host ADDR        address to listen on (default 127.0.0.1)\n";
    u += "  --port N           port, 0 = the kernel picks (default 8080)\n";
    u += "  --mode http|echo|frame  protocol (default http)\n";
    if (step.has_workers) u += "  --workers M        workers (default: the step's)\n";
    for (const Flag& f : extra) {
        std::string left = "--" + std::string(f.name);
        if (std::holds_alternative<int*>(f.target))
            left += " N";
        else if (std::holds_alternative<std::string*>(f.target))
            left += f.choices.empty() ? " WORD" : " " + std::string(f.choices);
        left.resize(std::max<std::size_t>(left.size() + 1, 19), ' ');
        u += "  " + left + std::string(f.help) + "\n";
    }
    u += "  --help             this text\n";
    return u;
}

ParseOutcome try_parse_options(int argc, const char* const* argv, const StepInfo& step,
                               const std::vector<Flag>& extra) {
    ParseOutcome r;
    Options& o = r.options;
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            r.help = true;
            return r;
        }
        if (!arg.starts_with("--")) {
            r.error = "unexpected argument '" + std::string(arg) + "'";
            return r;
        }
        std::string_view name = arg.substr(2);
        std::string_view value;
        bool has_value = false;
        if (auto eq = name.find('='); eq != std::string_view::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
            has_value = true;
        }
        auto take_value = [&]() -> bool {
            if (has_value) return true;
            if (i + 1 >= argc) {
                r.error = "--" + std::string(name) + " needs a value";
                return false;
            }
            value = argv[++i];
            return true;
        };
        auto number = [&](long min, long max, long& out) -> bool {
            if (!take_value()) return false;
            if (parse_long(value, min, max, out)) return true;
            r.error = "--" + std::string(name) + " wants a number in " + range_text(min, max) +
                      ", got '" + std::string(value) + "'";
            return false;
        };
        long n = 0;
        if (name == "host") {
            if (!take_value()) return r;
            if (value.empty()) {
                r.error = "--host needs an address";
                return r;
            }
            o.host = value;
        } else if (name == "port") {
            if (!number(0, 65535, n)) return r;
            o.port = static_cast<std::uint16_t>(n);
        } else if (name == "mode") {
            if (!take_value()) return r;
            if (value == "http")
                o.mode = Mode::http;
            else if (value == "echo")
                o.mode = Mode::echo;
            else if (value == "frame")
                o.mode = Mode::frame;
            else {
                r.error = "--mode wants http, echo or frame, got '" + std::string(value) + "'";
                return r;
            }
        } else if (name == "workers" && step.has_workers) {
            if (!number(1, 1024, n)) return r;
            o.workers = static_cast<int>(n);
        } else {
            const Flag* flag = nullptr;
            for (const Flag& f : extra)
                if (f.name == name) flag = &f;
            if (!flag) {
                r.error = "unknown option '--" + std::string(name) + "'";
                return r;
            }
            if (auto* b = std::get_if<bool*>(&flag->target)) {
                if (has_value) {
                    r.error = "--" + std::string(name) + " takes no value";
                    return r;
                }
                **b = true;
            } else if (auto* ip = std::get_if<int*>(&flag->target)) {
                if (!number(flag->min, flag->max, n)) return r;
                **ip = static_cast<int>(n);
            } else if (auto* sp = std::get_if<std::string*>(&flag->target)) {
                if (!take_value()) return r;
                if (!flag->choices.empty() && !in_choices(value, flag->choices)) {
                    r.error = "--" + std::string(name) + " wants one of " +
                              std::string(flag->choices) + ", got '" + std::string(value) + "'";
                    return r;
                }
                **sp = value;
            }
        }
    }
    return r;
}

Options parse_options(int argc, char** argv, const StepInfo& step,
                      const std::vector<Flag>& extra) {
    ParseOutcome r = try_parse_options(argc, argv, step, extra);
    if (r.help) {
        std::fputs(usage(step, extra).c_str(), stdout);
        std::exit(0);
    }
    if (!r.error.empty()) {
        std::fprintf(stderr, "%.*s: %s\n%s", int(step.program.size()), step.program.data(),
                     r.error.c_str(), usage(step, extra).c_str());
        std::exit(2);
    }
    return r.options;
}

int usable_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    return std::max(1, CPU_COUNT(&set));
}

}  // namespace ladder
