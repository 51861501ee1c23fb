// `docker offload status`: the session as the `docker info`-like block, as the stable JSON object
// and as `status --watch` frames. Apart from the other verbs' renderers (render.cpp): it alone
// reads a session (state, lifecycle, runner, ports, mounts), and it is as long as all of them.
#include "offload/cli/render.h"

#include <algorithm>
#include <map>

#include "offload/common/duration.h"
#include "offload/common/text.h"

namespace offload::cli {
namespace {

using json = nlohmann::ordered_json;

void add_line(std::string& out, const char* label, const std::string& value) {
  std::string head = std::string(label) + ":";
  head.resize(std::max<std::size_t>(head.size() + 1, 18), ' ');
  out += head + value + "\n";
}

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

// When the runner ends the session whatever happens (its maximum duration): the runner's own
// deadline when the session reported one, else creation plus the maximum. nullopt when it is
// not known; 0 when the session has no maximum duration.
std::optional<std::int64_t> latest_end_unix_ms(const v1::SessionStatus& status) {
  if (!session_running(status)) return std::nullopt;
  if (status.lifecycle().max_deadline_unix_ms() > 0) return status.lifecycle().max_deadline_unix_ms();
  const v1::SessionInfo& info = status.session();
  if (info.created_unix_ms() <= 0) return std::nullopt;
  if (info.max_duration_ms() <= 0) return 0;
  return info.created_unix_ms() + info.max_duration_ms();
}

std::string latest_end_line(std::int64_t end_ms, const v1::SessionStatus& status, TimePoint now) {
  if (end_ms == 0) return "never (no maximum duration)";
  auto left = TimePoint(std::chrono::milliseconds(end_ms)) - now;
  std::string line = format_utc(end_ms) + " (in " +
                     format_countdown(std::chrono::duration_cast<std::chrono::milliseconds>(left));
  if (status.session().max_duration_ms() > 0)
    line += ", maximum duration " +
            format_duration(std::chrono::milliseconds(status.session().max_duration_ms()));
  return line + ")";
}

// "Yes (NVIDIA A100-SXM4-40GB)", "Yes (2 x NVIDIA A100-SXM4-40GB, NVIDIA T4)", "No".
std::string gpu_line(const v1::SessionStatus& status) {
  if (!status.gpu()) return "No";
  std::vector<std::string> order;
  std::map<std::string, int> count;
  for (const auto& m : status.session().gpu_models())
    if (count[m]++ == 0) order.push_back(m);
  std::vector<std::string> parts;
  for (const auto& m : order)
    parts.push_back(count[m] > 1 ? std::to_string(count[m]) + " x " + m : m);
  return parts.empty() ? "Yes" : "Yes (" + join(parts, ", ") + ")";
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
    case v1::DAEMON_STATE_STARTING:
      return status.start_phase().empty() ? "Starting" : "Starting (" + status.start_phase() + ")";
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
  // The idle timeout can end it sooner; nothing keeps it longer.
  if (auto end = latest_end_unix_ms(status)) add_line(out, "Ends by", latest_end_line(*end, status, now));
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
  add_line(out, "GPU", gpu_line(status));
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
  if (status.has_image_cache()) {
    const auto& cache = status.image_cache();
    add_line(out, "Image cache",
             docker_human_size(static_cast<std::int64_t>(cache.used_bytes())) + " of " +
                 docker_human_size(static_cast<std::int64_t>(cache.cap_bytes())) +
                 ", Docker Hub names from " + cache.upstream() +
                 (cache.running() ? "" : " (NOT RUNNING: pulls go to the Hub directly)"));
    if (!cache.problem().empty()) out += std::string(18, ' ') + cache.problem() + "\n";
  }
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

namespace {

json mounts_json(const v1::SessionStatus& status) {
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

json ports_json(const v1::SessionStatus& status) {
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

}  // namespace

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
      {"gpuModels", std::vector<std::string>(status.session().gpu_models().begin(),
                                             status.session().gpu_models().end())},
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
      // The latest the session ends (its maximum duration), RFC 3339; "" when unknown or when
      // it has no maximum. maxDuration: "8h", "0s" for none, "" when unknown.
      {"endsBy", latest_end_unix_ms(status).value_or(0) > 0
                     ? format_rfc3339(*latest_end_unix_ms(status))
                     : ""},
      {"maxDuration", latest_end_unix_ms(status)
                          ? format_duration(std::chrono::milliseconds(status.session().max_duration_ms()))
                          : ""},
      {"imageCache", status.has_image_cache()
                         ? json{{"upstream", status.image_cache().upstream()},
                                {"usedBytes", status.image_cache().used_bytes()},
                                {"capBytes", status.image_cache().cap_bytes()},
                                {"running", status.image_cache().running()},
                                {"problem", status.image_cache().problem()}}
                         : json(nullptr)},
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

}  // namespace offload::cli
