// Large test files whose content is a function of (seed, offset): written and checked a piece at
// a time, so a test can move hundreds of MiB without holding them in memory or keeping copies.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

namespace offload::test {

// The 8 bytes at word `index` of the file with `seed` (splitmix64: fast, and no two files alike).
inline std::uint64_t pattern_word(std::uint64_t seed, std::uint64_t index) {
  std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Bytes [offset, offset + out.size()) of the pattern; `offset` must be a multiple of 8.
inline void fill_pattern(std::uint64_t seed, std::uint64_t offset, std::string& out) {
  std::uint64_t w = offset / 8;
  for (std::size_t i = 0; i < out.size(); i += 8, ++w) {
    std::uint64_t v = pattern_word(seed, w);
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, out.size() - i));
  }
}

inline constexpr std::size_t kPatternPiece = 1 << 20;

// Writes `size` bytes of the pattern to `path` (creating its parent), one MiB per write(2), as a
// program writing its output would. False (and errno) on failure.
inline bool write_pattern_file(const std::filesystem::path& path, std::uint64_t seed,
                               std::uint64_t size) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::string piece;
  bool ok = true;
  for (std::uint64_t off = 0; ok && off < size; off += kPatternPiece) {
    piece.resize(std::min<std::uint64_t>(kPatternPiece, size - off));
    fill_pattern(seed, off, piece);
    for (std::size_t done = 0; ok && done < piece.size();) {
      ssize_t n = ::write(fd, piece.data() + done, piece.size() - done);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) done += static_cast<std::size_t>(n);
    }
  }
  return ::close(fd) == 0 && ok;
}

// "" if `path` holds exactly `size` bytes of the pattern, else what is wrong.
inline std::string check_pattern_file(const std::filesystem::path& path, std::uint64_t seed,
                                      std::uint64_t size) {
  std::error_code ec;
  auto actual = std::filesystem::file_size(path, ec);
  if (ec) return path.string() + ": " + ec.message();
  if (actual != size)
    return path.string() + ": " + std::to_string(actual) + " bytes, expected " +
           std::to_string(size);
  std::ifstream in(path, std::ios::binary);
  std::string want, got(kPatternPiece, '\0');
  for (std::uint64_t off = 0; off < size; off += kPatternPiece) {
    want.resize(std::min<std::uint64_t>(kPatternPiece, size - off));
    fill_pattern(seed, off, want);
    got.resize(want.size());
    if (!in.read(got.data(), static_cast<std::streamsize>(got.size())))
      return path.string() + ": short read at " + std::to_string(off);
    if (got != want) return path.string() + ": content differs in the MiB at " + std::to_string(off);
  }
  return "";
}

// True if `path` exists with exactly `size` bytes (a cheap "has it arrived" before a full check).
inline bool has_size(const std::filesystem::path& path, std::uint64_t size) {
  std::error_code ec;
  return std::filesystem::file_size(path, ec) == size && !ec;
}

// `count` files "<prefix><i>.bin" of `size` bytes, file i with seed first_seed + i: what one
// side writes and both sides must end up with.
class PatternFiles {
 public:
  PatternFiles(std::string prefix, int count, std::uint64_t first_seed, std::uint64_t size)
      : prefix_(std::move(prefix)), count_(count), first_seed_(first_seed), size_(size) {}

  std::string name(int i) const { return prefix_ + std::to_string(i) + ".bin"; }
  std::uint64_t total() const { return size_ * static_cast<std::uint64_t>(count_); }

  bool write(const std::filesystem::path& root) const {
    for (int i = 0; i < count_; ++i)
      if (!write_pattern_file(root / name(i), first_seed_ + i, size_)) return false;
    return true;
  }
  // Every file there with its full size (a cheap "has it all arrived").
  bool all_there(const std::filesystem::path& root) const {
    for (int i = 0; i < count_; ++i)
      if (!has_size(root / name(i), size_)) return false;
    return true;
  }
  // "" if every file is there with exactly its content, else the first difference.
  std::string check(const std::filesystem::path& root) const {
    for (int i = 0; i < count_; ++i)
      if (auto why = check_pattern_file(root / name(i), first_seed_ + i, size_); !why.empty())
        return why;
    return "";
  }

 private:
  std::string prefix_;
  int count_;
  std::uint64_t first_seed_, size_;
};

// Under AddressSanitizer freed memory stays in quarantine: the resident set then says nothing
// about what a program holds.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kResidentSetIsMeaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kResidentSetIsMeaningful = false;
#else
inline constexpr bool kResidentSetIsMeaningful = true;
#endif
#else
inline constexpr bool kResidentSetIsMeaningful = true;
#endif

// The process's peak resident set so far, in KiB (VmHWM).
inline long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

}  // namespace offload::test
