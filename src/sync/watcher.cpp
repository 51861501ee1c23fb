#include "offload/sync/watcher.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <unordered_map>

#include "fs_at.h"

namespace offload::sync {
namespace {
using detail::UniqueFd;

constexpr std::uint32_t kTreeMask = IN_CLOSE_WRITE | IN_ATTRIB | IN_CREATE | IN_DELETE |
                                    IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |
                                    IN_MODIFY | IN_EXCL_UNLINK;

bool is_below(std::string_view path, std::string_view dir) {
  return path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/';
}

// `path` with its prefix `from` (itself or a directory above it) replaced by `to`.
std::string rebase(const std::string& path, const std::string& from, const std::string& to) {
  return to + path.substr(from.size());
}
}  // namespace

struct Watcher::State {
  std::unordered_map<int, std::string> path_of;  // wd → directory, relative to the root
  std::map<std::string, int> wd_of;              // directory → wd (ordered: subtrees are ranges)
  UniqueFd root_dir;                              // for resolving directories beneath the root

  void forget(int wd) {
    auto it = path_of.find(wd);
    if (it == path_of.end()) return;
    auto back = wd_of.find(it->second);
    if (back != wd_of.end() && back->second == wd) wd_of.erase(back);
    path_of.erase(it);
  }

  // Directories from `from` downwards are now at `to`.
  void move_subtree(const std::string& from, const std::string& to) {
    std::vector<std::pair<std::string, int>> moved;
    for (auto it = wd_of.lower_bound(from); it != wd_of.end();) {
      if (it->first != from && !is_below(it->first, from)) {
        if (it->first > from + "/") break;
        ++it;
        continue;
      }
      moved.emplace_back(rebase(it->first, from, to), it->second);
      it = wd_of.erase(it);
    }
    for (auto& [path, wd] : moved) {
      path_of[wd] = path;
      wd_of[path] = wd;
    }
  }

  // Stops watching `dir` and everything below it (it left the tree).
  void drop_subtree(int fd, const std::string& dir) {
    for (auto it = wd_of.lower_bound(dir); it != wd_of.end();) {
      if (it->first != dir && !is_below(it->first, dir)) {
        if (it->first > dir + "/") break;
        ++it;
        continue;
      }
      ::inotify_rm_watch(fd, it->second);
      path_of.erase(it->second);
      it = wd_of.erase(it);
    }
  }
};

Watcher::Watcher(std::filesystem::path root, IgnoreRules rules, std::string only_name)
    : root_(std::move(root)),
      rules_(std::move(rules)),
      only_name_(std::move(only_name)),
      state_(std::make_unique<State>()) {
  fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) {
    error_ = detail::last_error();
    return;
  }
  state_->root_dir.reset(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!state_->root_dir.valid()) {
    error_ = detail::last_error();
    return;
  }
  if (!only_name_.empty()) {
    int wd = ::inotify_add_watch(fd_, root_.c_str(), kTreeMask | IN_ONLYDIR);
    if (wd < 0) {
      error_ = detail::last_error();
      return;
    }
    state_->path_of[wd] = "";
    state_->wd_of[""] = wd;
    return;
  }
  WatchBatch initial;
  add_watch_recursive("", initial);
  if (state_->wd_of.count("") == 0 && !error_)
    error_ = std::make_error_code(std::errc::no_such_file_or_directory);
  if (initial.rescan && !error_)
    // A directory of the initial tree could not be watched (typically the inotify watch limit):
    // its changes would be missed silently.
    error_ = std::make_error_code(std::errc::no_space_on_device);
}

Watcher::~Watcher() {
  if (fd_ >= 0) ::close(fd_);
}

