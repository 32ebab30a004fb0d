// config.h — loadgen's command line.
//
//   loadgen --port N [--mode http|echo] [--connections C] [--threads T]
//           [--duration S | --requests N] [--warmup S] [--rate R]
//           [--path P] [--size B] [--pipeline D] [--new-conn] [--idle K]
//           [--idle-procs P] [--idle-sources N] [--idle-hold S] [--progress S]
//           [--timeout S] [--host ADDR]
//
// A bad flag prints "loadgen: <problem>" and the usage on stderr, exit 2.
#pragma once

#include "options.h"  // ladder::Mode

#include <cstddef>
#include <cstdint>
#include <string>

namespace loadgen {

struct Config {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    ladder::Mode mode = ladder::Mode::http;
    int connections = 10;
    int threads = 1;
    double duration_s = 10;      // used when requests == 0
    std::uint64_t requests = 0;  // total; 0: run for duration_s
    double warmup_s = 0;
    std::string path = "/hello";
    std::size_t size = 64;  // echo message bytes
    int pipeline = 1;       // requests in flight per connection
    double rate = 0;        // requests/s over all connections; 0: closed loop
    bool new_conn = false;
    int idle = 0;
    int idle_procs = -1;    // child processes holding the idle ones; -1: as needed (0: none)
    int idle_sources = 0;   // source addresses 127.0.0.1 ... for them; 0: one per 2,000
    double idle_hold_s = 0; // seconds all are held quiet before the load starts
    double progress_s = 0;  // a progress line on stderr this often; 0: none (a tty: 1 s)
    double timeout_s = 10;

    bool open_loop() const { return rate > 0; }
};

// Result of parsing: `error` is empty on success.
struct ParseResult {
    Config config;
    bool help = false;
    std::string error;
};

ParseResult parse_args(int argc, const char* const* argv);
std::string usage();

}  // namespace loadgen
