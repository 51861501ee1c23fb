#include "offload/cli/render.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <map>
#include <sstream>

#include "offload/common/duration.h"
#include "offload/common/text.h"

namespace offload::cli {
namespace {

using json = nlohmann::ordered_json;

// Byte offsets where UTF-8 code points start; widths below count code points, as docker's
// tabwriter and Ellipsis do for text without wide characters.
std::vector<std::size_t> rune_starts(std::string_view s) {
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) starts.push_back(i);
  return starts;
}

std::size_t rune_count(std::string_view s) { return rune_starts(s).size(); }

std::string since(std::int64_t unix_seconds, TimePoint now) {
  auto then = std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds));
  auto d = std::chrono::duration_cast<std::chrono::seconds>(now - then);
  if (d.count() < 0) d = std::chrono::seconds(0);
  return docker_human_duration(d) + " ago";
}

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

void add_line(std::string& out, const char* label, const std::string& value) {
  std::string head = std::string(label) + ":";
  head.resize(std::max<std::size_t>(head.size() + 1, 18), ' ');
  out += head + value + "\n";
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

// --- status ---

namespace {

bool session_running(const v1::SessionStatus& status) {
  return status.state() == v1::DAEMON_STATE_STARTED ||
         status.state() == v1::DAEMON_STATE_RECONNECTING;
}

// Time left until the idle deadline, when there is one to count down to.
std::optional<std::chrono::milliseconds> idle_left(const v1::SessionStatus& status,
                                                   TimePoint now) {
  const v1::Lifecycle& life = status.lifecycle();
  if (!status.has_lifecycle() || life.active() || life.idle_deadline_unix_ms() == 0)
    return std::nullopt;
  auto deadline = TimePoint(std::chrono::milliseconds(life.idle_deadline_unix_ms()));
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
}

}  // namespace

std::string state_key(v1::DaemonState state) {
  switch (state) {
    case v1::DAEMON_STATE_STOPPED: return "stopped";
    case v1::DAEMON_STATE_STARTING: return "starting";
    case v1::DAEMON_STATE_STARTED: return "started";
    case v1::DAEMON_STATE_RECONNECTING: return "reconnecting";
    case v1::DAEMON_STATE_STOPPING: return "stopping";
    case v1::DAEMON_STATE_ENDED: return "ended";
    default: return "unknown";
  }
}

std::string state_label(const v1::SessionStatus& status) {
  switch (status.state()) {
    case v1::DAEMON_STATE_STOPPED: return "Stopped";
    case v1::DAEMON_STATE_STARTING: return "Starting";
    case v1::DAEMON_STATE_STARTED:
      if (!status.has_lifecycle()) return "Started";
      return status.lifecycle().active() ? "Started (Active)" : "Started (Idle)";
    case v1::DAEMON_STATE_RECONNECTING:
      return status.reconnect_error().empty() ? "Reconnecting"
                                              : "Reconnecting (" + status.reconnect_error() + ")";
    case v1::DAEMON_STATE_STOPPING: return "Stopping";
    case v1::DAEMON_STATE_ENDED:
      return status.ended_reason().empty() ? "Ended" : "Ended (" + status.ended_reason() + ")";
    default: return "Unknown";
  }
}

std::string render_status_pretty(const v1::SessionStatus& status, TimePoint now) {
  std::string out;
  add_line(out, "Account", status.account());
  add_line(out, "State", state_label(status));
  if (status.state() == v1::DAEMON_STATE_STOPPED ||
      status.state() == v1::DAEMON_STATE_UNSPECIFIED) {
    out += "\nRun `docker offload start` to start a session.\n";
    return out;
  }
  if (status.started_unix_ms() != 0) {
    auto started = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(status.started_unix_ms()));
    auto ago = std::chrono::duration_cast<std::chrono::milliseconds>(now - started);
    add_line(out, "Session started",
             format_utc(status.started_unix_ms()) + " (" +
                 humanize_duration(std::max(ago, std::chrono::milliseconds(0))) + " ago)");
  }
  if (status.state() == v1::DAEMON_STATE_STARTED && status.has_lifecycle()) {
    auto left = idle_left(status, now);
    // An em dash while something runs: the countdown only starts once nothing does.
    add_line(out, "Time until idle",
             status.lifecycle().active() ? "\u2014" : left ? format_countdown(*left) : "never");
    if (status.lifecycle().idle_warning() && left)
      add_line(out, "Warning",
               "the session will end in " + format_countdown(*left) + " unless something runs");
  }
  const v1::SessionInfo& info = status.session();
  if (!status.runner_address().empty()) {
    std::string runner = status.runner_address();
    if (!info.runner_version().empty()) {
      runner += " (offload-runner " + info.runner_version();
      if (!info.runner_hostname().empty()) runner += " on " + info.runner_hostname();
      runner += ")";
    }
    add_line(out, "Runner", runner);
  }
  if (!info.engine_version().empty()) {
    std::vector<std::string> details;
    if (!info.engine_api_version().empty()) details.push_back("API " + info.engine_api_version());
    if (!info.engine_os().empty()) details.push_back(info.engine_os());
    std::string engine = "Docker " + info.engine_version();
    if (!details.empty()) engine += " (" + join(details, ", ") + ")";
    add_line(out, "Engine", engine);
  }
  add_line(out, "GPU", status.gpu() ? "Yes" : "No");
  if (!status.context().empty()) {
    std::string context = status.context();
    if (!status.docker_host().empty()) context += " (" + status.docker_host() + ")";
    add_line(out, "Context", context);
  }
  if (status.state() == v1::DAEMON_STATE_ENDED) {
    out += "\nRun `docker offload start` to start a new session, or `docker offload stop` to "
           "switch back to your previous docker context.\n";
    return out;
  }
  add_line(out, "Active streams", std::to_string(status.active_streams()));
  // Every published port, forwarded or not: a port that could not be forwarded says why.
  if (status.ports().empty()) {
    add_line(out, "Ports", "none");
  } else {
    bool first = true;
    for (const auto& p : status.ports()) {
      std::string target = (p.container_name().empty() ? short_id(p.container_id())
                                                        : p.container_name()) +
                           ":" + std::to_string(p.container_port()) + "/" + p.protocol();
      std::string line = p.local_address() + " -> " + target;
      if (!p.listening())
        line += "  NOT FORWARDED: " + (p.error().empty() ? std::string("unknown") : p.error());
      if (first) add_line(out, "Ports", line);
      else out += std::string(18, ' ') + line + "\n";
      first = false;
    }
  }
  // Synchronised bind mounts, with anything the user must know: conflicts and skipped files.
  if (status.mounts().empty()) {
    add_line(out, "Mounts", "none");
  } else {
    bool first = true;
    auto more = [&out](const std::string& line) { out += std::string(20, ' ') + line + "\n"; };
    for (const auto& m : status.mounts()) {
      std::string line = m.local_path() + (m.single_file() ? " (file)" : "") + "  " + m.state() +
                         ", sent " + std::to_string(m.files_sent()) + " files (" +
                         docker_human_size(static_cast<std::int64_t>(m.bytes_sent())) +
                         "), received " + std::to_string(m.files_received()) + " files (" +
                         docker_human_size(static_cast<std::int64_t>(m.bytes_received())) + ")";
      if (first) add_line(out, "Mounts", line);
      else out += std::string(18, ' ') + line + "\n";
      first = false;
      if (!m.error().empty()) more("error: " + m.error());
      for (const auto& c : m.conflicts()) more("CONFLICT " + c);
      for (const auto& k : m.skipped()) more("skipped " + k);
    }
  }
  return out;
}

