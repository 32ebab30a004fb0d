// buffer.h — a growable byte buffer with a read end and a write end.
//
//   +-------------------+------------------+------------------+
//   |  consumed (free)  |  readable bytes  |  writable space  |
//   +-------------------+------------------+------------------+
//   0        <=      read_      <=      write_     <=     capacity
//
// Readers look at readable() and consume(n); writers ask for writable(n),
// fill some of it and commit(k). Consumed space is reclaimed by sliding the
// readable bytes to the front before growing, so a connection that keeps
// up uses one allocation for its lifetime. The storage is not zero-filled:
// a read asks for 64 KiB of room, and a short request must not make all 16
// pages of it resident (measured: 64 KiB of RSS per keep-alive connection).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

namespace ladder {

class Buffer {
public:
    std::string_view readable() const noexcept {
        return {data_.get() + read_, write_ - read_};
    }
    std::size_t size() const noexcept { return write_ - read_; }
    bool empty() const noexcept { return read_ == write_; }

    void consume(std::size_t n) noexcept;
    void clear() noexcept { read_ = write_ = 0; }

    // At least `min` bytes of writable space (grows if needed).
    std::span<char> writable(std::size_t min);
    void commit(std::size_t n) noexcept;

    void append(std::string_view bytes);

private:
    std::unique_ptr<char[]> data_;
    std::size_t capacity_ = 0;
    std::size_t read_ = 0;
    std::size_t write_ = 0;
};

}  // namespace ladder
