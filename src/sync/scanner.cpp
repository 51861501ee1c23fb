#include "offload/sync/scanner.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <system_error>

#include "fs_at.h"

namespace offload::sync {
namespace {
using detail::UniqueFd;

std::string unreadable(const std::error_code& ec) { return "unreadable: " + ec.message(); }

class Walker {
 public:
  Walker(int root_fd, const IgnoreRules& rules, ScanResult& out)
      : root_fd_(root_fd), rules_(rules), out_(out) {}

  // Directories are listed and closed before their subdirectories are entered, so a deep tree
  // holds one descriptor at a time; each subdirectory is reopened from the root beneath it
  // (a directory swapped for a symlink meanwhile is refused, not followed).
  void walk(const std::string& dir_rel) {
    UniqueFd dir;
    std::vector<std::string> names;
    std::error_code ec = detail::open_beneath(root_fd_, dir_rel, O_PATH | O_DIRECTORY, dir);
    if (!ec) ec = detail::list_directory(dir.get(), names);
    if (ec) {
      if (dir_rel.empty()) throw std::system_error(ec, "cannot read the synchronised directory");
      // Its entry is withdrawn too: an empty directory would tell the peer its contents were
      // deleted.
      out_.entries.erase(dir_rel);
      out_.skipped.push_back({dir_rel, unreadable(ec)});
      return;
    }
    std::vector<std::string> subdirs;
    for (const auto& name : names) {
      if (is_temp_name(name)) continue;
      std::string rel = detail::join_path(dir_rel, name);
      struct stat st {};
      if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // deleted while we looked
        out_.skipped.push_back({rel, unreadable(detail::last_error())});
        continue;
      }
      bool is_dir = S_ISDIR(st.st_mode);
      if (rules_.excluded(rel) && !(is_dir && rules_.may_reinclude_below(rel))) continue;
      Entry entry;
      entry.path = rel;
      std::string reason;
      std::error_code lec;
      if (!detail::entry_from_stat(dir.get(), name, st, entry, reason, lec)) {
        if (lec == std::errc::no_such_file_or_directory) continue;
        out_.skipped.push_back({rel, lec ? unreadable(lec) : reason});
        continue;
      }
      out_.entries.emplace(rel, std::move(entry));
      if (is_dir) subdirs.push_back(std::move(rel));
    }
    dir.reset();
    names.clear();
    names.shrink_to_fit();
    for (const auto& sub : subdirs) walk(sub);
  }

 private:
  int root_fd_;
  const IgnoreRules& rules_;
  ScanResult& out_;
};

UniqueFd open_root(const std::filesystem::path& root) {
  // The root itself is local configuration (the bind source), so it may be reached through a
  // symlink; nothing below it is.
  UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid())
    throw std::system_error(detail::last_error(), "cannot open " + root.string());
  return fd;
}

}  // namespace

ScanResult scan_tree(const std::filesystem::path& root, const IgnoreRules& rules) {
  ScanResult result;
  UniqueFd root_fd = open_root(root);
  struct stat st {};
  if (::fstat(root_fd.get(), &st) != 0)
    throw std::system_error(detail::last_error(), "cannot stat " + root.string());
  Entry root_entry;
  std::string reason;
  std::error_code ec;
  detail::entry_from_stat(root_fd.get(), "", st, root_entry, reason, ec);
  result.entries.emplace("", std::move(root_entry));
  Walker(root_fd.get(), rules, result).walk("");
  return result;
}

std::optional<Entry> stat_entry(const std::filesystem::path& root, const std::string& path,
                                const IgnoreRules& rules, Skipped* skipped) {
  auto skip = [&](std::string reason) -> std::optional<Entry> {
    if (skipped) *skipped = {path, std::move(reason)};
    return std::nullopt;
  };
  if (!valid_relative_path(path)) return skip("invalid path");
  UniqueFd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return skip(unreadable(detail::last_error()));
  struct stat st {};
  Entry entry;
  entry.path = path;
  std::string reason;
  std::error_code ec;
  if (path.empty()) {
    if (::fstat(root_fd.get(), &st) != 0) return skip(unreadable(detail::last_error()));
    detail::entry_from_stat(root_fd.get(), "", st, entry, reason, ec);
    return entry;
  }
  // Every component of the path has to pass the rules, as it would in a scan: a temp name or
  // an excluded directory higher up hides everything below it.
  for (std::string_view rest = path;;) {
    if (is_temp_name(detail::base_name(rest))) return std::nullopt;
    auto slash = rest.rfind('/');
    if (slash == std::string_view::npos) break;
    rest = rest.substr(0, slash);
  }
  UniqueFd dir;
  ec = detail::open_beneath(root_fd.get(), parent_path(path), O_PATH | O_DIRECTORY, dir);
  if (ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory)
    return std::nullopt;
  if (ec) return skip(unreadable(ec));
  std::string name(detail::base_name(path));
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return std::nullopt;
    return skip(unreadable(detail::last_error()));
  }
  if (rules.excluded(path) && !(S_ISDIR(st.st_mode) && rules.may_reinclude_below(path)))
    return skip("excluded");
  if (!detail::entry_from_stat(dir.get(), name, st, entry, reason, ec)) {
    if (ec == std::errc::no_such_file_or_directory) return std::nullopt;
    return skip(ec ? unreadable(ec) : reason);
  }
  return entry;
}

}  // namespace offload::sync
