#include "offload/sync/tree.h"

#include "offload/common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "fs_at.h"
#include "offload/common/token.h"

// fchmodat2 (Linux 6.6) is the only race-free way to chmod a name without following a symlink;
// glibc 2.36 does not know it yet. The number is the same on every architecture.
#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

namespace offload::sync {
namespace {
using detail::last_error;
using detail::UniqueFd;

std::error_code invalid_path() { return std::make_error_code(std::errc::invalid_argument); }

struct timespec to_timespec(std::int64_t ns) {
  struct timespec ts {};
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1000000000;
    ts.tv_sec -= 1;
  }
  return ts;
}

// Sets the mtime (atime untouched) of `name` in `dir_fd`, never following a symlink.
std::error_code set_mtime_at(int dir_fd, const char* name, std::int64_t mtime_ns) {
  struct timespec times[2] = {{0, UTIME_OMIT}, to_timespec(mtime_ns)};
  if (::utimensat(dir_fd, name, times, AT_SYMLINK_NOFOLLOW) != 0) return last_error();
  return {};
}

// chmod of `name` in `dir_fd` without following a symlink in its place.
std::error_code chmod_at(int dir_fd, const char* name, std::uint32_t mode) {
  mode &= 07777;
  if (::syscall(SYS_fchmodat2, dir_fd, name, mode, AT_SYMLINK_NOFOLLOW) == 0) return {};
  if (errno != ENOSYS) return last_error();
  // Older kernels: pin the inode with O_PATH|O_NOFOLLOW, refuse symlinks, then chmod the pinned
  // inode through /proc (what glibc itself does).
  UniqueFd fd(::openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return last_error();
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return last_error();
  if (S_ISLNK(st.st_mode)) return std::make_error_code(std::errc::operation_not_supported);
  std::string proc = "/proc/self/fd/" + std::to_string(fd.get());
  if (::chmod(proc.c_str(), mode) != 0) return last_error();
  return {};
}

std::error_code chown_at(int dir_fd, const char* name, const Tree::Options& o) {
  if (o.uid < 0 && o.gid < 0) return {};
  if (::fchownat(dir_fd, name, static_cast<uid_t>(o.uid), static_cast<gid_t>(o.gid),
                 AT_SYMLINK_NOFOLLOW) != 0)
    return last_error();
  return {};
}


// Removes `name` in `dir_fd` and, if it is a directory, everything below it. Symlinks are
// unlinked, never followed; subdirectories are opened with O_NOFOLLOW relative to their parent.
std::error_code remove_at(int dir_fd, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? std::error_code{} : last_error();
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) return last_error();
    return {};
  }
  // Read-only directories (Go's module cache, for one) must be opened up to be emptied; as
  // root this is unnecessary, as their owner it is allowed, otherwise the unlinks report it.
  if ((st.st_mode & 0700) != 0700) chmod_at(dir_fd, name.c_str(), (st.st_mode & 07777) | 0700);
  {
    UniqueFd sub(::openat(dir_fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub.valid()) return last_error();
    std::vector<std::string> names;
    if (auto ec = detail::list_directory(sub.get(), names)) return ec;
    for (const auto& child : names)
      if (auto ec = remove_at(sub.get(), child)) return ec;
  }
  if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return last_error();
  return {};
}

}  // namespace

// --- Tree ------------------------------------------------------------------------------------

namespace {
// Opens the directory that holds `path` (beneath the root, no symlinks) and returns the last
// component. `path` must be a valid, non-empty relative path.
std::error_code open_parent(int root_fd, const std::string& path, UniqueFd& dir,
                            std::string& name) {
  if (path.empty() || !valid_relative_path(path)) return invalid_path();
  name = std::string(detail::base_name(path));
  return detail::open_beneath(root_fd, parent_path(path), O_PATH | O_DIRECTORY, dir);
}
}  // namespace

std::error_code Tree::open(const std::filesystem::path& root, Options options,
                           std::unique_ptr<Tree>& out) {
  // The root is local configuration and may be reached through a symlink; nothing below it is.
  UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return last_error();
  // Without openat2 the confinement cannot be guaranteed: refuse rather than degrade.
  UniqueFd probe;
  if (auto ec = detail::open_beneath(fd.get(), "", O_PATH | O_DIRECTORY, probe)) return ec;
  std::unique_ptr<Tree> tree(new Tree());
  tree->root_ = root;
  tree->root_fd_ = fd.release();
  tree->options_ = options;
  out = std::move(tree);
  return {};
}

