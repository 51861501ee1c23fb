#include "offload/runner/admin.h"

#include <errno.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <grpcpp/server_posix.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "offload/common/fs.h"
#include "offload/common/text.h"
#include "offload/engine/engine.h"
#include "offload/runner/runner_service.h"
#include "offload/runner/session.h"

namespace offload::runner {
namespace fs = std::filesystem;
using grpc::Status;
using grpc::StatusCode;

namespace {

std::optional<std::int64_t> read_number(const fs::path& file) {
  std::ifstream in(file);
  std::int64_t value = 0;
  if (in >> value) return value;
  return std::nullopt;
}

// "usage_usec 123" in a v2 cpu.stat.
std::optional<std::int64_t> read_keyed(const fs::path& file, const std::string& key) {
  std::ifstream in(file);
  std::string name;
  std::int64_t value = 0;
  while (in >> name >> value)
    if (name == key) return value;
  return std::nullopt;
}

std::string human_size(std::int64_t bytes) {
  if (bytes < 0) return "-";
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f%s" : "%.3g%s", v, units[u]);
  return buf;
}

// Coarse, for a table: "45s", "12m", "3h5m", "2d4h".
std::string short_duration(std::int64_t ms) {
  std::int64_t s = std::max<std::int64_t>(0, ms / 1000);
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m";
  if (s < 86400)
    return std::to_string(s / 3600) + "h" + (s % 3600 >= 60 ? std::to_string(s % 3600 / 60) + "m" : "");
  return std::to_string(s / 86400) + "d" + std::to_string(s % 86400 / 3600) + "h";
}

nlohmann::json to_json(const v1::AdminSession& s) {
  nlohmann::json ports = nlohmann::json::array();
  for (const auto& p : s.ports())
    ports.push_back({{"container_id", p.container_id()},
                     {"container_name", p.container_name()},
                     {"container_port", p.container_port()},
                     {"protocol", p.protocol()},
                     {"host_ip", p.host_ip()},
                     {"host_port", p.host_port()}});
  nlohmann::json mounts = nlohmann::json::array();
  for (const auto& m : s.mount_ids()) mounts.push_back(m);
  return {{"id", s.id()},
          {"account", s.account()},
          {"client_label", s.client_label()},
          {"state", s.state()},
          {"created_unix_ms", s.created_unix_ms()},
          {"age_ms", s.age_ms()},
          {"idle_ms", s.idle_ms()},
          {"client_connected", s.client_connected()},
          {"containers", {{"running", s.containers_running()}, {"total", s.containers_total()}}},
          {"ports", ports},
          {"mounts", {{"count", s.mount_ids_size()}, {"ids", mounts}}},
          {"tunnels",
           {{"open", s.tunnels_open()},
            {"total", s.tunnels_total()},
            {"bytes_in", s.tunnel_bytes_in()},
            {"bytes_out", s.tunnel_bytes_out()}}},
          {"sync",
           {{"calls_open", s.sync_calls_open()},
            {"bytes_in", s.sync_bytes_in()},
            {"bytes_out", s.sync_bytes_out()}}},
          {"cpu_seconds", s.cpu_seconds()},
          {"memory_bytes", s.memory_bytes()}};
}

}  // namespace

std::variant<std::string, std::string> resolve_session_id(const std::vector<std::string>& ids,
                                                          const std::string& wanted) {
  using Result = std::variant<std::string, std::string>;
  if (wanted.empty()) return Result(std::in_place_index<1>, "an empty session id matches nothing");
  std::vector<std::string> matches;
  for (const auto& id : ids) {
    if (id == wanted) return Result(std::in_place_index<0>, id);
    if (id.rfind(wanted, 0) == 0) matches.push_back(id);
  }
  if (matches.empty())
    return Result(std::in_place_index<1>, "no session " + wanted + " on this runner");
  if (matches.size() > 1)
    return Result(std::in_place_index<1>, "session id prefix " + wanted + " is ambiguous: " +
                                               std::to_string(matches.size()) +
                                               " sessions start with it; give more of the id");
  return Result(std::in_place_index<0>, matches.front());
}

CgroupUsage read_cgroup_usage(const fs::path& root, const std::string& parent) {
  CgroupUsage usage;
  std::error_code ec;
  if (fs::exists(root / "cgroup.controllers", ec)) {  // v2: one hierarchy
    if (auto usec = read_keyed(root / parent / "cpu.stat", "usage_usec"))
      usage.cpu_seconds = static_cast<double>(*usec) / 1e6;
    if (auto bytes = read_number(root / parent / "memory.current")) usage.memory_bytes = *bytes;
    return usage;
  }
  for (const char* hierarchy : {"cpuacct", "cpu,cpuacct", "cpu"}) {
    if (auto ns = read_number(root / hierarchy / parent / "cpuacct.usage")) {
      usage.cpu_seconds = static_cast<double>(*ns) / 1e9;
      break;
    }
  }
  if (auto bytes = read_number(root / "memory" / parent / "memory.usage_in_bytes"))
    usage.memory_bytes = *bytes;
  return usage;
}

std::string format_sessions_table(const std::vector<v1::AdminSession>& sessions) {
  std::vector<std::vector<std::string>> rows = {{"SESSION ID", "ACCOUNT", "CLIENT", "STATE", "AGE",
                                                 "IDLE", "CONTAINERS", "PORTS", "MOUNTS",
                                                 "TUNNELS", "IN", "OUT", "CPU", "MEMORY"}};
  for (const auto& s : sessions) {
    char cpu[32] = "-";
    if (s.cpu_seconds() >= 0) std::snprintf(cpu, sizeof cpu, "%.1fs", s.cpu_seconds());
    rows.push_back({s.id().substr(0, 12), s.account(), s.client_label().empty() ? "-" : s.client_label(),
                    s.state(), short_duration(s.age_ms()),
                    s.state() == "idle" ? short_duration(s.idle_ms()) : "-",
                    s.containers_total() < 0 ? "?"
                                             : std::to_string(s.containers_running()) + "/" +
                                                   std::to_string(s.containers_total()),
                    std::to_string(s.ports_size()), std::to_string(s.mount_ids_size()),
                    std::to_string(s.tunnels_open()),
                    human_size(static_cast<std::int64_t>(s.tunnel_bytes_in() + s.sync_bytes_in())),
                    human_size(static_cast<std::int64_t>(s.tunnel_bytes_out() + s.sync_bytes_out())),
                    cpu, human_size(s.memory_bytes())});
  }
  std::vector<std::size_t> width(rows.front().size(), 0);
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 3, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string format_session_json(const v1::AdminSession& session, int indent) {
  return to_json(session).dump(indent);
}

std::string format_sessions_json(const std::vector<v1::AdminSession>& sessions) {
  nlohmann::json all = nlohmann::json::array();
  for (const auto& s : sessions) all.push_back(to_json(s));
  return all.dump(2);
}

// --- the service ---

std::variant<std::string, Status> AdminService::resolve(const std::string& wanted) const {
  std::vector<std::string> ids;
  for (const auto& s : runner_.sessions()) ids.push_back(s->id());
  auto found = resolve_session_id(ids, wanted);
  if (found.index() == 0) return std::get<0>(found);
  const std::string& error = std::get<1>(found);
  return Status(error.find("ambiguous") != std::string::npos ? StatusCode::FAILED_PRECONDITION
                                                             : StatusCode::NOT_FOUND,
                error);
}

std::optional<v1::AdminSession> AdminService::describe(const std::string& id) const {
  auto s = runner_.find_session(id);
  if (!s) return std::nullopt;
  v1::AdminSession out;
  out.set_id(s->id());
  out.set_account(s->account());
  out.set_client_label(s->client_label());
  const auto now = clock_.now();
  const auto view = s->lifecycle().view(now);
  out.set_state(view.active ? "active" : "idle");
  out.set_client_connected(view.client_connected);
  out.set_created_unix_ms(s->created_unix_ms());
  out.set_age_ms(std::max<std::int64_t>(0, unix_now_ms() - s->created_unix_ms()));
  const auto idle_timeout = s->lifecycle().limits().idle_timeout;
  if (!view.active && view.idle_deadline != SessionLifecycle::time_point::max())
    out.set_idle_ms(std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(
               now - (view.idle_deadline - idle_timeout))
               .count()));
  // The engine answers for its containers; a session whose engine does not answer still shows.
  try {
    auto containers = s->engine().list_containers(true);
    out.set_containers_total(static_cast<std::int64_t>(containers.size()));
    out.set_containers_running(std::count_if(containers.begin(), containers.end(),
                                             [](const auto& c) { return c.state() == "running"; }));
  } catch (const std::exception&) {
    out.set_containers_total(-1);
    out.set_containers_running(-1);
  }
  for (const auto& p : s->published_ports()) *out.add_ports() = p;
  for (const auto& m : s->syncs().mount_ids()) out.add_mount_ids(m);
  out.set_tunnels_open(s->open_tunnels());
  out.set_tunnels_total(s->traffic().tunnels_total.load());
  out.set_tunnel_bytes_in(s->traffic().tunnel_bytes_in.load());
  out.set_tunnel_bytes_out(s->traffic().tunnel_bytes_out.load());
  out.set_sync_calls_open(s->syncs().size());
  out.set_sync_bytes_in(s->syncs().bytes_received());
  out.set_sync_bytes_out(s->syncs().bytes_sent());
  engine::EngineSpec spec;  // the cgroup is named after the session, as the engine names it
  spec.session_id = s->id();
  auto usage = read_cgroup_usage(cgroup_root_, spec.cgroup_parent());
  out.set_cpu_seconds(usage.cpu_seconds);
  out.set_memory_bytes(usage.memory_bytes);
  return out;
}

Status AdminService::ListSessions(grpc::ServerContext*, const v1::ListSessionsRequest*,
                                  v1::ListSessionsResponse* response) {
  auto all = runner_.sessions();
  std::sort(all.begin(), all.end(),
            [](const auto& a, const auto& b) { return a->created_unix_ms() < b->created_unix_ms(); });
  for (const auto& s : all)
    if (auto d = describe(s->id())) *response->add_sessions() = std::move(*d);
  return Status::OK;
}

Status AdminService::InspectSession(grpc::ServerContext*, const v1::InspectSessionRequest* request,
                                    v1::AdminSession* response) {
  auto id = resolve(request->id());
  if (auto* st = std::get_if<Status>(&id)) return *st;
  auto d = describe(std::get<std::string>(id));
  if (!d) return Status(StatusCode::NOT_FOUND, "session " + request->id() + " has just ended");
  *response = std::move(*d);
  return Status::OK;
}

Status AdminService::RemoveSessions(grpc::ServerContext*, const v1::RemoveSessionsRequest* request,
                                    v1::RemoveSessionsResponse* response) {
  const std::string reason =
      request->reason().empty() ? "ended by the runner's operator" : request->reason();
  for (const auto& wanted : request->ids()) {
    auto* result = response->add_results();
    result->set_requested(wanted);
    auto id = resolve(wanted);
    if (auto* st = std::get_if<Status>(&id)) {
      result->set_error(st->error_message());
      continue;
    }
    result->set_id(std::get<std::string>(id));
    spdlog::info("admin: ending session {} ({})", short_session_id(result->id()), reason);
    try {
      runner_.end_session(result->id(), reason);
    } catch (const std::out_of_range&) {
      result->set_error("session " + wanted + " ended meanwhile");
    } catch (const std::exception& e) {
      result->set_error(std::string("ended, but teardown incomplete: ") + e.what());
    }
  }
  return Status::OK;
}

// --- the socket ---

namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::error_code(errno, std::generic_category()).message());
}

