// The runner's admin socket: `offload-runner sessions ls|inspect|rm` talk to a running
// `offload-runner serve` over gRPC (offload.v1.RunnerAdmin) on a unix socket that only root can
// reach (0600 in a 0700 directory) and that refuses any other peer by SO_PEERCRED as well.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "offload/common/clock.h"
#include "offload/v1/admin.grpc.pb.h"

namespace offload::runner {

class RunnerService;

inline constexpr const char* kDefaultAdminSocket = "/run/offload-runner/admin.sock";

// The one id among `ids` that is `wanted` or starts with it (like docker's id prefixes), or a
// user-facing error: none matches, or several do.
std::variant<std::string, std::string> resolve_session_id(const std::vector<std::string>& ids,
                                                          const std::string& wanted);

// CPU time and memory of a session's cgroup `parent` under `root` (/sys/fs/cgroup), v1 or v2;
// -1 for what cannot be read (no such cgroup yet: the session never ran a container).
struct CgroupUsage {
  double cpu_seconds = -1;
  std::int64_t memory_bytes = -1;
};
CgroupUsage read_cgroup_usage(const std::filesystem::path& root, const std::string& parent);

// `sessions ls`: a table like `docker ps`, one line per session.
std::string format_sessions_table(const std::vector<v1::AdminSession>& sessions);
// `sessions ls --format json` and `sessions inspect`: plain JSON numbers and strings.
std::string format_session_json(const v1::AdminSession& session, int indent = 2);
std::string format_sessions_json(const std::vector<v1::AdminSession>& sessions);

class AdminService final : public v1::RunnerAdmin::Service {
 public:
  AdminService(RunnerService& runner, const Clock& clock,
               std::filesystem::path cgroup_root = "/sys/fs/cgroup")
      : runner_(runner), clock_(clock), cgroup_root_(std::move(cgroup_root)) {}

  grpc::Status ListSessions(grpc::ServerContext*, const v1::ListSessionsRequest*,
                            v1::ListSessionsResponse*) override;
  grpc::Status InspectSession(grpc::ServerContext*, const v1::InspectSessionRequest*,
                              v1::AdminSession*) override;
  grpc::Status RemoveSessions(grpc::ServerContext*, const v1::RemoveSessionsRequest*,
                              v1::RemoveSessionsResponse*) override;

 private:
  std::variant<std::string, grpc::Status> resolve(const std::string& wanted) const;
  std::optional<v1::AdminSession> describe(const std::string& id) const;

  RunnerService& runner_;
  const Clock& clock_;
  const std::filesystem::path cgroup_root_;
};

// Serves an AdminService on `socket` until destroyed. Creates the socket's directory (0700) and
// the socket (0600); a stale socket file is replaced, one a live runner answers on is not.
// Throws std::runtime_error with one actionable line.
class AdminServer {
 public:
  // `allowed_uid`: the only peer uid served (root; tests pass their own or another).
  AdminServer(std::filesystem::path socket, RunnerService& runner, const Clock& clock,
              uid_t allowed_uid = 0);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;
  const std::filesystem::path& socket() const { return socket_; }
  // Connections refused for their peer so far.
  int refused() const { return refused_.load(); }

 private:
  void accept_loop();

  std::filesystem::path socket_;
  AdminService service_;
  uid_t allowed_uid_;
  std::unique_ptr<grpc::Server> server_;
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  std::atomic<int> refused_{0};
  std::thread thread_;
};

// The client side, for the `sessions` commands: a stub on the admin socket, with a user-facing
// error when the socket is not there or not ours to open.
std::unique_ptr<v1::RunnerAdmin::Stub> connect_admin(const std::filesystem::path& socket);

}  // namespace offload::runner
