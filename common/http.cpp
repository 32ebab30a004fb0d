#include "http.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace ladder {
namespace {

// Character classes, one table lookup per byte (RFC 9110 §5.6.2, §5.5).
enum : std::uint8_t {
    kToken = 1,   // tchar: method and field-name characters
    kTarget = 2,  // VCHAR: request-target characters (no controls, no space)
    kValue = 4,   // field-vchar, obs-text, SP, HT: field-value characters
};

constexpr std::array<std::uint8_t, 256> make_classes() {
    std::array<std::uint8_t, 256> table{};
    constexpr std::string_view punct = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; ++c) {
        bool alnum =
            (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        bool tchar = alnum || punct.find(static_cast<char>(c)) != std::string_view::npos;
        bool vchar = c >= 0x21 && c <= 0x7e;
        bool value = vchar || c >= 0x80 || c == ' ' || c == '\t';
        table[c] = static_cast<std::uint8_t>(
            (tchar ? kToken : 0) | (vchar ? kTarget : 0) | (value ? kValue : 0));
    }
    return table;
}

constexpr std::array<std::uint8_t, 256> kClass = make_classes();

bool is(char c, std::uint8_t cls) noexcept {
    return (kClass[static_cast<unsigned char>(c)] & cls) != 0;
}

char lower(char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// The line that starts at `from`, without its CRLF; on success bytes is the
// offset just past its LF. The LF must come before `limit` (an offset into
// buf): once that many bytes are here without one, the answer is `too_long`
// at once — a line that never ends must not make us buffer forever.
ParseResult find_line(std::string_view buf, std::size_t from, std::size_t limit,
                      int too_long, std::string_view& line) noexcept {
    std::size_t end = std::min(buf.size(), limit);
    const void* lf =
        from < end ? std::memchr(buf.data() + from, '\n', end - from) : nullptr;
    if (lf == nullptr)
        return buf.size() >= limit ? ParseResult::fail(too_long) : ParseResult::more();
    auto at = static_cast<std::size_t>(static_cast<const char*>(lf) - buf.data());
    if (at == from || buf[at - 1] != '\r') return ParseResult::fail(400);  // bare LF
    line = buf.substr(from, at - 1 - from);
    return ParseResult::done(at + 1);
}

// §2.2: a server SHOULD ignore at least one empty line before the request
// line (some clients send a CRLF after a POST body). Exactly one is skipped:
// skipping any number would let a stream of CRLFs grow the buffer forever.
std::size_t request_line_start(std::string_view buf) noexcept {
    return buf.starts_with("\r\n") ? 2 : 0;
}

// "HTTP/" DIGIT "." DIGIT (§2.3): a malformed version is a 400; a well-formed
// one we do not speak is a 505.
int parse_version(std::string_view v, int& minor) noexcept {
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (v.size() != 8 || !v.starts_with("HTTP/") || !digit(v[5]) || v[6] != '.' ||
        !digit(v[7]))
        return 400;
    if (v[5] != '1' || v[7] > '1') return 505;
    minor = v[7] - '0';
    return 0;
}

// Splits the target into path and query. Origin-form "/p?q", asterisk-form
// "*", and absolute-form "http://host/p?q" (§3.2.2: a server MUST accept it;
// the Host field still has to be there and is what counts).
bool split_target(std::string_view target, Request& out) noexcept {
    std::string_view rest = target;
    if (iequals(target.substr(0, 7), "http://") ||
        iequals(target.substr(0, 8), "https://")) {
        rest = target.substr(target.find("//") + 2);
        rest = rest.substr(std::min(rest.find_first_of("/?"), rest.size()));
    } else if (target != "*" && !target.starts_with('/')) {
        return false;
    }
    std::size_t q = rest.find('?');
    out.path = rest.substr(0, q);
    out.query = q == std::string_view::npos ? std::string_view{} : rest.substr(q + 1);
    if (out.path.empty()) out.path = "/";
    return true;
}

// method SP request-target SP HTTP-version (§3): single spaces, nothing else.
int parse_request_line(std::string_view line, Request& out) noexcept {
    std::size_t i = 0;
    while (i < line.size() && is(line[i], kToken)) ++i;
    if (i == 0 || i == line.size() || line[i] != ' ') return 400;
    out.method = line.substr(0, i);
    std::size_t start = ++i;
    while (i < line.size() && is(line[i], kTarget)) ++i;
    if (i == start || i == line.size() || line[i] != ' ') return 400;
    out.target = line.substr(start, i - start);
    if (!split_target(out.target, out)) return 400;
    return parse_version(line.substr(i + 1), out.minor_version);
}

// field-name ":" OWS field-value OWS (§5). Only a token may precede the
// colon: not a space (§5.1: that is how a proxy and a server come to read
// different names), not the SP/HT that starts an obs-fold line (§5.2).
bool split_field(std::string_view line, Header& h) noexcept {
    std::size_t i = 0;
    while (i < line.size() && is(line[i], kToken)) ++i;
    if (i == 0 || i == line.size() || line[i] != ':') return false;
    std::string_view value = trim_ows(line.substr(i + 1));
    for (char c : value)
        if (!is(c, kValue)) return false;  // CR, NUL, other controls
    h = {line.substr(0, i), value};
    return true;
}

// What the fields say about framing and persistence, gathered in one pass.
struct Framing {
    int hosts = 0;
    bool has_length = false;
    bool has_transfer_encoding = false;
    bool close = false;       // Connection: close
    bool keep_alive = false;  // Connection: keep-alive (matters for HTTP/1.0)
};

// Connection is a comma-separated list of options (RFC 9110 §7.6.1).
void note_connection(std::string_view list, Framing& f) noexcept {
    while (!list.empty()) {
        std::size_t comma = std::min(list.find(','), list.size());
        std::string_view option = trim_ows(list.substr(0, comma));
        if (iequals(option, "close")) f.close = true;
        if (iequals(option, "keep-alive")) f.keep_alive = true;
        list.remove_prefix(std::min(comma + 1, list.size()));
    }
}

// Returns an error status, or 0.
int note_field(const Header& h, Framing& f, Request& out) noexcept {
    if (iequals(h.name, "host")) {
        ++f.hosts;
    } else if (iequals(h.name, "content-length")) {
        // Any second Content-Length is refused, even an equal one: the
        // request's end must be beyond doubt (RFC 9112 §6.3).
        std::optional<std::uint64_t> n = parse_decimal(h.value);
        if (f.has_length || !n) return 400;
        f.has_length = true;
        out.content_length = *n;
    } else if (iequals(h.name, "transfer-encoding")) {
        f.has_transfer_encoding = true;
    } else if (iequals(h.name, "connection")) {
        note_connection(h.value, f);
    }
    return 0;
}

// The head is complete: the checks that need every field.
ParseResult finish(const Framing& f, Request& out, std::size_t head_bytes) noexcept {
    // Both: one of the two parsers on the path would frame it differently —
    // the classic request smuggling setup (§6.1: "ought to be handled as an
    // error").
    if (f.has_transfer_encoding && f.has_length) return ParseResult::fail(400);
    // Without chunked decoding the body's end is unknown: 501, then close.
    if (f.has_transfer_encoding) return ParseResult::fail(501);
    if (f.hosts > 1 || (f.hosts == 0 && out.minor_version == 1))
        return ParseResult::fail(400);
    if (out.content_length > kMaxBody) return ParseResult::fail(413);
    out.keep_alive = !f.close && (out.minor_version == 1 || f.keep_alive);
    return ParseResult::done(head_bytes);
}

ParseResult parse_fields(std::string_view buf, std::size_t pos, Request& out) noexcept {
    const std::size_t limit = pos + kMaxHeaderBlock;
    Framing framing;
    for (;;) {
        std::string_view line;
        ParseResult r = find_line(buf, pos, limit, 431, line);
        if (r.state != ParseResult::complete) return r;
        pos = r.bytes;
        if (line.empty()) return finish(framing, out, pos);
        if (out.header_count == kMaxHeaders) return ParseResult::fail(431);
        Header& h = out.headers[out.header_count++];
        if (!split_field(line, h)) return ParseResult::fail(400);
        if (int status = note_field(h, framing, out)) return ParseResult::fail(status);
    }
}

// No line has ended since the last (partial) answer: the lines are as they
// were, so only a limit can have been crossed by the new bytes.
ParseResult check_limits(std::string_view buf) noexcept {
    std::size_t start = request_line_start(buf);
    std::string_view line;
    ParseResult r = find_line(buf, start, start + kMaxRequestLine + 2, 414, line);
    if (r.state != ParseResult::complete) return r;
    return buf.size() >= r.bytes + kMaxHeaderBlock ? ParseResult::fail(431)
                                                   : ParseResult::more();
}

}  // namespace

ParseResult parse_request(std::string_view buf, Request& out, std::size_t last_len) {
    if (last_len > 0 && last_len <= buf.size() &&
        std::memchr(buf.data() + last_len, '\n', buf.size() - last_len) == nullptr)
        return check_limits(buf);
    out.header_count = 0;
    out.content_length = 0;
    std::size_t start = request_line_start(buf);
    std::string_view line;
    // +2: the limit is on the line's text; its CRLF comes on top.
    ParseResult r = find_line(buf, start, start + kMaxRequestLine + 2, 414, line);
    if (r.state != ParseResult::complete) return r;
    if (int status = parse_request_line(line, out)) return ParseResult::fail(status);
    return parse_fields(buf, r.bytes, out);
}

std::optional<std::string_view> Request::header(std::string_view name) const noexcept {
    for (const Header& h : fields())
        if (iequals(h.name, name)) return h.value;
    return std::nullopt;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::optional<std::uint64_t> parse_decimal(std::string_view digits) noexcept {
    if (digits.empty()) return std::nullopt;
    std::uint64_t n = 0;
    constexpr std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
    for (char c : digits) {
        if (c < '0' || c > '9') return std::nullopt;
        auto d = static_cast<std::uint64_t>(c - '0');
        if (n > (max - d) / 10) return std::nullopt;  // would overflow
        n = n * 10 + d;
    }
    return n;
}

std::optional<std::string_view> query_param(std::string_view query,
                                            std::string_view key) noexcept {
    while (!query.empty()) {
        std::size_t amp = std::min(query.find('&'), query.size());
        std::string_view pair = query.substr(0, amp);
        std::size_t eq = std::min(pair.find('='), pair.size());
        if (pair.substr(0, eq) == key) return pair.substr(std::min(eq + 1, pair.size()));
        query.remove_prefix(std::min(amp + 1, query.size()));
    }
    return std::nullopt;
}

}  // namespace ladder