Tree::~Tree() {
  if (root_fd_ >= 0) ::close(root_fd_);
}

std::optional<Entry> Tree::stat(const std::string& path, std::error_code& ec) const {
  ec.clear();
  if (!valid_relative_path(path)) {
    ec = invalid_path();
    return std::nullopt;
  }
  struct stat st {};
  Entry entry;
  entry.path = path;
  std::string reason;
  if (path.empty()) {
    if (::fstat(root_fd_, &st) != 0) {
      ec = last_error();
      return std::nullopt;
    }
    detail::entry_from_stat(root_fd_, "", st, entry, reason, ec);
    return entry;
  }
  UniqueFd dir;
  std::string name;
  ec = open_parent(root_fd_, path, dir, name);
  if (ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory) {
    ec.clear();
    return std::nullopt;
  }
  if (ec) return std::nullopt;
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) ec = last_error();
    return std::nullopt;
  }
  if (!detail::entry_from_stat(dir.get(), name, st, entry, reason, ec)) {
    if (!ec) ec = std::make_error_code(std::errc::operation_not_supported);  // special file
    return std::nullopt;
  }
  return entry;
}

// --- FileWriter ------------------------------------------------------------------------------

struct FileWriter::Impl {
  UniqueFd dir;          // the target's directory
  std::string name;      // the target's name in `dir`
  std::string temp;      // the temporary file's name in `dir`
  UniqueFd fd;           // open on the temporary file
  Tree::Options options;
  bool done = false;

  ~Impl() {
    if (!done && dir.valid() && !temp.empty()) ::unlinkat(dir.get(), temp.c_str(), 0);
  }

