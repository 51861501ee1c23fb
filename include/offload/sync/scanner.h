// Walking a tree into a Manifest. Contents are never read here: only lstat().
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "offload/sync/entry.h"
#include "offload/sync/ignore.h"

namespace offload::sync {

struct Skipped {
  std::string path;
  std::string reason;  // "socket", "device", "fifo", "unreadable: Permission denied", ...
};

struct ScanResult {
  Manifest entries;            // includes "" (the root directory) for directory trees
  std::vector<Skipped> skipped;
};

// Scans the directory `root` recursively. Symlinks are recorded, never followed. Excluded paths
// (rules), temp files (is_temp_name) and special files (sockets, devices, fifos; listed in
// `skipped`) are left out. Throws std::system_error if `root` itself cannot be read.
ScanResult scan_tree(const std::filesystem::path& root, const IgnoreRules& rules);

// One path's entry (lstat), or nullopt if it does not exist. Special files and excluded paths are
// reported through `skipped` (and return nullopt) when it is given.
std::optional<Entry> stat_entry(const std::filesystem::path& root, const std::string& path,
                                const IgnoreRules& rules, Skipped* skipped = nullptr);

}  // namespace offload::sync
