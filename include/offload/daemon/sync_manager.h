// Bind-mount synchronisation for the session: one MountSync per local path that containers
// mount, created on the first `POST /containers/create` that names it and kept (watching) until
// the session ends, so the next `docker run` with the same mount sends nothing but changes.
#pragma once

#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "offload/daemon/bind_sync.h"
#include "offload/daemon/session_access.h"
#include "offload/sync/ignore.h"
#include "offload/sync/mount.h"
#include "offload/v1/control.pb.h"

namespace offload::daemon {

// Why `path` (canonical) must not be synchronised, or "" if it may: the root of the file system
// (everything on this machine), or a path on a kernel pseudo-filesystem (proc, sysfs, devices,
// cgroups, ...), which describes this machine and would be endless or harmful to copy.
std::string unsyncable_reason(const std::filesystem::path& path);

// The mounts' part of `docker offload status`.
void describe_mounts(const std::vector<sync::MountStatus>& mounts, v1::SessionStatus& status);

class SyncManager final : public BindSync {
 public:
  // `excludes`: patterns from the config (sync.exclude), applied to every mount in addition to
  // the mount's own .offloadignore.
  SyncManager(SessionAccess& session, std::vector<std::string> excludes);
  ~SyncManager() override;

  void prepare_create(std::string body, std::function<void(Prepared)> done) override;
  void flush(std::function<void()> done) override;
  bool has_mounts() const override { return has_mounts_.load(); }
  std::vector<PathMapping> path_mappings() const override;

  std::vector<sync::MountStatus> status() const;
  // Stops every mount. `forget`: the session ended (its replicas went with it on the runner), so
  // the list of mounts is deleted too; otherwise (the daemon shuts down) it stays for restore().
  void stop_all(bool forget = true);

  // Keeps the list of synchronised paths in `file` (0600, atomic writes), so that a restarted
  // offloadd resumes synchronising the mounts of running containers without waiting for the next
  // `docker run` that names them.
  void set_state_file(std::filesystem::path file) { state_file_ = std::move(file); }
  // The docker-offload context's own socket: a bind of it, like one of /var/run/docker.sock or
  // /run/docker.sock, is a bind of the Docker API, which the runner gives the container (its
  // gated socket of the session's engine), not a file to synchronise.
  void set_context_socket(std::filesystem::path socket) { context_socket_ = std::move(socket); }

  // Starts synchronising every path of the state file again (the session was recovered). Paths
  // that are gone or changed type are dropped. Never throws.
  void restore();

  // For tests: how a mount's transport is opened (default: a Sync call on the session's runner).
  using Connect = sync::MountSync::Connect;
  void set_connect(Connect connect) { connect_override_ = std::move(connect); }
  // For tests: timings of new mounts.
  void set_mount_timing(std::chrono::milliseconds settle, std::chrono::milliseconds max_delay,
                        std::chrono::milliseconds reconnect_delay);
  // How long a create waits for a mount that makes no progress (nothing sent, received or
  // agreed on, no step towards "in sync") before it fails with 503; the mount carries on and a
  // later create waits again. A first sync of a large tree that keeps moving is waited for.
  void set_stall_timeout(std::chrono::milliseconds timeout) { stall_timeout_ = timeout; }

 private:
  Prepared prepare_blocking(const std::string& body);
  // The path the runner recognises as a bind of the Docker API (and gives its gated socket).
  static constexpr const char* kDockerSocket = "/var/run/docker.sock";
  bool is_docker_api_socket(const std::string& source) const;
  // The synchronised path for a local source: a mount of its own or, when it lies inside a
  // directory that is already synchronised, a path inside that one's replica. Throws
  // std::runtime_error with a user-facing message (status in `status`).
  std::string remote_path_for(const std::string& source, bool must_exist, int& status);
  std::shared_ptr<sync::MountSync> mount_for(const std::filesystem::path& canonical,
                                             bool single_file);

  void persist_locked() const;

  SessionAccess& session_;
  std::vector<std::string> excludes_;
  std::filesystem::path state_file_;
  std::filesystem::path context_socket_;
  std::string session_id_;  // of the mounts in mounts_ (guarded by mu_)
  Connect connect_override_;
  std::chrono::milliseconds settle_{50}, max_delay_{300}, reconnect_delay_{1000};
  std::chrono::milliseconds stall_timeout_{std::chrono::minutes(2)};
  mutable std::mutex mu_;
  std::map<std::filesystem::path, std::shared_ptr<sync::MountSync>> mounts_;
  // Replica path → what the engine's answers show instead: each mount's root (its canonical
  // local path, learned when the mount is ready) and each bind source as a create spelled it.
  // Shared with the mounts' ready callbacks, which may come late.
  struct PathBook {
    static constexpr std::size_t kMaxEntries = 4096;
    std::mutex mu;
    std::map<std::string, PathMapping> by_replica;
    void add(PathMapping m);
  };
  std::shared_ptr<PathBook> paths_ = std::make_shared<PathBook>();
  std::atomic<bool> has_mounts_{false};
  // prepare_create and flush wait for mounts; they do it here, never on the proxy's threads.
  boost::asio::thread_pool pool_{4};
};

}  // namespace offload::daemon