static json mounts_json(const v1::SessionStatus& status) {
  json mounts = json::array();
  for (const auto& m : status.mounts()) {
    mounts.push_back(json{
        {"localPath", m.local_path()},
        {"singleFile", m.single_file()},
        {"state", m.state()},
        {"error", m.error()},
        {"filesSent", m.files_sent()},
        {"bytesSent", m.bytes_sent()},
        {"filesReceived", m.files_received()},
        {"bytesReceived", m.bytes_received()},
        {"entries", m.entries()},
        {"conflicts", std::vector<std::string>(m.conflicts().begin(), m.conflicts().end())},
        {"skipped", std::vector<std::string>(m.skipped().begin(), m.skipped().end())},
        {"lastChange", m.last_change_unix_ms() ? format_rfc3339(m.last_change_unix_ms()) : ""},
    });
  }
  return mounts;
}

static json ports_json(const v1::SessionStatus& status) {
  json ports = json::array();
  for (const auto& p : status.ports()) {
    ports.push_back(json{
        {"localAddress", p.local_address()},
        {"protocol", p.protocol()},
        {"container", p.container_name()},
        {"containerId", p.container_id()},
        {"containerPort", p.container_port()},
        {"hostPort", p.host_port()},
        {"listening", p.listening()},
        {"error", p.error()},
        {"openConnections", p.open_connections()},
    });
  }
  return ports;
}