void Watcher::add_watch_recursive(const std::string& rel, WatchBatch& batch) {
  // Resolved beneath the root without symlinks, and watched through the resulting descriptor,
  // so a directory swapped for a symlink can never make us watch (and report) another place.
  UniqueFd dir;
  std::error_code ec = detail::open_beneath(state_->root_dir.get(), rel, O_PATH | O_DIRECTORY, dir);
  int wd = -1;
  if (!ec) {
    std::string proc = "/proc/self/fd/" + std::to_string(dir.get());
    wd = ::inotify_add_watch(fd_, proc.c_str(), kTreeMask | IN_ONLYDIR);
    if (wd < 0 && errno == ENOENT && rel.empty())
      wd = ::inotify_add_watch(fd_, root_.c_str(), kTreeMask | IN_ONLYDIR);  // no /proc
    if (wd < 0) ec = detail::last_error();
  }
  if (ec) {
    // Gone again already (its deletion is reported by its parent); anything else means events
    // will be missed.
    if (ec != std::errc::no_such_file_or_directory && ec != std::errc::not_a_directory &&
        ec != std::errc::too_many_symbolic_link_levels)
      batch.rescan = true;
    if (rel.empty()) error_ = ec;
    return;
  }
  // The same directory watched again (inotify hands out one wd per inode) under a new name.
  auto known = state_->path_of.find(wd);
  if (known != state_->path_of.end() && known->second != rel) state_->forget(wd);
  state_->path_of[wd] = rel;
  state_->wd_of[rel] = wd;

  std::vector<std::string> names;
  if (detail::list_directory(dir.get(), names)) {
    batch.rescan = true;
    return;
  }
  for (const auto& name : names) {
    if (is_temp_name(name)) continue;
    std::string child = detail::join_path(rel, name);
    struct stat st {};
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    bool is_dir = S_ISDIR(st.st_mode);
    if (rules_.excluded(child) && !(is_dir && rules_.may_reinclude_below(child))) continue;
    batch.dirty.insert(child);
    if (is_dir) add_watch_recursive(child, batch);
  }
}

WatchBatch Watcher::drain() {
  WatchBatch batch;
  if (fd_ < 0) return batch;
  struct PendingMove {
    std::string path;
    bool is_dir;
  };
  std::unordered_map<std::uint32_t, PendingMove> pending;  // MOVED_FROM by cookie

  alignas(struct inotify_event) char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) batch.rescan = true;
      break;
    }
    if (n == 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<struct inotify_event*>(p);
      p += sizeof(struct inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        batch.rescan = true;
        continue;
      }
      auto where = state_->path_of.find(ev->wd);
      if (where == state_->path_of.end()) continue;  // a watch we already dropped
      const std::string dir = where->second;
      if (ev->mask & IN_IGNORED) {
        state_->forget(ev->wd);
        continue;
      }
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        // Reported through the parent's IN_DELETE / IN_MOVED_*; only the root has no parent.
        if (dir.empty()) batch.rescan = true;
        continue;
      }
      if (ev->len == 0) continue;
      std::string name(ev->name);
      std::string path = detail::join_path(dir, name);
      bool is_dir = ev->mask & IN_ISDIR;

      if (!only_name_.empty()) {
        if (name == only_name_) batch.dirty.insert(name);
        continue;
      }
      if (is_temp_name(name)) continue;
      if (rules_.excluded(path) && !(is_dir && rules_.may_reinclude_below(path))) continue;

      if (ev->mask & IN_MOVED_FROM) {
        pending[ev->cookie] = {path, is_dir};
        continue;
      }
      if (ev->mask & IN_MOVED_TO) {
        auto from = pending.find(ev->cookie);
        if (from == pending.end()) {
          // Moved in from outside the tree (or from an excluded name): all new to us.
          batch.dirty.insert(path);
          if (is_dir) add_watch_recursive(path, batch);
          continue;
        }
        const std::string old_path = from->second.path;
        pending.erase(from);
        batch.moves.emplace_back(old_path, path);
        if (is_dir) state_->move_subtree(old_path, path);
        // Dirty paths seen earlier in this batch name the state after all moves.
        std::vector<std::string> renamed;
        for (auto it = batch.dirty.lower_bound(old_path); it != batch.dirty.end();) {
          if (*it == old_path || is_below(*it, old_path)) {
            renamed.push_back(rebase(*it, old_path, path));
            it = batch.dirty.erase(it);
          } else if (*it > old_path + "/") {
            break;
          } else {
            ++it;
          }
        }
        batch.dirty.insert(renamed.begin(), renamed.end());
        continue;
      }
      batch.dirty.insert(path);
      if ((ev->mask & IN_CREATE) && is_dir) add_watch_recursive(path, batch);
    }
  }
  // A MOVED_FROM without its MOVED_TO left the tree: the caller finds it gone.
  for (auto& [cookie, move] : pending) {
    batch.dirty.insert(move.path);
    if (move.is_dir) state_->drop_subtree(fd_, move.path);
  }
  return batch;
}

}  // namespace offload::sync