  // Single-file binds: copy the received data into the existing inode. Returns false (and
  // nothing changed) when the target is not a plain regular file; hard-linked files are
  // refused too, since rewriting them would change the other names (possibly outside the tree).
  bool rewrite_in_place(std::uint32_t mode, std::int64_t mtime_ns, std::error_code& ec) {
    UniqueFd target(
        ::openat(dir.get(), name.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!target.valid()) return false;
    struct stat st {};
    if (::fstat(target.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) return false;
    if (::ftruncate(target.get(), 0) != 0) {
      ec = last_error();
      return true;
    }
    if (::lseek(fd.get(), 0, SEEK_SET) != 0) {
      ec = last_error();
      return true;
    }
    // The temporary file was opened write-only: read it through a new descriptor.
    UniqueFd src(::openat(dir.get(), temp.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!src.valid()) {
      ec = last_error();
      return true;
    }
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(src.get(), buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        ec = last_error();
        return true;
      }
      if (n == 0) break;
      if ((ec = write_all(target.get(), {buf, static_cast<std::size_t>(n)}))) return true;
    }
    if (options.uid >= 0 || options.gid >= 0) {
      if (::fchown(target.get(), static_cast<uid_t>(options.uid),
                   static_cast<gid_t>(options.gid)) != 0) {
        ec = last_error();
        return true;
      }
    }
    if (::fchmod(target.get(), mode & kSyncedModeBits) != 0) {
      ec = last_error();
      return true;
    }
    struct timespec times[2] = {{0, UTIME_OMIT}, to_timespec(mtime_ns)};
    if (::futimens(target.get(), times) != 0) {
      ec = last_error();
      return true;
    }
    ::unlinkat(dir.get(), temp.c_str(), 0);
    done = true;
    return true;
  }
};

FileWriter::FileWriter() = default;
FileWriter::~FileWriter() = default;
FileWriter::FileWriter(FileWriter&&) noexcept = default;
FileWriter& FileWriter::operator=(FileWriter&&) noexcept = default;

std::error_code FileWriter::append(std::string_view data) {
  if (!impl_ || impl_->done || !impl_->fd.valid())
    return std::make_error_code(std::errc::bad_file_descriptor);
  return write_all(impl_->fd.get(), data);
}

std::error_code FileWriter::commit(std::uint32_t mode, std::int64_t mtime_ns) {
  if (!impl_ || impl_->done || !impl_->fd.valid())
    return std::make_error_code(std::errc::bad_file_descriptor);
  Impl& w = *impl_;
  std::error_code ec;
  if (w.options.in_place_files && w.rewrite_in_place(mode, mtime_ns, ec)) {
    w.fd.reset();
    return ec;
  }
  const Tree::Options& o = w.options;
  // Owner first: chown clears set-id bits, so the mode must come after it, and the mtime after
  // the last write.
  if (o.uid >= 0 || o.gid >= 0) {
    if (::fchown(w.fd.get(), static_cast<uid_t>(o.uid), static_cast<gid_t>(o.gid)) != 0)
      return last_error();
  }
  if (::fchmod(w.fd.get(), mode & kSyncedModeBits) != 0) return last_error();
  struct timespec times[2] = {{0, UTIME_OMIT}, to_timespec(mtime_ns)};
  if (::futimens(w.fd.get(), times) != 0) return last_error();
  w.fd.reset();
  // rename() cannot replace a directory with a file.
  struct stat st {};
  if (::fstatat(w.dir.get(), w.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
    if (auto rec = remove_at(w.dir.get(), w.name)) return rec;
  if (::renameat(w.dir.get(), w.temp.c_str(), w.dir.get(), w.name.c_str()) != 0) return last_error();
  w.done = true;
  return {};
}

std::error_code Tree::begin_file(const std::string& path, FileWriter& out) {
  auto impl = std::make_unique<FileWriter::Impl>();
  if (auto ec = open_parent(root_fd_, path, impl->dir, impl->name)) return ec;
  impl->options = options_;
  for (int attempt = 0; attempt < 8; ++attempt) {
    impl->temp = std::string(kTempPrefix) + random_hex(8);
    int fd = ::openat(impl->dir.get(), impl->temp.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      impl->fd.reset(fd);
      break;
    }
    if (errno != EEXIST) {
      auto ec = last_error();
      impl->temp.clear();
      return ec;
    }
  }
  if (!impl->fd.valid()) {
    impl->temp.clear();
    return std::make_error_code(std::errc::file_exists);
  }
  out.impl_ = std::move(impl);
  return {};
}

// --- FileReader ------------------------------------------------------------------------------

struct FileReader::Impl {
  UniqueFd fd;
  Entry entry;
};

FileReader::FileReader() = default;
FileReader::~FileReader() = default;
FileReader::FileReader(FileReader&&) noexcept = default;
FileReader& FileReader::operator=(FileReader&&) noexcept = default;

std::error_code FileReader::read(std::string& out, std::size_t max) {
  out.clear();
  if (!impl_ || !impl_->fd.valid()) return std::make_error_code(std::errc::bad_file_descriptor);
  out.resize(max);
  for (;;) {
    ssize_t n = ::read(impl_->fd.get(), out.data(), max);
    if (n < 0) {
      if (errno == EINTR) continue;
      out.clear();
      return last_error();
    }
    out.resize(static_cast<std::size_t>(n));
    return {};
  }
}

const Entry& FileReader::entry() const {
  static const Entry empty;
  return impl_ ? impl_->entry : empty;
}

std::error_code Tree::open_file(const std::string& path, FileReader& out) const {
  if (path.empty() || !valid_relative_path(path)) return invalid_path();
  auto impl = std::make_unique<FileReader::Impl>();
  // O_NONBLOCK: opening a fifo planted under the name must not hang the loop.
  if (auto ec = detail::open_beneath(root_fd_, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK, impl->fd))
    return ec;
  struct stat st {};
  if (::fstat(impl->fd.get(), &st) != 0) return last_error();
  if (!S_ISREG(st.st_mode))
    return std::make_error_code(S_ISDIR(st.st_mode) ? std::errc::is_a_directory
                                                    : std::errc::operation_not_supported);
  int flags = ::fcntl(impl->fd.get(), F_GETFL);
  if (flags >= 0) ::fcntl(impl->fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  impl->entry.path = path;
  impl->entry.type = EntryType::file;
  impl->entry.mode = st.st_mode & kSyncedModeBits;
  impl->entry.size = static_cast<std::uint64_t>(st.st_size);
  impl->entry.mtime_ns = detail::mtime_ns_of(st);
  out.impl_ = std::move(impl);
  return {};
}

// --- Directories, symlinks, removal ----------------------------------------------------------

std::error_code Tree::make_directory(const std::string& path, std::uint32_t mode) {
  if (path.empty()) {
    if (::fchmod(root_fd_, mode & kSyncedModeBits) != 0) return last_error();
    return {};
  }
  UniqueFd dir;
  std::string name;
  if (auto ec = open_parent(root_fd_, path, dir, name)) return ec;
  struct stat st {};
  bool exists = ::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (exists && !S_ISDIR(st.st_mode)) {
    if (::unlinkat(dir.get(), name.c_str(), 0) != 0 && errno != ENOENT) return last_error();
    exists = false;
  }
  if (!exists) {
    // Private until owner and mode are set.
    if (::mkdirat(dir.get(), name.c_str(), 0700) != 0 && errno != EEXIST) return last_error();
    if (auto ec = chown_at(dir.get(), name.c_str(), options_)) return ec;
  }
  return chmod_at(dir.get(), name.c_str(), mode & kSyncedModeBits);
}

std::error_code Tree::make_symlink(const std::string& path, const std::string& target,
                                   std::int64_t mtime_ns) {
  if (target.empty() || target.find('\0') != std::string::npos) return invalid_path();
  UniqueFd dir;
  std::string name;
  if (auto ec = open_parent(root_fd_, path, dir, name)) return ec;
  // Built under a temporary name and renamed into place, so the path never is missing.
  std::string temp;
  for (int attempt = 0;; ++attempt) {
    temp = std::string(kTempPrefix) + random_hex(8);
    if (::symlinkat(target.c_str(), dir.get(), temp.c_str()) == 0) break;
    if (errno != EEXIST || attempt >= 8) return last_error();
  }
  auto fail = [&](std::error_code ec) {
    ::unlinkat(dir.get(), temp.c_str(), 0);
    return ec;
  };
  if (auto ec = chown_at(dir.get(), temp.c_str(), options_)) return fail(ec);
  if (auto ec = set_mtime_at(dir.get(), temp.c_str(), mtime_ns)) return fail(ec);
  struct stat st {};
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
    if (auto ec = remove_at(dir.get(), name)) return fail(ec);
  if (::renameat(dir.get(), temp.c_str(), dir.get(), name.c_str()) != 0) return fail(last_error());
  return {};
}

std::error_code Tree::remove(const std::string& path) {
  if (path.empty()) return invalid_path();  // the root itself is never removed
  UniqueFd dir;
  std::string name;
  auto ec = open_parent(root_fd_, path, dir, name);
  if (ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory) return {};
  if (ec) return ec;
  return remove_at(dir.get(), name);
}

std::error_code Tree::rename(const std::string& from, const std::string& to) {
  UniqueFd from_dir, to_dir;
  std::string from_name, to_name;
  if (auto ec = open_parent(root_fd_, from, from_dir, from_name)) return ec;
  if (auto ec = open_parent(root_fd_, to, to_dir, to_name)) return ec;
  // renameat() never follows a symlink in the last component of either name.
  if (::renameat(from_dir.get(), from_name.c_str(), to_dir.get(), to_name.c_str()) != 0)
    return last_error();
  return {};
}

std::error_code Tree::set_attributes(const std::string& path, std::uint32_t mode,
                                     std::int64_t mtime_ns) {
  if (!valid_relative_path(path)) return invalid_path();
  if (path.empty()) {
    if (::fchmod(root_fd_, mode & kSyncedModeBits) != 0) return last_error();
    struct timespec times[2] = {{0, UTIME_OMIT}, to_timespec(mtime_ns)};
    if (::futimens(root_fd_, times) != 0) return last_error();
    return {};
  }
  UniqueFd dir;
  std::string name;
  if (auto ec = open_parent(root_fd_, path, dir, name)) return ec;
  struct stat st {};
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return last_error();
  if (!S_ISLNK(st.st_mode)) {
    auto ec = chmod_at(dir.get(), name.c_str(), mode & kSyncedModeBits);
    // Replaced by a symlink since the fstatat: its mode cannot be set, the mtime still can.
    if (ec && ec != std::errc::operation_not_supported) return ec;
  }
  return set_mtime_at(dir.get(), name.c_str(), mtime_ns);
}

}  // namespace offload::sync
