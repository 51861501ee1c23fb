#include "offload/sync/entry.h"

#include <vector>

namespace offload::sync {

const char* to_string(EntryType type) {
  switch (type) {
    case EntryType::file: return "file";
    case EntryType::directory: return "directory";
    case EntryType::symlink: return "symlink";
  }
  return "unknown";
}

bool Entry::same_as(const Entry& other) const {
  if (type != other.type) return false;
  switch (type) {
    case EntryType::file:
      return mode == other.mode && size == other.size && mtime_ns == other.mtime_ns;
    case EntryType::directory:
      return mode == other.mode;
    case EntryType::symlink:
      // A symlink's own mode cannot be set on Linux (always 0777), so only the target counts.
      return link_target == other.link_target;
  }
  return false;
}

bool valid_relative_path(std::string_view path) {
  if (path.empty()) return true;
  std::size_t start = 0;
  for (;;) {
    std::size_t end = path.find('/', start);
    std::string_view part =
        path.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (part.find('\0') != std::string_view::npos) return false;
    if (end == std::string_view::npos) return true;
    start = end + 1;
  }
}

std::string parent_path(std::string_view path) {
  auto slash = path.rfind('/');
  if (slash == std::string_view::npos) return {};
  return std::string(path.substr(0, slash));
}

bool is_temp_name(std::string_view file_name) { return file_name.starts_with(kTempPrefix); }

void erase_subtree(Manifest& m, const std::string& path) {
  if (path.empty()) {
    m.clear();
    return;
  }
  m.erase(path);
  std::string prefix = path + "/";
  for (auto it = m.lower_bound(prefix); it != m.end() && it->first.starts_with(prefix);)
    it = m.erase(it);
}

void move_subtree(Manifest& m, const std::string& from, const std::string& to) {
  std::vector<Entry> moved;
  if (auto it = m.find(from); it != m.end()) moved.push_back(it->second);
  std::string prefix = from + "/";
  for (auto it = m.lower_bound(prefix); it != m.end() && it->first.starts_with(prefix); ++it)
    moved.push_back(it->second);
  erase_subtree(m, to);
  erase_subtree(m, from);
  for (auto& e : moved) {
    e.path = to + e.path.substr(from.size());
    m[e.path] = e;
  }
}

}  // namespace offload::sync
