#include "offload/engine/engine.h"
#include "offload/engine/kept_logs.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "host_cleanup.h"
#include "host_network.h"
#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/text.h"
#include "offload/engine/host_state.h"
#include "offload/engine/unix_http.h"

namespace offload::engine {
namespace fs = std::filesystem;
using namespace std::chrono;
using namespace std::chrono_literals;

namespace {

constexpr auto kDockerdGrace = 20s;
constexpr auto kStragglerPatience = 5s;
constexpr auto kReadyPoll = 100ms;
// sun_path holds 108 bytes; containerd puts "<exec-root>/containerd/containerd.sock.ttrpc" there.
constexpr std::size_t kMaxSocketPath = 100;

std::string id8(const EngineSpec& spec) { return spec.session_id.substr(0, 8); }

// The directories are removed recursively at teardown: refuse anything that could be a
// system directory by mistake.
void require_own_dir(const fs::path& dir, const char* what) {
  if (!dir.is_absolute() || std::distance(dir.begin(), dir.end()) < 3)
    throw std::invalid_argument(std::string(what) + " '" + dir.string() +
                                "' must be an absolute path at least two levels deep");
}

void validate(const EngineSpec& spec) {
  if (!valid_session_id(spec.session_id))
    throw std::invalid_argument("session id '" + spec.session_id +
                                "' is not lowercase hex of at least 8 characters");
  require_own_dir(spec.data_dir, "data_dir");
  require_own_dir(spec.run_dir, "run_dir");
  if (path_within(spec.data_dir, spec.run_dir) || path_within(spec.run_dir, spec.data_dir))
    throw std::invalid_argument("data_dir and run_dir must not contain each other");
  const auto containerd_socket = spec.exec_root() / "containerd" / "containerd.sock.ttrpc";
  if (containerd_socket.string().size() >= kMaxSocketPath)
    throw std::invalid_argument("run_dir '" + spec.run_dir.string() +
                                "' is too long for unix sockets; use a short path such as "
                                "/run/offload-runner/<id8>");
  // The longest socket BuildKit makes in dockerd's temporary directory: ioutil.TempDir adds up to
  // 10 digits to ".buildkit-ssh-sock".
  const auto ssh_socket = spec.tmp_dir() / ".buildkit-ssh-sock4294967295" / "ssh_auth_sock";
  if (ssh_socket.string().size() >= sizeof(sockaddr_un{}.sun_path))
    throw std::invalid_argument("run_dir '" + spec.run_dir.string() +
                                "' is too long for the unix sockets BuildKit makes under it (" +
                                ssh_socket.string() + "); use a short path such as "
                                "/run/offload-runner/<id8>");
  if (spec.slot.netns.empty() || spec.slot.host_veth.empty() || spec.slot.engine_veth.empty())
    throw std::invalid_argument("engine spec has no network slot: allocate one from AddressPool");
  if (auto problem = check_session_disk(spec.limits.disk_bytes); !problem.empty())
    throw std::invalid_argument(problem);
}

// Refuses to start over a live or half-dead engine of the same session: rolling back would
// destroy what belongs to it.
void require_fresh(const EngineSpec& spec) {
  std::string clash;
  if (detail::netns_exists(spec.slot.netns))
    clash = "network namespace " + spec.slot.netns;
  else if (detail::link_exists(spec.slot.host_veth))
    clash = "interface " + spec.slot.host_veth;
  else if (fs::exists(spec.api_socket()))
    clash = "socket " + spec.api_socket().string();
  else if (std::error_code ec; fs::exists(fs::symlink_status(spec.disk_image(), ec)))
    clash = "disk image " + spec.disk_image().string();
  if (!clash.empty())
    throw std::runtime_error(clash + " already exists: an engine of session " + spec.session_id +
                             " is running or was not cleaned up; destroy it first");
}

void make_private_dirs(const EngineSpec& spec) {
  for (const auto& dir : {spec.data_dir, spec.run_dir}) {
    if (auto ec = ensure_private_dir(dir))
      throw std::runtime_error("cannot create directory " + dir.string() + ": " + ec.message());
  }
}

// dockerd's temporary directory: on the session's disk, bound at the short tmp_dir() (see
// EngineSpec::tmp_dir). Teardown's unmount_within(run_dir) detaches the bind.
void bind_tmp_dir(const EngineSpec& spec) {
  for (const auto& dir : {spec.tmp_storage(), spec.tmp_dir()})
    if (auto ec = ensure_private_dir(dir))
      throw std::runtime_error("cannot create directory " + dir.string() + ": " + ec.message());
  if (::mount(spec.tmp_storage().c_str(), spec.tmp_dir().c_str(), nullptr, MS_BIND, nullptr) != 0)
    throw std::runtime_error("cannot bind " + spec.tmp_storage().string() + " on " +
                             spec.tmp_dir().string() + ": " + std::strerror(errno));
}

// Written before every start: without --config-file dockerd 20.10 reads /etc/docker/daemon.json,
// the host's settings. Nothing here may also be a command-line flag (dockerd refuses both).
void write_daemon_config(const EngineSpec& spec) {
  nlohmann::json config = {{"builder", {{"Entitlements", {{"network-host", false}}}}}};
  if (!spec.registry_mirrors.empty()) config["registry-mirrors"] = spec.registry_mirrors;
  if (spec.userns) {
    config["userns-remap"] = spec.userns->user + ":" + spec.userns->user;
    grant_traverse(spec.data_dir);
  }
  if (!spec.nvidia_runtime.empty())
    config["runtimes"] = {{"nvidia", {{"path", spec.nvidia_runtime.string()}, {"runtimeArgs", nlohmann::json::array()}}}};
  std::ofstream out(spec.config_file(), std::ios::trunc);
  out << config.dump(2) << "\n";
  if (!out.flush()) throw std::runtime_error("cannot write " + spec.config_file().string());
}

std::vector<std::string> dockerd_command(const EngineSpec& spec) {
  auto dockerd = find_program("dockerd");
  if (!dockerd) throw std::runtime_error("dockerd not found: install docker.io");
  // nsenter, not `ip netns exec`: the latter remounts /sys and dockerd then fails with
  // "Devices cgroup isn't mounted" on cgroup v1.
  std::vector<std::string> argv = {
      "nsenter",          "--net=/var/run/netns/" + spec.slot.netns,
      "--",               dockerd->string(),
      "--data-root",      spec.data_root().string(),
      "--exec-root",      spec.exec_root().string(),
      "--host",           "unix://" + spec.api_socket().string(),
      "--pidfile",        spec.pid_file().string(),
      // Absolute: a relative parent nests under dockerd's own cgroup in each hierarchy (here
      // the memory one differs from the root), outside the limits set on /<parent>.
      "--cgroup-parent",  "/" + spec.cgroup_parent(),
      "--config-file",    spec.config_file().string(),
  };
  argv.insert(argv.end(), spec.extra_dockerd_args.begin(), spec.extra_dockerd_args.end());
  return argv;
}

// Before dockerd: every container it starts is nested in this cgroup and counted against it.
void limit_session(const EngineSpec& spec) {
  const fs::path root = "/sys/fs/cgroup";
  auto error = apply_session_limits(root, detect_cgroup_version(root), spec.cgroup_parent(),
                                    spec.limits);
  if (!error.empty()) throw std::runtime_error("cannot set the session's limits: " + error);
}

pid_t spawn_dockerd(const EngineSpec& spec) {
  SpawnOptions options;
  options.log_file = spec.log_file();
  options.env.push_back("DOCKER_TMPDIR=" + spec.tmp_dir().string());
  std::string error;
  pid_t pid = spawn_process(dockerd_command(spec), options, error);
  if (pid <= 0) throw std::runtime_error("cannot start dockerd: " + error);
  return pid;
}

std::string log_tail(const EngineSpec& spec) {
  std::string tail = last_lines(detail::read_text(spec.log_file()), 3);
  return tail.empty() ? "(its log " + spec.log_file().string() + " is empty)" : tail;
}

void wait_until_ready(const EngineSpec& spec, pid_t pid) {
  const auto deadline = steady_clock::now() + spec.ready_timeout;
  for (;;) {
    HttpReply reply;
    auto ec = unix_http_get(spec.api_socket(), "/_ping", reply, 2s);
    if (!ec && reply.status == 200 && reply.body == "OK") return;
    if (!process_alive(pid))
      throw std::runtime_error("dockerd exited during start-up: " + log_tail(spec));
    if (steady_clock::now() >= deadline)
      throw std::runtime_error("dockerd did not answer on " + spec.api_socket().string() +
                               " within " + std::to_string(spec.ready_timeout.count()) +
                               " ms: " + log_tail(spec));
    std::this_thread::sleep_for(kReadyPoll);
  }
}

// A pidfile can outlive its process and the pid be reused: only a dockerd naming our run_dir
// counts.
pid_t dockerd_from_pidfile(const EngineSpec& spec) {
  std::ifstream in(spec.pid_file());
  pid_t pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  const std::string cmdline = detail::read_text("/proc/" + std::to_string(pid) + "/cmdline");
  if (cmdline.find("dockerd") == std::string::npos || !cmdline_mentions(cmdline, spec.run_dir))
    return 0;
  return pid;
}

// SIGTERM, and keep killing container processes while dockerd shuts down: the session is over,
// so there is no point in each container's 10 s stop timeout, and a restart policy must not
// bring one back.
bool stop_dockerd(pid_t pid, const detail::EngineMarks& marks) {
  if (pid <= 0 || !process_alive(pid)) return false;
  detail::kill_containers(marks);
  ::kill(pid, SIGTERM);
  const auto until = steady_clock::now() + kDockerdGrace;
  while (process_alive(pid) && steady_clock::now() < until) {
    detail::kill_containers(marks);
    std::this_thread::sleep_for(50ms);
  }
  terminate_process(pid, 0ms);  // SIGKILL if still there, and reap
  return true;
}

void remove_dirs(const EngineSpec& spec, TeardownReport& report) {
  for (const auto& dir : {spec.run_dir, spec.data_dir}) {
    std::error_code ec;
    // Only the directories the engine made: a file in the way was not ours to delete.
    if (!fs::is_directory(fs::symlink_status(dir, ec))) continue;
    // Deleting through a mount that failed to detach would delete someone else's files.
    if (!detail::mounts_within({dir}).empty()) continue;
    fs::remove_all(dir, ec);
    if (!ec) report.removed.push_back("directory " + dir.string());
  }
}

// dockerd --userns-remap (docker.io 20.10) keeps containerd's state for the remapped root in a
// copy of the exec-root path in which every directory from the first one that root cannot
// traverse on is renamed "<name>.<uid>.<gid>": /run/offload-runner/<id8>/exec/containerd becomes
// /run/offload-runner.U.G/<id8>.U.G/exec.U.G/containerd.U.G. Nothing removes it, so each session
// would leave a chain of empty directories behind. These are the candidates for the twin of
// run_dir, one per place the renaming could have started; the caller checks which exist.
struct RemappedTwin {
  fs::path run_dir;  // the twin of run_dir itself: this session's alone
  fs::path top;      // the first renamed directory, shared by the sessions of the slot
};

std::vector<RemappedTwin> remapped_twins(const EngineSpec& spec) {
  std::vector<RemappedTwin> twins;
  if (!spec.userns) return twins;
  const std::string suffix =
      "." + std::to_string(spec.userns->root_uid) + "." + std::to_string(spec.userns->root_gid);
  const std::vector<fs::path> parts(spec.run_dir.begin(), spec.run_dir.end());
  for (std::size_t first = 1; first < parts.size(); ++first) {  // parts[0] is "/"
    fs::path twin;
    for (std::size_t i = 0; i < parts.size(); ++i)
      twin /= i < first ? parts[i] : fs::path(parts[i].string() + suffix);
    fs::path top;
    for (std::size_t i = 0; i <= first; ++i)
      top /= i < first ? parts[i] : fs::path(parts[i].string() + suffix);
    twins.push_back({twin, top});
  }
  return twins;
}

void remove_remapped_twin(const EngineSpec& spec, TeardownReport& report) {
  for (const auto& twin : remapped_twins(spec)) {
    std::error_code ec;
    if (!fs::is_directory(fs::symlink_status(twin.run_dir, ec))) continue;
    if (!detail::mounts_within({twin.run_dir}).empty()) continue;
    fs::remove_all(twin.run_dir, ec);
    if (ec) continue;
    report.removed.push_back("directory " + twin.run_dir.string());
    // The shared ancestors go only once no other session of the slot has its twin there:
    // fs::remove refuses a directory that is not empty.
    for (auto dir = twin.run_dir.parent_path(); dir.string().size() >= twin.top.string().size();
         dir = dir.parent_path()) {
      if (!fs::remove(dir, ec) || ec) break;
      if (dir == twin.top) break;
    }
  }
}

void verify_gone(const EngineSpec& spec, const detail::EngineMarks& marks,
                 TeardownReport& report) {
  for (const auto& twin : remapped_twins(spec)) {
    std::error_code ec;
    if (fs::exists(fs::symlink_status(twin.run_dir, ec)))
      report.leftovers.push_back("directory " + twin.run_dir.string());
  }
  for (const auto& p : detail::engine_processes(marks))
    report.leftovers.push_back("process " + std::to_string(p.pid) + " (" + p.name + ")");
  for (const auto& m : detail::mounts_within({spec.data_dir, spec.run_dir}))
    report.leftovers.push_back("mount " + m.string());
  for (const auto& dir : {spec.data_dir, spec.run_dir}) {
    std::error_code ec;
    if (fs::is_directory(fs::symlink_status(dir, ec)))
      report.leftovers.push_back("directory " + dir.string());
  }
  detail::verify_session_disk(spec, report);
  for (const auto& cg : detail::cgroup_dirs(spec.cgroup_parent()))
    report.leftovers.push_back("cgroup " + cg.string());
  detail::verify_session_network(spec, report);
}

}  // namespace

Engine::Engine(EngineSpec spec, pid_t pid)
    : spec_(std::move(spec)), api_socket_(spec_.api_socket()), pid_(pid) {}

Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::start(const EngineSpec& spec) {
  validate(spec);
  if (auto missing = check_prerequisites(); !missing.empty()) throw std::runtime_error(missing);
  require_fresh(spec);
  const auto began = steady_clock::now();
  std::unique_ptr<Engine> engine(new Engine(spec, 0));
  try {
    make_private_dirs(spec);
    // First: everything the engine puts into data_dir must land on the session's own disk.
    detail::mount_session_disk(spec);
    bind_tmp_dir(spec);
    limit_session(spec);
    write_daemon_config(spec);
    detail::create_session_network(spec);
    engine->pid_ = spawn_dockerd(spec);
    wait_until_ready(spec, engine->pid_);
  } catch (const std::exception& e) {
    // Before teardown deletes data_dir with the log in it.
    fs::path kept;
    if (!spec.kept_logs_dir.empty())
      kept = keep_dockerd_log(spec.log_file(), spec.kept_logs_dir, spec.session_id);
    engine->log_kept_ = true;
    auto report = engine->destroy("start failed");
    std::string message = "engine for session " + id8(spec) + " did not start: " + e.what();
    if (!report.clean()) message += " (and teardown left: " + join(report.leftovers) + ")";
    if (!kept.empty()) {
      spdlog::error("[engine {}] start failed; dockerd log kept at {}", id8(spec), kept.string());
      message += " (dockerd log kept at " + kept.string() + " on the runner)";
    }
    throw std::runtime_error(message);
  }
  spdlog::info("[engine {}] started in {} ms: dockerd pid {}, netns {}, engine address {}, {}",
               id8(spec), duration_cast<milliseconds>(steady_clock::now() - began).count(),
               engine->pid_, spec.slot.netns, spec.slot.engine_address.to_string(),
               describe(spec.limits));
  return engine;
}

std::unique_ptr<Engine> Engine::adopt(const EngineSpec& spec) {
  validate(spec);
  return std::unique_ptr<Engine>(new Engine(spec, dockerd_from_pidfile(spec)));
}

bool Engine::alive() const { return pid_ > 0 && process_alive(pid_); }

int Engine::get(const std::string& target, std::string& body) {
  HttpReply reply;
  if (auto ec = unix_http_get(api_socket_, target, reply))
    throw std::runtime_error("engine " + id8(spec_) + " does not answer on " +
                             api_socket_.string() + ": " + ec.message());
  body = std::move(reply.body);
  return reply.status;
}

EngineVersion Engine::version() {
  std::string body;
  int status = get("/version", body);
  auto doc = nlohmann::json::parse(body, nullptr, false);
  if (status != 200 || !doc.is_object())
    throw std::runtime_error("engine " + id8(spec_) + " answered GET /version with " +
                             std::to_string(status));
  auto field = [&](const char* key) { return doc.value(key, std::string()); };
  return {field("Version"), field("ApiVersion"), field("Os"), field("Arch")};
}

TeardownReport Engine::destroy(const std::string& reason) {
  const auto began = steady_clock::now();
  TeardownReport report;
  const auto marks = detail::EngineMarks::of(spec_);
  if (pid_ > 0 && !process_alive(pid_) && !log_kept_ && !spec_.kept_logs_dir.empty()) {
    log_kept_ = true;
    auto kept = keep_dockerd_log(spec_.log_file(), spec_.kept_logs_dir, spec_.session_id);
    if (!kept.empty())
      spdlog::error("[engine {}] dockerd (pid {}) had died before teardown; its log is kept at {}",
                    id8(spec_), pid_, kept.string());
  }
  auto phase = [&, last = began](const char* name) mutable {
    auto now = steady_clock::now();
    spdlog::debug("[engine {}] teardown: {} took {} ms", id8(spec_), name,
                  duration_cast<milliseconds>(now - last).count());
    last = now;
  };
  if (stop_dockerd(pid_, marks)) report.removed.push_back("dockerd " + std::to_string(pid_));
  pid_ = 0;
  phase("stopping dockerd");
  std::vector<fs::path> shim_sockets;
  detail::kill_engine_processes(marks, kStragglerPatience, report, shim_sockets);
  detail::remove_shim_sockets(shim_sockets, report);
  phase("killing stragglers");
  detail::unmount_within({spec_.data_dir, spec_.run_dir}, report);
  detail::release_session_disk(spec_, report);
  detail::remove_cgroups(spec_.cgroup_parent(), report);
  remove_dirs(spec_, report);
  remove_remapped_twin(spec_, report);
  phase("unmounting and removing directories");
  detail::remove_session_network(spec_, report);
  phase("removing the network");
  verify_gone(spec_, marks, report);
  for (const auto& socket : shim_sockets)
    if (fs::exists(socket)) report.leftovers.push_back("shim socket " + socket.string());
  phase("verifying");
  report.duration = duration_cast<milliseconds>(steady_clock::now() - began);
  if (report.clean())
    spdlog::info("[engine {}] destroyed ({}) in {} ms: removed {} items, nothing left", id8(spec_),
                 reason, report.duration.count(), report.removed.size());
  else
    spdlog::error("[engine {}] destroyed ({}) in {} ms: removed {} items, LEFT {}", id8(spec_),
                  reason, report.duration.count(), report.removed.size(),
                  join(report.leftovers));
  return report;
}

}  // namespace offload::engine
