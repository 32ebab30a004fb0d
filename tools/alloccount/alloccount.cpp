// alloccount.cpp — counts a program's heap allocations, for the hot-path test.
//
//   ALLOCCOUNT_FILE=/tmp/n LD_PRELOAD=build/bin/liballoccount.so build/bin/step-06
//
// The dynamic linker binds every call to malloc & co. to the first library
// that defines it, and LD_PRELOAD puts this one first. So each call lands
// here, adds one to a counter, and goes on to the C library's own function
// (found with dlsym(RTLD_NEXT): the next definition after ours). operator new
// calls malloc in libstdc++, so std::string and std::vector are counted too.
//
// The counter is 8 bytes of a file mapped MAP_SHARED: another process (the
// test) reads the file while the server runs, with no signal and no pipe.
// free() is not counted: the question is "does a request allocate?".
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace {

std::uint64_t early_count = 0;            // calls made before the file is mapped
std::uint64_t* counter = &early_count;    // the mapped 8 bytes, once the constructor ran

void count() {
    // Relaxed: a tally, it orders nothing. Several threads allocate at once.
    std::atomic_ref<std::uint64_t>(*counter).fetch_add(1, std::memory_order_relaxed);
}

using Malloc = void* (*)(std::size_t);
using Calloc = void* (*)(std::size_t, std::size_t);
using Realloc = void* (*)(void*, std::size_t);
using Free = void (*)(void*);
using AlignedAlloc = void* (*)(std::size_t, std::size_t);
using PosixMemalign = int (*)(void**, std::size_t, std::size_t);

Malloc real_malloc;
Calloc real_calloc;
Realloc real_realloc;
Free real_free;
AlignedAlloc real_aligned_alloc;
PosixMemalign real_posix_memalign;
AlignedAlloc real_memalign;

// The bootstrap problem: dlsym itself may call calloc (for its error
// message buffer), which lands here before real_calloc is known. Those few
// early calls get memory from this static arena instead; free() ignores it.
alignas(std::max_align_t) char arena[16 * 1024];
std::size_t arena_used = 0;
bool resolving = false;

void* arena_alloc(std::size_t size, std::size_t align = alignof(std::max_align_t)) {
    std::size_t at = (arena_used + align - 1) / align * align;
    if (at + size > sizeof arena) std::abort();  // the bootstrap needs far less
    arena_used = at + size;
    return arena + at;
}

bool in_arena(const void* p) {
    return p >= arena && p < arena + sizeof arena;
}

template <class F>
F next(const char* name) {
    return reinterpret_cast<F>(::dlsym(RTLD_NEXT, name));
}

// The first allocation happens while the program is loading, on one thread,
// so this runs before any second thread exists: plain variables will do.
bool resolved() {
    if (real_malloc) return true;
    if (resolving) return false;  // a call from inside dlsym: use the arena
    resolving = true;
    real_calloc = next<Calloc>("calloc");
    real_realloc = next<Realloc>("realloc");
    real_free = next<Free>("free");
    real_aligned_alloc = next<AlignedAlloc>("aligned_alloc");
    real_posix_memalign = next<PosixMemalign>("posix_memalign");
    real_memalign = next<AlignedAlloc>("memalign");
    real_malloc = next<Malloc>("malloc");  // last: it marks the table complete
    resolving = false;
    return true;
}

// Runs when the library is loaded, before main: map the counter file.
__attribute__((constructor)) void map_counter() {
    const char* path = std::getenv("ALLOCCOUNT_FILE");
    if (path == nullptr) return;  // counts in early_count, which no one reads
    int fd = ::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    void* p = MAP_FAILED;
    if (::ftruncate(fd, sizeof(std::uint64_t)) == 0)
        p = ::mmap(nullptr, sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);  // the mapping keeps the file
    if (p == MAP_FAILED) return;
    counter = static_cast<std::uint64_t*>(p);
    // Carry over the calls made before this ran (other libraries' start-up:
    // libstdc++ allocates its exception pool). A fork's child shares the map.
    std::atomic_ref<std::uint64_t>(*counter).fetch_add(early_count,
                                                        std::memory_order_relaxed);
}

}  // namespace

// The interposed functions: same names and signatures as the C library's.
extern "C" {

void* malloc(std::size_t size) noexcept {
    count();
    return resolved() ? real_malloc(size) : arena_alloc(size);
}

void* calloc(std::size_t n, std::size_t size) noexcept {
    count();
    if (resolved()) return real_calloc(n, size);
    return arena_alloc(n * size);  // static storage: already zero
}

void* realloc(void* p, std::size_t size) noexcept {
    count();
    if (!resolved()) return nullptr;  // not reached: dlsym does not realloc
    if (!in_arena(p)) return real_realloc(p, size);
    // Out of the arena: block sizes are not kept there, so copy as much as
    // could be p's (up to the arena's end); the arena block is never reused.
    auto room = static_cast<std::size_t>(arena + sizeof arena - static_cast<char*>(p));
    void* q = real_malloc(size);
    if (q) std::memcpy(q, p, std::min(size, room));
    return q;
}

void free(void* p) noexcept {
    if (p == nullptr || in_arena(p)) return;
    if (resolved()) real_free(p);
}

void* aligned_alloc(std::size_t align, std::size_t size) noexcept {
    count();
    return resolved() ? real_aligned_alloc(align, size) : arena_alloc(size, align);
}

int posix_memalign(void** out, std::size_t align, std::size_t size) noexcept {
    count();
    if (resolved()) return real_posix_memalign(out, align, size);
    *out = arena_alloc(size, align);
    return 0;
}

void* memalign(std::size_t align, std::size_t size) noexcept {
    count();
    return resolved() ? real_memalign(align, size) : arena_alloc(size, align);
}

}  // extern "C"
