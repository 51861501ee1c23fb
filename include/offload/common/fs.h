// Filesystem helpers with the guarantees the user's files need: atomic replacement and private
// directories.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace offload {

// Replaces `path` with `data` atomically: writes a temporary file in the same directory, fsyncs
// it, renames it over `path` and fsyncs the directory. Readers see the old or the new content,
// never a mix, and a crash leaves the old file intact. `mode` applies to the new file.
std::error_code write_file_atomic(const std::filesystem::path& path, std::string_view data,
                                  std::filesystem::perms mode = std::filesystem::perms(0600));

// Writes all of `data` to `fd`, retrying short writes and EINTR.
std::error_code write_all(int fd, std::string_view data);

// Reads a whole file. Returns errc::no_such_file_or_directory when absent.
std::error_code read_file(const std::filesystem::path& path, std::string& out);

// Creates `dir` (and parents) if needed and makes it 0700. Fails if it exists but is not a
// directory or is owned by another user: a socket in it would not be private.
std::error_code ensure_private_dir(const std::filesystem::path& dir);

// A path to show in messages: $HOME replaced by "~".
std::string display_path(const std::filesystem::path& path);

}  // namespace offload
