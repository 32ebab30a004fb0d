#include "config.h"

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string_view>

namespace loadgen {

namespace {

constexpr std::string_view kUsage = R"(usage: loadgen --port N [flags]
Drives one server with HTTP or echo requests; prints one JSON object on stdout.
  --host ADDR        server address (default 127.0.0.1)
  --port N           server port (required)
  --mode http|echo   protocol (default http)
  --connections C    concurrent connections (default 10)
  --threads T        threads, each with its own epoll loop (default 1)
  --duration S       seconds to measure, fractions allowed (default 10)
  --requests N       measure N requests in total instead of a duration
  --warmup S         seconds of load before measuring, not recorded (default 0)
  --rate R           open loop: R requests/s in total on a fixed schedule;
                     latency counts from each request's intended start
                     (default: closed loop, a new request as each one ends)
  --path P           HTTP path (default /hello)
  --size B           echo message bytes, random, verified (default 64)
  --pipeline D       requests in flight per connection (default 1)
  --new-conn         a new TCP connection for every request
  --idle K           also hold K idle connections that send nothing
  --idle-procs P     hold them in P child processes, each with its own descriptor
                     limit (default: in this process if they fit, else as many as needed)
  --idle-sources N   bind them to 127.0.0.1 ... 127.0.0.N (127/8 targets; default:
                     one address per 2,000, each has its own ephemeral ports)
  --idle-hold S      once all are connected, hold them S seconds with nothing sent
                     before the load starts (what idle connections cost a server);
                     SIGUSR1 ends the hold early
  --progress S       every S seconds a progress line on stderr, with the phase and
                     CLOCK_MONOTONIC time, for scripts that line events up with it
  --timeout S        a request unanswered after S seconds is an error (default 10)
  --help             this text
)";

// Values are checked by the caller; these only convert.
bool to_double(std::string_view text, double& out) {
    std::string s(text);
    char* end = nullptr;
    errno = 0;
    out = std::strtod(s.c_str(), &end);
    return !s.empty() && end == s.c_str() + s.size() && errno == 0 && std::isfinite(out);
}

bool to_u64(std::string_view text, std::uint64_t& out) {
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return !text.empty() && ec == std::errc{} && ptr == text.data() + text.size();
}

struct Parser {
    ParseResult result;
    Config& c = result.config;

    bool fail(std::string message) {
        if (result.error.empty()) result.error = std::move(message);
        return false;
    }

    bool integer(std::string_view flag, std::string_view text, std::uint64_t min,
                 std::uint64_t max, std::uint64_t& out) {
        if (!to_u64(text, out) || out < min || out > max)
            return fail("--" + std::string(flag) + ": '" + std::string(text) +
                        "' is not a whole number in " + std::to_string(min) + ".." +
                        std::to_string(max));
        return true;
    }

    bool seconds(std::string_view flag, std::string_view text, bool zero_ok,
                 double& out) {
        if (!to_double(text, out) || out < 0 || (!zero_ok && out == 0) || out > 1e6)
            return fail("--" + std::string(flag) + ": '" + std::string(text) +
                        "' is not a number of seconds" + (zero_ok ? "" : " above 0"));
        return true;
    }