sockaddr_un unix_address(const fs::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path)
    throw std::runtime_error("--admin-socket " + path.string() + " is too long for a unix socket");
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  return addr;
}

// True when something accepts connections on `path` (a runner still serving it).
bool answers(const fs::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  auto addr = unix_address(path);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

AdminServer::AdminServer(fs::path socket, RunnerService& runner, const Clock& clock,
                         uid_t allowed_uid)
    : socket_(std::move(socket)), service_(runner, clock), allowed_uid_(allowed_uid) {
  if (auto ec = ensure_private_dir(socket_.parent_path()))
    throw std::runtime_error("cannot create the admin socket's directory " +
                             socket_.parent_path().string() + " (0700): " + ec.message());
  struct stat st {};
  if (::lstat(socket_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      throw std::runtime_error("--admin-socket " + socket_.string() +
                               " exists and is not a socket; remove it or choose another path");
    if (answers(socket_))
      throw std::runtime_error("another offload-runner serves the admin socket " +
                               socket_.string() + "; stop it or choose another --admin-socket");
    ::unlink(socket_.c_str());  // left by a runner that died
  }
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) fail("cannot create the admin socket");
  auto addr = unix_address(socket_);
  const mode_t old = ::umask(077);  // never a moment with a wider mode
  int bound = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (bound != 0 || ::chmod(socket_.c_str(), 0600) != 0 || ::listen(listen_fd_, 16) != 0) {
    int saved = errno;
    ::close(listen_fd_);
    errno = saved;
    fail("cannot listen on the admin socket " + socket_.string());
  }
  grpc::ServerBuilder builder;
  builder.RegisterService(&service_);
  server_ = builder.BuildAndStart();
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (!server_ || stop_fd_ < 0) {
    ::close(listen_fd_);
    if (stop_fd_ >= 0) ::close(stop_fd_);
    throw std::runtime_error("cannot start the admin service");
  }
  thread_ = std::thread([this] { accept_loop(); });
  spdlog::info("admin socket {} (root only)", socket_.string());
}

AdminServer::~AdminServer() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof one);
  thread_.join();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  ::close(listen_fd_);
  ::close(stop_fd_);
  std::error_code ec;
  fs::remove(socket_, ec);
}

