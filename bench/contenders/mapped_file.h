// The benchmark's drivers read their input the way bench/book.c does: the whole file mapped read-only with
// MAP_POPULATE before the clock starts, so that no driver's input takes memory its book then lacks, and every
// contender's book gets the same kind of memory.
#pragma once
#include <cstddef>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

template <class Byte>
class MappedFile {
 public:
    explicit MappedFile(const char* path) {
        const int fd = ::open(path, O_RDONLY);
        if (fd < 0) return;
        struct stat st;
        if (::fstat(fd, &st) == 0 && st.st_size > 0) {
            void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
            if (p != MAP_FAILED) {
                data_ = static_cast<const Byte*>(p);
                size_ = static_cast<std::size_t>(st.st_size);
            }
        }
        ::close(fd);
    }
    ~MappedFile() {
        if (data_) ::munmap(const_cast<Byte*>(data_), size_);
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    const Byte* data() const { return data_; }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    const Byte* begin() const { return data_; }
    const Byte* end() const { return data_ + size_; }
    const Byte& operator[](std::size_t i) const { return data_[i]; }

 private:
    const Byte* data_ = nullptr;
    std::size_t size_ = 0;
};