    bool apply(std::string_view flag, std::string_view value) {
        std::uint64_t n = 0;
        if (flag == "host") {
            c.host = std::string(value);
            return !c.host.empty() || fail("--host: empty address");
        }
        if (flag == "port") {
            if (!integer(flag, value, 1, 65535, n)) return false;
            c.port = static_cast<std::uint16_t>(n);
            return true;
        }
        if (flag == "mode") {
            if (value == "http") c.mode = ladder::Mode::http;
            else if (value == "echo") c.mode = ladder::Mode::echo;
            else return fail("--mode: '" + std::string(value) + "' is not http or echo");
            return true;
        }
        if (flag == "connections") {
            if (!integer(flag, value, 1, 100'000, n)) return false;
            c.connections = static_cast<int>(n);
            return true;
        }
        if (flag == "threads") {
            if (!integer(flag, value, 1, 256, n)) return false;
            c.threads = static_cast<int>(n);
            return true;
        }
        if (flag == "duration") return seconds(flag, value, false, c.duration_s);
        if (flag == "requests")
            return integer(flag, value, 1, UINT64_MAX / 2, c.requests);
        if (flag == "warmup") return seconds(flag, value, true, c.warmup_s);
        if (flag == "timeout") return seconds(flag, value, false, c.timeout_s);
        if (flag == "rate") {
            if (!to_double(value, c.rate) || c.rate <= 0 || c.rate > 1e8)
                return fail("--rate: '" + std::string(value) +
                            "' is not a rate in requests/s above 0");
            return true;
        }
        if (flag == "path") {
            c.path = std::string(value);
            if (c.path.empty() || c.path[0] != '/' ||
                c.path.find_first_of(" \r\n\t") != std::string::npos)
                return fail("--path: '" + c.path +
                            "' must start with / and contain no spaces");
            return true;
        }
        if (flag == "size") {
            if (!integer(flag, value, 1, 16u << 20, n)) return false;
            c.size = static_cast<std::size_t>(n);
            return true;
        }
        if (flag == "pipeline") {
            if (!integer(flag, value, 1, 1024, n)) return false;
            c.pipeline = static_cast<int>(n);
            return true;
        }
        if (flag == "idle") {
            if (!integer(flag, value, 0, 2'000'000, n)) return false;
            c.idle = static_cast<int>(n);
            return true;
        }
        if (flag == "idle-procs") {
            if (!integer(flag, value, 0, 1000, n)) return false;
            c.idle_procs = static_cast<int>(n);
            return true;
        }
        if (flag == "idle-sources") {
            if (!integer(flag, value, 1, 250, n)) return false;
            c.idle_sources = static_cast<int>(n);
            return true;
        }
        if (flag == "idle-hold") return seconds(flag, value, true, c.idle_hold_s);
        if (flag == "progress") return seconds(flag, value, false, c.progress_s);
        return fail("unknown flag --" + std::string(flag));
    }
};

}  // namespace

std::string usage() { return std::string(kUsage); }

ParseResult parse_args(int argc, const char* const* argv) {
    Parser p;
    bool port_given = false, duration_given = false, pipeline_given = false;
    for (int i = 1; i < argc && p.result.error.empty(); ++i) {
        std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            p.result.help = true;
            return p.result;
        }
        if (!arg.starts_with("--") || arg.size() == 2) {
            p.fail("unexpected argument '" + std::string(arg) + "'");
            break;
        }
        std::string_view flag = arg.substr(2), value;
        bool has_value = false;
        if (auto eq = flag.find('='); eq != std::string_view::npos) {
            value = flag.substr(eq + 1);
            flag = flag.substr(0, eq);
            has_value = true;
        }
        if (flag == "new-conn") {
            if (has_value) p.fail("--new-conn takes no value");
            p.c.new_conn = true;
            continue;
        }
        static constexpr std::string_view kValued[] = {
            "host",   "port",    "mode", "connections", "threads", "duration", "requests",
            "warmup", "timeout", "rate", "path",        "size",    "pipeline", "idle",
            "idle-procs", "idle-sources", "idle-hold", "progress"};
        if (std::find(std::begin(kValued), std::end(kValued), flag) ==
            std::end(kValued)) {
            p.fail("unknown flag --" + std::string(flag));
            break;
        }
        if (!has_value) {
            if (i + 1 >= argc) {
                p.fail("--" + std::string(flag) + " needs a value");
                break;
            }
            value = argv[++i];
        }
        port_given |= flag == "port";
        duration_given |= flag == "duration";
        pipeline_given |= flag == "pipeline";
        p.apply(flag, value);
    }
    if (!p.result.error.empty()) return p.result;
    if (!port_given) p.fail("--port is required (the server's port, e.g. --port 8080)");
    else if (duration_given && p.c.requests > 0)
        p.fail("--duration and --requests exclude each other");
    else if (p.c.new_conn && pipeline_given && p.c.pipeline > 1)
        p.fail("--pipeline needs persistent connections; it cannot go with --new-conn");
    return p.result;
}

}  // namespace loadgen
