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
    if (capacity_ - write_ < min) {
        std::size_t live = size();
        if (read_ > 0) {
            std::memmove(data_.get(), data_.get() + read_, live);
            read_ = 0;
            write_ = live;
        }
        if (capacity_ - write_ < min) {
            std::size_t grown = std::max(2 * capacity_, live + min);
            auto bigger = std::make_unique_for_overwrite<char[]>(grown);
            if (live > 0) std::memcpy(bigger.get(), data_.get(), live);
            data_ = std::move(bigger);
            capacity_ = grown;
        }
    }
    return {data_.get() + write_, capacity_ - write_};
}

void Buffer::commit(std::size_t n) noexcept {
    assert(n <= capacity_ - write_);
    write_ += n;
}

void Buffer::append(std::string_view bytes) {
    auto space = writable(bytes.size());
    if (!bytes.empty()) std::memcpy(space.data(), bytes.data(), bytes.size());
    commit(bytes.size());
}

}  // namespace ladder
