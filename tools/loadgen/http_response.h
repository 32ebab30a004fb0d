// http_response.h — what loadgen needs from an HTTP/1.1 response head.
//
// The worker finds the end of the head ("\r\n\r\n") itself, possibly across
// reads, and hands the whole head here; bodies are counted, never copied.
#pragma once

#include <cstdint>
#include <string_view>

namespace loadgen {

struct ResponseHead {
    bool valid = false;        // a status line and well-formed headers
    int status = 0;            // 200, 404, ...
    std::int64_t length = -1;  // Content-Length; -1 when absent
    bool close = false;        // Connection: close, or HTTP/1.0 without keep-alive
    bool chunked = false;      // Transfer-Encoding present (not supported)
};

// `head` runs from "HTTP/" up to and including the blank line.
ResponseHead parse_head(std::string_view head);

// Whether a response with this status has a body at all (RFC 9112 §6.3).
inline bool has_body(int status) {
    return status >= 200 && status != 204 && status != 304;
}

}  // namespace loadgen
