// Writing into a synchronised tree without ever leaving it.
//
// Every path comes from the other side, which is not trusted to stay inside the tree: paths are
// checked with valid_relative_path() and resolved with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS), so a symlink planted in the tree (or a ".." in a path) can never make
// us read or write outside the root. Symlinks are created as symlinks and never followed.
// All functions return an error_code; none throws on I/O failure.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "offload/sync/entry.h"

namespace offload::sync {

class Tree;

// A file being received. Data goes to a temporary file next to the target (kTempPrefix), and
// commit() renames it over the target atomically; with in-place mode (single-file binds: the
// container holds the inode) the target itself is truncated and rewritten instead. Destroying
// an uncommitted writer removes the temporary file.
class FileWriter {
 public:
  FileWriter();  // empty until Tree::begin_file fills it
  ~FileWriter();
  FileWriter(FileWriter&&) noexcept;
  FileWriter& operator=(FileWriter&&) noexcept;
  std::error_code append(std::string_view data);
  // Sets mode and mtime, then moves the file into place.
  std::error_code commit(std::uint32_t mode, std::int64_t mtime_ns);

 private:
  friend class Tree;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A file being sent, read in chunks.
class FileReader {
 public:
  FileReader();  // empty until Tree::open_file fills it
  ~FileReader();
  FileReader(FileReader&&) noexcept;
  FileReader& operator=(FileReader&&) noexcept;
  // Reads up to `max` bytes into `out` (replacing its content); an empty `out` means end of file.
  std::error_code read(std::string& out, std::size_t max);
  // The entry as of open (fstat of the open descriptor).
  const Entry& entry() const;

 private:
  friend class Tree;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Tree {
 public:
  struct Options {
    bool in_place_files = false;  // see FileWriter
    // Owner for everything the tree creates (files, directories, symlinks); -1 keeps the
    // process's own.
    int uid = -1, gid = -1;
  };
  // Opens an existing directory as the root.
  static std::error_code open(const std::filesystem::path& root, Options options,
                              std::unique_ptr<Tree>& out);
  ~Tree();

  const std::filesystem::path& root() const { return root_; }

  std::optional<Entry> stat(const std::string& path, std::error_code& ec) const;
  // Creates or replaces a file; an existing directory or symlink at `path` is removed first when
  // the writer commits. The parent directory must exist.
  std::error_code begin_file(const std::string& path, FileWriter& out);
  std::error_code open_file(const std::string& path, FileReader& out) const;
  // Creates the directory (or fixes its mode if it exists); a file or symlink in the way is
  // replaced.
  std::error_code make_directory(const std::string& path, std::uint32_t mode);
  // Creates or replaces a symlink; sets its mtime (lutimes semantics).
  std::error_code make_symlink(const std::string& path, const std::string& target,
                               std::int64_t mtime_ns);
  // Removes a file, symlink or whole directory tree (never following symlinks). Absent is fine.
  std::error_code remove(const std::string& path);
  // Renames within the tree, replacing the target (a directory target must be empty).
  std::error_code rename(const std::string& from, const std::string& to);
  // Sets mode and mtime of an existing path (for symlinks only the mtime).
  std::error_code set_attributes(const std::string& path, std::uint32_t mode, std::int64_t mtime_ns);

 private:
  Tree() = default;
  std::filesystem::path root_;
  int root_fd_ = -1;
  Options options_;
};

}  // namespace offload::sync
