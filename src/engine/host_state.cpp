#include "offload/engine/host_state.h"

#include "offload/common/token.h"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace offload::engine {
namespace fs = std::filesystem;

namespace {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    parts.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return parts;
}

std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  std::istringstream in{std::string(line)};
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string decode_mountinfo_path(std::string_view field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() &&
        std::all_of(field.begin() + i + 1, field.begin() + i + 4,
                    [](char c) { return c >= '0' && c <= '7'; })) {
      out.push_back(static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 +
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

}  // namespace

bool path_within(const fs::path& path, const fs::path& dir) {
  auto p = path.lexically_normal();
  auto d = dir.lexically_normal();
  if (d.empty()) return false;
  auto pi = p.begin();
  for (auto di = d.begin(); di != d.end(); ++di, ++pi) {
    if (di->empty() && std::next(di) == d.end()) return true;  // trailing slash of dir
    if (pi == p.end() || *pi != *di) return false;
  }
  return true;
}

std::vector<fs::path> mount_points_within(std::string_view mountinfo,
                                          const std::vector<fs::path>& dirs) {
  std::vector<fs::path> found;
  for (auto line : split(mountinfo, '\n')) {
    auto fields = split(line, ' ');
    if (fields.size() < 5) continue;
    fs::path mount_point = decode_mountinfo_path(fields[4]);
    for (const auto& dir : dirs) {
      if (path_within(mount_point, dir)) {
        found.push_back(mount_point);
        break;
      }
    }
  }
  // Deepest first; a path mounted twice (stacked) is listed twice and unmounted twice.
  std::stable_sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
    return std::distance(a.begin(), a.end()) > std::distance(b.begin(), b.end());
  });
  return found;
}

bool cgroup_under(std::string_view proc_cgroup, std::string_view parent) {
  for (auto line : split(proc_cgroup, '\n')) {
    // "<hierarchy id>:<controllers>:<path>"; the path itself may not contain ':' in practice.
    auto first = line.find(':');
    if (first == std::string_view::npos) continue;
    auto second = line.find(':', first + 1);
    if (second == std::string_view::npos) continue;
    auto path = line.substr(second + 1);
    if (path.size() < parent.size() + 1 || path[0] != '/') continue;
    if (path.substr(1, parent.size()) != parent) continue;
    if (path.size() == parent.size() + 1 || path[parent.size() + 1] == '/') return true;
  }
  return false;
}

bool cmdline_mentions(std::string_view cmdline, const fs::path& dir) {
  const std::string needle = dir.lexically_normal().string();
  if (needle.empty()) return false;
  for (auto arg : split(cmdline, '\0')) {
    for (std::size_t pos = arg.find(needle); pos != std::string_view::npos;
         pos = arg.find(needle, pos + 1)) {
      std::size_t end = pos + needle.size();
      // The match must end at a path boundary: "/run/x/ab" must not match "/run/x/abc".
      if (end == arg.size() || arg[end] == '/' || needle.back() == '/') return true;
      char c = arg[end];
      bool path_char = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
                       c == '.';
      if (!path_char) return true;
    }
  }
  return false;
}

std::vector<std::vector<std::string>> iptables_deletions(std::string_view save_output,
                                                         std::string_view comment) {
  std::vector<std::vector<std::string>> deletions;
  for (auto line : split(save_output, '\n')) {
    if (line.rfind("-A ", 0) != 0) continue;
    auto w = words(line);
    bool ours = false;
    for (std::size_t i = 0; i + 1 < w.size(); ++i) {
      if (w[i] != "--comment") continue;
      // iptables-nft quotes every comment; iptables-legacy only those with spaces (never ours).
      // Unquoted, since iptables gets the words as arguments, not through a shell.
      std::string& value = w[i + 1];
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
        value = value.substr(1, value.size() - 2);
      if (value == comment) ours = true;
    }
    if (!ours) continue;
    w[0] = "-D";
    deletions.push_back(std::move(w));
  }
  return deletions;
}

std::optional<fs::path> shim_socket(std::string_view cmdline) {
  auto args = split(cmdline, '\0');
  if (args.empty() || fs::path(args[0]).filename().string().rfind("containerd-shim", 0) != 0)
    return std::nullopt;
  std::string_view ns, id, address;
  for (std::size_t i = 1; i + 1 < args.size(); ++i) {
    if (args[i] == "-namespace") ns = args[i + 1];
    if (args[i] == "-id") id = args[i + 1];
    if (args[i] == "-address") address = args[i + 1];
  }
  if (ns.empty() || id.empty() || address.empty()) return std::nullopt;
  // containerd's shim.SocketAddress: filepath.Join(address, ns, id), hashed.
  const std::string key = (fs::path(address) / ns / id).lexically_normal().string();
  return fs::path("/run/containerd/s") / sha256_hex(key);
}

std::string last_lines(std::string_view text, std::size_t n) {
  auto lines = split(text, '\n');
  std::vector<std::string_view> kept;
  for (auto l : lines)
    if (!l.empty()) kept.push_back(l);
  std::size_t from = kept.size() > n ? kept.size() - n : 0;
  std::string out;
  for (std::size_t i = from; i < kept.size(); ++i) {
    if (!out.empty()) out += " | ";
    out += kept[i];
  }
  return out;
}

}  // namespace offload::engine
