// Live changes of a tree via inotify, as a set of dirty paths.
//
// Watches every directory of the tree (new directories are added as they appear). Events are
// not interpreted beyond "this path may have changed": the caller stats each dirty path and
// compares with what it knows, which also makes echoes of our own writes harmless. Moves within
// the tree are paired by cookie and reported as renames, so a moved file need not be sent again.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "offload/sync/ignore.h"

namespace offload::sync {

struct WatchBatch {
  std::set<std::string> dirty;                             // stat these
  std::vector<std::pair<std::string, std::string>> moves;  // from → to, both inside the tree
  // The kernel dropped events (queue overflow) or a watch could not be added: the caller must
  // rescan the whole tree.
  bool rescan = false;
};

class Watcher {
 public:
  // Starts watching `root` (a directory) and everything below it that the rules do not exclude.
  // `only_name`: watch just this one entry of `root` (single-file binds watch the file's
  // directory, because editors replace files by renaming).
  Watcher(std::filesystem::path root, IgnoreRules rules, std::string only_name = {});
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Nonzero if the watch could not be set up at all.
  std::error_code error() const { return error_; }
  // Readable when events are pending (for poll()).
  int fd() const { return fd_; }
  // Reads everything pending without blocking and returns what changed. Paths of temp files and
  // excluded paths are left out. Newly created directories are watched and their current
  // contents reported as dirty (files may have been created before the watch existed).
  WatchBatch drain();

 private:
  void add_watch_recursive(const std::string& rel, WatchBatch& batch);

  std::filesystem::path root_;
  IgnoreRules rules_;
  std::string only_name_;
  int fd_ = -1;
  std::error_code error_;
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace offload::sync
