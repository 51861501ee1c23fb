// offloadd: the control API, the Docker endpoint and the session, wired together.
#pragma once

#include <grpcpp/grpcpp.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "offload/daemon/control_service.h"
#include "offload/daemon/docker_endpoint.h"
#include "offload/daemon/session_manager.h"
#include "offload/daemon/sync_manager.h"

namespace offload::daemon {

class Daemon {
 public:
  Daemon(StatePaths paths, OffloadConfig config, SessionManager::Providers providers,
         PortPolicy port_policy = {}, UdpFlowSettings udp = {});
  ~Daemon();

  // Re-attaches to a persisted session, then serves offloadd.sock and docker.sock (both 0600).
  // Throws std::runtime_error with a user-facing line when a socket cannot be served.
  void start();
  // Stops serving. The session (if any) keeps running: a restarted daemon re-attaches to it.
  void stop();

  SessionManager& sessions() { return sessions_; }
  const StatePaths& paths() const { return paths_; }

 private:
  boost::asio::awaitable<void> reconcile_ports();

  StatePaths paths_;
  std::vector<std::string> sync_excludes_;  // config's sync.exclude (config moves into sessions_)
  // Before sessions_ and io_: it must outlive every stream, including those destroyed with io_.
  tunnel::StreamRegistry streams_;
  // Before sessions_: the session's reconnect watchdog runs on it.
  boost::asio::io_context io_;
  SessionManager sessions_;
  ControlService control_;
  std::unique_ptr<grpc::Server> server_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::unique_ptr<DockerEndpoint> endpoint_;
  std::shared_ptr<PortForwarder> ports_;
  // Bind mounts: the Docker API proxy asks it to rewrite container creates. Declared after
  // endpoint_ is irrelevant: stop() ends every connection before anything here is destroyed.
  std::shared_ptr<SyncManager> sync_;
  std::vector<std::thread> threads_;
};

// The offloadd program: parses argv, takes the per-user lock, runs until SIGTERM/SIGINT.
int run_daemon(int argc, char** argv);

}  // namespace offload::daemon