json status_json(const v1::SessionStatus& status) {
  const v1::SessionInfo& info = status.session();
  return json{
      {"account", status.account()},
      {"state", state_key(status.state())},
      {"sessionStarted", format_rfc3339(status.started_unix_ms())},
      {"runner", status.runner_address()},
      {"runnerVersion", info.runner_version()},
      {"runnerHostname", info.runner_hostname()},
      {"engineVersion", info.engine_version()},
      {"engineApiVersion", info.engine_api_version()},
      {"engineOs", info.engine_os()},
      {"gpu", status.gpu()},
      {"context", status.context()},
      {"dockerHost", status.docker_host()},
      {"activeStreams", status.active_streams()},
      {"endedReason", status.ended_reason()},
      {"sessionId", info.session_id()},
      {"ports", ports_json(status)},
      {"mounts", mounts_json(status)},
      {"activity", session_running(status) && status.has_lifecycle()
                       ? (status.lifecycle().active() ? "active" : "idle")
                       : ""},
      {"idleDeadline", status.has_lifecycle() && !status.lifecycle().active()
                           ? format_rfc3339(status.lifecycle().idle_deadline_unix_ms())
                           : ""},
      {"idleWarning", status.lifecycle().idle_warning()},
      {"idleTimeout", session_running(status)
                          ? format_duration(std::chrono::milliseconds(status.idle_timeout_ms()))
                          : ""},
      {"reconnectError", status.reconnect_error()},
  };
}

std::string render_status_frame(const v1::SessionStatus& status, bool as_json, bool terminal,
                                bool first, TimePoint now) {
  if (as_json) return status_json(status).dump() + "\n";
  std::string prefix;
  if (terminal) prefix = "\x1b[H\x1b[2J";
  else if (!first) prefix = "\n";
  return prefix + render_status_pretty(status, now);
}

// --- ps ---

std::string render_containers_table(const v1::ListContainersResponse& list, TimePoint now) {
  std::vector<std::vector<std::string>> rows{
      {"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"}};
  for (const auto& c : list.containers()) {
    // Like docker ps: the first name that is not a link alias (those contain a '/').
    std::string name;
    for (const auto& n : c.names()) {
      if (n.find('/') == std::string::npos) {
        name = n;
        break;
      }
    }
    if (name.empty() && !c.names().empty()) name = join(c.names(), ",");
    rows.push_back({short_id(c.id()), c.image(), go_quote(ellipsis(c.command(), 20)),
                    since(c.created_unix(), now), c.status(), format_ports(c.ports()), name});
  }
  return render_table(rows);
}

