#include "error.h"

#include <cstdio>
#include <cstring>

namespace ladder {

std::string errno_text(int err) {
    const char* name = ::strerrorname_np(err);
    std::string text = name ? name : ("errno " + std::to_string(err));
    text += " (";
    text += ::strerrordesc_np(err) ? ::strerrordesc_np(err) : "unknown error";
    text += ")";
    return text;
}

std::system_error sys_error(std::string_view call, int err, std::string_view hint) {
    std::string what(call);
    what += ": ";
    what += errno_text(err);
    if (!hint.empty()) {
        what += " — ";
        what += hint;
    }
    // The category's own message would repeat strerror; what() is ours alone.
    return std::system_error(err, std::generic_category(), what);
}

int report_fatal(std::string_view program, const std::exception& e) {
    std::string_view what = e.what();
    // std::system_error appends ": <strerror>" to our text; trim it.
    if (auto* se = dynamic_cast<const std::system_error*>(&e)) {
        std::string suffix = ": " + se->code().message();
        if (what.size() > suffix.size() && what.ends_with(suffix))
            what.remove_suffix(suffix.size());
    }
    std::fprintf(stderr, "%.*s: %.*s\n", int(program.size()), program.data(),
                 int(what.size()), what.data());
    return 1;
}

}  // namespace ladder
