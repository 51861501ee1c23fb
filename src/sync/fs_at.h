// Descriptor-relative file system helpers shared by the scanner, the tree and the watcher
// (private to offload_sync; header-only so the library's source list stays as planned).
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "offload/sync/entry.h"

namespace offload::sync::detail {

inline std::error_code last_error() { return {errno, std::generic_category()}; }

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) of `rel` below
// `root_fd` ("" is the root itself): neither a ".." nor a symlink anywhere in `rel`, including
// its last component, can lead outside. O_CLOEXEC is added.
inline std::error_code open_beneath(int root_fd, std::string_view rel, int flags, UniqueFd& out) {
  std::string path = rel.empty() ? std::string(".") : std::string(rel);
  struct open_how how {};
  how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  // EAGAIN: the kernel saw a concurrent rename and could not prove the walk stayed beneath.
  for (int attempt = 0;; ++attempt) {
    long fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
    if (fd >= 0) {
      out.reset(static_cast<int>(fd));
      return {};
    }
    if ((errno == EAGAIN || errno == EINTR) && attempt < 16) continue;
    return last_error();
  }
}

// The names in a directory (without "." and ".."), read through a fresh descriptor so that
// `dir_fd` may be O_PATH.
inline std::error_code list_directory(int dir_fd, std::vector<std::string>& names) {
  names.clear();
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return last_error();
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    auto ec = last_error();
    ::close(fd);
    return ec;
  }
  std::error_code ec;
  for (;;) {
    errno = 0;
    struct dirent* d = ::readdir(dir);
    if (!d) {
      if (errno != 0) ec = last_error();
      break;
    }
    std::string_view name = d->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  ::closedir(dir);
  return ec;
}

inline std::int64_t mtime_ns_of(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}
// The Entry for `st` (file, directory or symlink); false for special files, with `reason` set.
// For symlinks the target is read with readlinkat(dir_fd, name).
inline bool entry_from_stat(int dir_fd, const std::string& name, const struct stat& st,
                            Entry& entry, std::string& reason, std::error_code& ec) {
  entry.mode = st.st_mode & kSyncedModeBits;
  entry.size = 0;
  entry.mtime_ns = mtime_ns_of(st);
  entry.link_target.clear();
  switch (st.st_mode & S_IFMT) {
    case S_IFREG:
      entry.type = EntryType::file;
      entry.size = static_cast<std::uint64_t>(st.st_size);
      return true;
    case S_IFDIR:
      entry.type = EntryType::directory;
      return true;
    case S_IFLNK: {
      entry.type = EntryType::symlink;
      std::string target(st.st_size > 0 ? static_cast<std::size_t>(st.st_size) + 1 : 256, '\0');
      for (;;) {
        ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
        if (n < 0) {
          ec = last_error();
          return false;
        }
        // A target that filled the buffer may have been cut: grow and read again.
        if (static_cast<std::size_t>(n) < target.size()) {
          target.resize(static_cast<std::size_t>(n));
          break;
        }
        target.resize(target.size() * 2);
      }
      entry.link_target = std::move(target);
      return true;
    }
    case S_IFSOCK: reason = "socket"; return false;
    case S_IFIFO: reason = "fifo"; return false;
    case S_IFCHR:
    case S_IFBLK: reason = "device"; return false;
    default: reason = "unknown file type"; return false;
  }
}

inline std::string join_path(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  std::string out(dir);
  out += '/';
  out += name;
  return out;
}

inline std::string_view base_name(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

}  // namespace offload::sync::detail
