#include "http_response.h"

#include <charconv>

namespace loadgen {

namespace {

bool equals_nocase(std::string_view a, std::string_view lower) {
    if (a.size() != lower.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char ch = a[i];
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
        if (ch != lower[i]) return false;
    }
    return true;
}

bool contains_nocase(std::string_view haystack, std::string_view lower) {
    for (std::size_t i = 0; i + lower.size() <= haystack.size(); ++i)
        if (equals_nocase(haystack.substr(i, lower.size()), lower)) return true;
    return false;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

ResponseHead parse_head(std::string_view head) {
    ResponseHead r;
    // "HTTP/1.1 200 OK\r\n"
    auto eol = head.find("\r\n");
    if (eol == std::string_view::npos) return r;
    std::string_view status_line = head.substr(0, eol);
    if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.") ||
        status_line[8] != ' ' || (status_line.size() > 12 && status_line[12] != ' '))
        return r;
    bool http10 = status_line[7] == '0';
    auto digits = status_line.substr(9, 3);
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + 3, r.status);
    if (ec != std::errc{} || ptr != digits.data() + 3 || r.status < 100) return r;

    bool keep_alive = false;
    head.remove_prefix(eol + 2);
    while (!head.empty()) {
        eol = head.find("\r\n");
        if (eol == std::string_view::npos) return r;
        std::string_view line = head.substr(0, eol);
        head.remove_prefix(eol + 2);
        if (line.empty()) break;  // the blank line
        auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) return r;
        std::string_view name = line.substr(0, colon),
                         value = trim(line.substr(colon + 1));
        if (equals_nocase(name, "content-length")) {
            std::int64_t n = -1;
            auto [p, e] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (e != std::errc{} || p != value.data() + value.size() || n < 0) return r;
            if (r.length >= 0 && r.length != n) return r;
            r.length = n;
        } else if (equals_nocase(name, "connection")) {
            if (contains_nocase(value, "close")) r.close = true;
            if (contains_nocase(value, "keep-alive")) keep_alive = true;
        } else if (equals_nocase(name, "transfer-encoding")) {
            r.chunked = true;
        }
    }
    if (http10 && !keep_alive) r.close = true;
    r.valid = true;
    return r;
}

}  // namespace loadgen
