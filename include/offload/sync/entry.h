// What the synchroniser knows about one path of a synchronised tree.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace offload::sync {

enum class EntryType { file, directory, symlink };

// The mode bits that synchronise: permissions and the sticky bit. Set-user-ID and set-group-ID
// never travel, in either direction: a file the session writes must not become a set-id program
// on the laptop (nor one of the laptop's on the runner). A set-id file keeps its bits where it
// is until its content changes on the other side.
inline constexpr std::uint32_t kSyncedModeBits = 01777;

const char* to_string(EntryType type);

struct Entry {
  std::string path;         // relative to the tree's root, '/'-separated; "" is the root itself
  EntryType type = EntryType::file;
  std::uint32_t mode = 0;   // permission bits only (kSyncedModeBits)
  std::uint64_t size = 0;   // files: bytes; others: 0
  std::int64_t mtime_ns = 0;
  std::string link_target;  // symlinks: the target exactly as stored (never resolved)

  // The same content as far as synchronisation is concerned: type, mode, and for files size and
  // mtime, for symlinks the target. Directory mtimes are ignored: they change whenever a child
  // does, which is already synchronised on its own.
  bool same_as(const Entry& other) const;
};

// Sorted by path, so parents come before their children.
using Manifest = std::map<std::string, Entry>;

// Removes `path` and everything below it ("" clears the manifest).
void erase_subtree(Manifest& manifest, const std::string& path);
// Moves `from` and everything below it to `to` (replacing what was at `to`), fixing the paths.
void move_subtree(Manifest& manifest, const std::string& from, const std::string& to);

// A path as the peers exchange it: relative, '/'-separated, no empty, "." or ".." component, no
// NUL, no leading or trailing '/'. "" (the root) is valid. Everything from the wire goes through
// this before it touches a file system.
bool valid_relative_path(std::string_view path);

// "a/b/c" → "a/b"; "c" → "".
std::string parent_path(std::string_view path);

// Names the synchroniser writes while a file is in flight; both sides skip them when scanning and
// watching so that half-written files are never synchronised.
inline constexpr std::string_view kTempPrefix = ".offload-sync-";
bool is_temp_name(std::string_view file_name);

}  // namespace offload::sync