std::string render_container_ids(const v1::ListContainersResponse& list) {
  std::string out;
  for (const auto& c : list.containers()) out += short_id(c.id()) + "\n";
  return out;
}

json containers_json(const v1::ListContainersResponse& list) {
  json out = json::array();
  for (const auto& c : list.containers()) {
    json ports = json::array();
    for (const auto& p : c.ports())
      ports.push_back({{"hostIp", p.host_ip()},
                       {"hostPort", p.host_port()},
                       {"containerPort", p.container_port()},
                       {"protocol", p.protocol()}});
    out.push_back({{"id", c.id()},
                   {"names", std::vector<std::string>(c.names().begin(), c.names().end())},
                   {"image", c.image()},
                   {"command", c.command()},
                   {"created", format_rfc3339(c.created_unix() * 1000)},
                   {"state", c.state()},
                   {"status", c.status()},
                   {"ports", ports}});
  }
  return out;
}

// --- images ---

std::string render_images_table(const v1::ListImagesResponse& list, TimePoint now) {
  std::vector<std::vector<std::string>> rows{{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"}};
  for (const auto& image : list.images()) {
    std::vector<std::pair<std::string, std::string>> refs;
    for (const auto& ref : image.repo_tags()) {
      // The tag follows the last ':' after the last '/', so "host:5000/app" has no tag.
      auto slash = ref.rfind('/');
      auto colon = ref.rfind(':');
      if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
        refs.emplace_back(ref.substr(0, colon), ref.substr(colon + 1));
      else
        refs.emplace_back(ref, "<none>");
    }
    if (refs.empty()) refs.emplace_back("<none>", "<none>");
    for (const auto& [repo, tag] : refs)
      rows.push_back({repo, tag, short_id(image.id()), since(image.created_unix(), now),
                      docker_human_size(image.size_bytes())});
  }
  return render_table(rows);
}

std::string render_image_ids(const v1::ListImagesResponse& list) {
  std::string out;
  for (const auto& image : list.images()) out += short_id(image.id()) + "\n";
  return out;
}

json images_json(const v1::ListImagesResponse& list) {
  json out = json::array();
  for (const auto& image : list.images())
    out.push_back(
        {{"id", image.id()},
         {"repoTags", std::vector<std::string>(image.repo_tags().begin(), image.repo_tags().end())},
         {"created", format_rfc3339(image.created_unix() * 1000)},
         {"size", image.size_bytes()}});
  return out;
}

// --- accounts ---

std::string render_accounts_table(const v1::ListAccountsResponse& list) {
  std::vector<std::vector<std::string>> rows{
      {"NAME", "TYPE", "DEFAULT", "ADDRESS", "DESCRIPTION"}};
  for (const auto& a : list.accounts())
    rows.push_back({a.name(), a.type(), a.is_default() ? "*" : "", a.address(), a.description()});
  return render_table(rows);
}

json accounts_json(const v1::ListAccountsResponse& list) {
  json out = json::array();
  for (const auto& a : list.accounts())
    out.push_back({{"name", a.name()},
                   {"type", a.type()},
                   {"default", a.is_default()},
                   {"address", a.address()},
                   {"description", a.description()}});
  return out;
}

// --- version ---

std::string render_version_pretty(const VersionInfo& info) {
  std::string out;
  auto line = [&](const char* label, const std::string& value) {
    std::string head = std::string(label) + ":";
    head.resize(17, ' ');
    out += head + value + "\n";
  };
  line("docker-offload", info.plugin);
  if (!info.daemon) {
    line("offloadd", "not running");
    return out;
  }
  line("offloadd", info.daemon->daemon_version());
  if (info.daemon->runner_version().empty()) {
    line("offload-runner", "no session");
    return out;
  }
  line("offload-runner", info.daemon->runner_version());
  if (!info.daemon->engine_version().empty()) {
    std::string engine = "Docker " + info.daemon->engine_version();
    if (!info.daemon->engine_api_version().empty())
      engine += " (API " + info.daemon->engine_api_version() + ")";
    line("Engine", engine);
  }
  return out;
}

json version_json(const VersionInfo& info) {
  json out{{"plugin", info.plugin}, {"daemonRunning", info.daemon.has_value()}};
  out["daemon"] = info.daemon ? info.daemon->daemon_version() : "";
  out["runner"] = info.daemon ? info.daemon->runner_version() : "";
  out["engine"] = info.daemon ? info.daemon->engine_version() : "";
  out["engineApi"] = info.daemon ? info.daemon->engine_api_version() : "";
  return out;
}

// --- diagnose ---

std::string render_diagnose_pretty(const v1::DiagnoseResponse& report) {
  std::string out;
  int failed = 0;
  for (const auto& c : report.checks()) {
    out += (c.ok() ? "\u2714 " : "\u2718 ") + c.name() + ": " + c.detail();
    if (!c.ok()) {
      ++failed;
      if (!c.fix().empty()) out += " \u2014 try: " + c.fix();
    }
    out += "\n";
  }
  const int total = report.checks_size();
  if (failed == 0)
    out += "\nAll " + std::to_string(total) + " checks passed.\n";
  else
    out += "\n" + std::to_string(failed) + " of " + std::to_string(total) + " checks failed.\n";
  return out;
}

json diagnose_json(const v1::DiagnoseResponse& report) {
  json out = json::array();
  for (const auto& c : report.checks())
    out.push_back(
        {{"name", c.name()}, {"ok", c.ok()}, {"detail", c.detail()}, {"fix", c.fix()}});
  return out;
}

// --- help ---

std::string render_help(const CLI::App& app, const std::string& command_path) {
  std::vector<const CLI::App*> commands = app.get_subcommands({});
  std::vector<const CLI::Option*> options;
  for (const CLI::Option* opt : app.get_options()) {
    if (opt == app.get_help_ptr() || !opt->nonpositional()) continue;
    options.push_back(opt);
  }

  std::ostringstream out;
  out << "Usage:  " << command_path;
  if (!commands.empty()) out << " COMMAND";
  else if (!options.empty()) out << " [OPTIONS]";
  out << "\n\n" << app.get_description() << "\n";

  if (!options.empty()) {
    // pflag's layout: "  -f, --format string" or "      --timeout duration", descriptions
    // in one column three spaces after the longest.
    auto long_name = [](const CLI::Option* o) {
      return o->get_lnames().empty() ? std::string() : o->get_lnames().front();
    };
    std::sort(options.begin(), options.end(),
              [&](auto* a, auto* b) { return long_name(a) < long_name(b); });
    std::vector<std::pair<std::string, std::string>> lines;
    std::size_t width = 0;
    for (const CLI::Option* o : options) {
      std::string left = o->get_snames().empty() ? "      " : "  -" + o->get_snames().front() + ", ";
      left += "--" + long_name(o);
      if (o->get_items_expected_max() > 0) left += " " + o->get_type_name();
      width = std::max(width, left.size());
      lines.emplace_back(left, o->get_description());
    }
    out << "\nOptions:\n";
    for (auto& [left, desc] : lines)
      out << left << std::string(width - left.size() + 3, ' ') << desc << "\n";
  }

  if (!commands.empty()) {
    std::sort(commands.begin(), commands.end(),
              [](auto* a, auto* b) { return a->get_name() < b->get_name(); });
    out << "\nCommands:\n";
    for (const CLI::App* c : commands) {
      std::string name = c->get_name();
      name.resize(std::max<std::size_t>(name.size() + 1, 12), ' ');
      out << "  " << name << c->get_description() << "\n";
    }
    out << "\nRun '" << command_path << " COMMAND --help' for more information on a command.\n";
  }
  return out.str();
}

}  // namespace offload::cli
