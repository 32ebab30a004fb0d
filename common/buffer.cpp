#include "buffer.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace ladder {

void Buffer::consume(std::size_t n) noexcept {
    assert(n <= size());
    read_ += n;
    if (read_ == write_) read_ = write_ = 0;
}

std::span<char> Buffer::writable(std::size_t min) {
    if (data_.size() - write_ < min) {
        std::size_t live = size();
        if (read_ > 0) {
            std::memmove(data_.data(), data_.data() + read_, live);
            read_ = 0;
            write_ = live;
        }
        if (data_.size() - write_ < min) data_.resize(std::max(2 * data_.size(), live + min));
    }
    return {data_.data() + write_, data_.size() - write_};
}

void Buffer::commit(std::size_t n) noexcept {
    assert(n <= data_.size() - write_);
    write_ += n;
}

void Buffer::append(std::string_view bytes) {
    auto space = writable(bytes.size());
    if (!bytes.empty()) std::memcpy(space.data(), bytes.data(), bytes.size());
    commit(bytes.size());
}

}  // namespace ladder