void AdminServer::accept_loop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("admin socket: poll failed: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    if (!fds[0].revents) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;  // the peer went away, or a transient shortage: poll again
    // The socket's mode keeps others out; this is the second lock, should the mode or the
    // directory ever be loosened.
    ucred peer{};
    socklen_t len = sizeof peer;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 || peer.uid != allowed_uid_) {
      ++refused_;
      spdlog::warn("admin socket: refused a connection from uid {} (pid {}): only uid {} may use it",
                   peer.uid, peer.pid, allowed_uid_);
      ::close(fd);
      continue;
    }
    grpc::AddInsecureChannelFromFd(server_.get(), fd);  // takes the descriptor
  }
}

std::unique_ptr<v1::RunnerAdmin::Stub> connect_admin(const fs::path& socket) {
  struct stat st {};
  if (::stat(socket.c_str(), &st) != 0) {
    if (errno == EACCES)
      throw std::runtime_error("cannot reach the admin socket " + socket.string() +
                               ": permission denied (it is root's: run with sudo)");
    throw std::runtime_error("no admin socket at " + socket.string() +
                             ": is `offload-runner serve` running (with this --admin-socket)?");
  }
  if (::access(socket.c_str(), R_OK | W_OK) != 0)
    throw std::runtime_error("cannot use the admin socket " + socket.string() +
                             ": permission denied (it is root's: run with sudo)");
  auto channel = grpc::CreateChannel("unix:" + fs::absolute(socket).string(),
                                     grpc::InsecureChannelCredentials());
  return v1::RunnerAdmin::NewStub(channel);
}

}  // namespace offload::runner
