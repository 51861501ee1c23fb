// The docker-style formatting primitives declared in offload/cli/docker_format.h: docker's own
// helpers reproduced byte for byte, plus timestamps and countdowns. Apart from the verbs'
// renderers because none of this knows about any one verb.
#include "offload/cli/docker_format.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>

#include "offload/common/text.h"

namespace offload::cli {
namespace {

// Byte offsets where UTF-8 code points start; widths below count code points, as docker's
// tabwriter and Ellipsis do for text without wide characters.
std::vector<std::size_t> rune_starts(std::string_view s) {
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) starts.push_back(i);
  return starts;
}

std::size_t rune_count(std::string_view s) { return rune_starts(s).size(); }

std::string format_time(std::int64_t unix_ms, const char* pattern) {
  if (unix_ms == 0) return "";
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, pattern, &tm);
  return buf;
}

// Go's net.JoinHostPort: IPv6 literals get brackets.
std::string join_host_port(const std::string& host, const std::string& port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + port;
  return host + ":" + port;
}

}  // namespace

std::string docker_human_duration(std::chrono::seconds d) {
  const std::int64_t seconds = d.count();
  auto n = [](std::int64_t v, const char* unit) { return std::to_string(v) + " " + unit; };
  if (seconds < 1) return "Less than a second";
  if (seconds == 1) return "1 second";
  if (seconds < 60) return n(seconds, "seconds");
  const std::int64_t minutes = seconds / 60;
  if (minutes == 1) return "About a minute";
  if (minutes < 60) return n(minutes, "minutes");
  const std::int64_t hours = (seconds + 1800) / 3600;  // Go rounds to the nearest hour here
  if (hours == 1) return "About an hour";
  if (hours < 48) return n(hours, "hours");
  if (hours < 24 * 7 * 2) return n(hours / 24, "days");
  if (hours < 24 * 30 * 2) return n(hours / 24 / 7, "weeks");
  if (hours < 24 * 365 * 2) return n(hours / 24 / 30, "months");
  return n(seconds / 3600 / 24 / 365, "years");
}

std::string docker_human_size(std::int64_t bytes) {
  static const char* const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
  double size = static_cast<double>(bytes);
  std::size_t i = 0;
  while (size >= 1000.0 && i + 1 < std::size(units)) {
    size /= 1000.0;
    ++i;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g%s", size, units[i]);
  return buf;
}

std::string ellipsis(std::string_view text, std::size_t max) {
  if (max == 0) return "";
  auto starts = rune_starts(text);
  if (starts.size() <= max) return std::string(text);
  if (max == 1) return std::string(text.substr(0, starts.size() > 1 ? starts[1] : text.size()));
  return std::string(text.substr(0, starts[max - 1])) + "\u2026";
}

std::string go_quote(std::string_view text) {
  std::string out = "\"";
  static const char hex[] = "0123456789abcdef";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\a': out += "\\a"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\v': out += "\\v"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\x";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string short_id(std::string_view id) {
  if (auto colon = id.find(':'); colon != std::string_view::npos) id.remove_prefix(colon + 1);
  return std::string(id.substr(0, 12));
}

// docker/cli's DisplayablePorts: ports published on their own number (or only exposed) are
// grouped into ranges per address and protocol; other mappings follow, one each.
std::string format_ports(const google::protobuf::RepeatedPtrField<v1::Port>& input) {
  std::vector<const v1::Port*> ports;
  for (const auto& p : input) ports.push_back(&p);
  std::stable_sort(ports.begin(), ports.end(), [](const v1::Port* a, const v1::Port* b) {
    if (a->container_port() != b->container_port()) return a->container_port() < b->container_port();
    if (a->host_ip() != b->host_ip()) return a->host_ip() < b->host_ip();
    if (a->host_port() != b->host_port()) return a->host_port() < b->host_port();
    return a->protocol() < b->protocol();
  });

  struct Group {
    std::uint32_t first, last;
  };
  std::map<std::string, Group> groups;
  std::vector<std::string> group_order, result, mappings;
  auto form = [](const std::string& key, const Group& g) {
    auto slash = key.rfind('/');
    std::string ip = slash == std::string::npos ? "" : key.substr(0, slash);
    std::string proto = slash == std::string::npos ? key : key.substr(slash + 1);
    std::string range = std::to_string(g.first);
    if (g.first != g.last) range += "-" + std::to_string(g.last);
    if (!ip.empty()) range = join_host_port(ip, range) + "->" + range;
    return range + "/" + proto;
  };
  for (const v1::Port* p : ports) {
    std::uint32_t current = p->container_port();
    std::string key = p->protocol();
    if (!p->host_ip().empty() || p->host_port() != 0) {
      if (p->host_port() != current) {
        mappings.push_back(join_host_port(p->host_ip().empty() ? "0.0.0.0" : p->host_ip(),
                                          std::to_string(p->host_port())) +
                           "->" + std::to_string(current) + "/" + p->protocol());
        continue;
      }
      key = (p->host_ip().empty() ? "0.0.0.0" : p->host_ip()) + "/" + p->protocol();
    }
    auto it = groups.find(key);
    if (it == groups.end()) {
      groups.emplace(key, Group{current, current});
      group_order.push_back(key);
      continue;
    }
    if (current == it->second.last + 1) {
      it->second.last = current;
      continue;
    }
    result.push_back(form(key, it->second));
    it->second = Group{current, current};
  }
  for (const auto& key : group_order) result.push_back(form(key, groups.at(key)));
  result.insert(result.end(), mappings.begin(), mappings.end());
  return join(result, ", ");
}

std::string render_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i)
      widths[i] = std::max(widths[i], rune_count(row[i]));
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line.append(std::max<std::size_t>(widths[i] + 3, 10) - rune_count(row[i]), ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string format_utc(std::int64_t unix_ms) { return format_time(unix_ms, "%Y-%m-%d %H:%M:%S UTC"); }

std::string format_rfc3339(std::int64_t unix_ms) { return format_time(unix_ms, "%Y-%m-%dT%H:%M:%SZ"); }

std::string format_countdown(std::chrono::milliseconds left) {
  std::int64_t s = (std::max<std::int64_t>(left.count(), 0) + 999) / 1000;
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m " + std::to_string(s % 60) + "s";
  return std::to_string(s / 3600) + "h " + std::to_string(s % 3600 / 60) + "m";
}

}  // namespace offload::cli
