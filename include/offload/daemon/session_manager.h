// The daemon's session: provisioning, the docker context switch, state.json, and what the
// Docker endpoint and the control service ask of it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <thread>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "offload/common/paths.h"
#include "offload/config/config.h"
#include "offload/daemon/port_forwarder.h"
#include "offload/daemon/provider.h"
#include "offload/daemon/runner_client.h"
#include "offload/v1/control.pb.h"

namespace offload::daemon {

class SyncManager;

// A control request failed; `what()` is the one line to show the user.
struct ControlError : std::runtime_error {
  ControlError(grpc::StatusCode code, const std::string& what)
      : std::runtime_error(what), code(code) {}
  grpc::StatusCode code;
};

// What state.json holds: enough to re-attach after a daemon restart and to restore the
// previous docker context even if the runner is gone.
struct PersistedSession {
  std::string account;
  RunnerEndpoint endpoint;
  std::string session_id;
  std::string session_token;
  std::string previous_context;
  std::int64_t started_unix_ms = 0;
  pid_t runner_pid = -1;
};

std::string to_json(const PersistedSession& s);
// Throws std::runtime_error naming `source` on malformed input.
PersistedSession parse_persisted_session(std::string_view json, const std::string& source);

class SessionManager final : public ActivitySink {
 public:
  using Providers = std::map<std::string, std::unique_ptr<Provider>>;
  // Every tunnel of the session is registered in `streams` (may be null), so the owner can end
  // them all before its io_context goes away.
  SessionManager(StatePaths paths, OffloadConfig config, Providers providers,
                 tunnel::StreamRegistry* streams = nullptr);
  ~SessionManager() override;

  // Published ports of the session are forwarded by `ports` (may be null: no forwarding).
  void attach_ports(std::shared_ptr<PortForwarder> ports);
  // Bind mounts of the session are synchronised by `sync`: its mounts end with the session and
  // show in status().
  void attach_sync(std::shared_ptr<SyncManager> sync);
  // Stops following the runner (events, ports) without touching the session: the daemon is
  // shutting down and a restarted one re-attaches.
  void detach();

  // Re-attaches to the session in state.json, if any. Never throws: a session that cannot be
  // recovered is reported as ended, with the reason, until `stop`.
  void recover();

  // Blocking; throw ControlError. `cancelled` is polled between steps: a client that gave up
  // (Ctrl-C) gets nothing left running.
  v1::StartResponse start(const v1::StartRequest& request,
                          const std::function<bool()>& cancelled = [] { return false; });
  v1::StopResponse stop();
  v1::ListContainersResponse list_containers(bool all);
  v1::ListImagesResponse list_images();
  v1::VersionResponse version();
  v1::ListAccountsResponse accounts() const;

  v1::SessionStatus status() const;

  // Messages for the user not shown yet (idle warning, session ended, ...), each once.
  std::vector<std::string> take_notices();
  // Queues a message for the next `docker offload` command to print (duplicates dropped).
  void post_notice(std::string notice) { add_notice(std::move(notice)); }
  // The provider of an account, or nullptr.
  const Provider* provider(const std::string& account) const;

  // The live session's runner, or nullptr; then `unavailable_message()` says why, for the user.
  std::shared_ptr<RunnerClient> runner() const;
  std::string unavailable_message() const;

  // Status watchers get the status now and after every change.
  using Watcher = std::function<void(const v1::SessionStatus&)>;
  int watch(Watcher watcher);
  void unwatch(int id);

  // Tunneled connections (Docker API and forwarded ports), counted for status (and the idle
  // timer, later).
  void stream_opened();
  void stream_closed();
  void connection_opened() override { stream_opened(); }
  void connection_closed() override { stream_closed(); }

  // Called by the runner's event stream (and tests).
  void on_session_event(const v1::SessionEvent& event);
  void on_event_stream_lost(const std::string& why);

 private:
  class EventsReader;
  Provider& provider_for(const std::string& account) const;
  void set_state(v1::DaemonState state, const std::string& ended_reason = {});
  void add_notice(std::string notice);
  void notify();
  void persist();
  void start_events();
  void clear_session();
  // `session_over`: the session ended (its mounts are forgotten); otherwise the daemon only
  // detaches and a restarted one picks the mounts up again.
  void clear_ports(bool session_over = true);
  void reconnect_loop();
  std::string restore_context(const std::string& previous);

  StatePaths paths_;
  OffloadConfig config_;
  Providers providers_;
  tunnel::StreamRegistry* streams_ = nullptr;

  std::mutex ops_mu_;  // serialises start/stop
  mutable std::mutex mu_;
  v1::DaemonState state_ = v1::DAEMON_STATE_STOPPED;
  std::string ended_reason_;
  std::optional<PersistedSession> session_;
  std::optional<ProvisionedRunner> provisioned_;
  std::shared_ptr<RunnerClient> runner_;
  v1::SessionInfo info_;
  std::unique_ptr<EventsReader> events_;
  std::shared_ptr<PortForwarder> ports_;
  std::shared_ptr<SyncManager> sync_;
  std::atomic<std::int64_t> active_streams_{0};
  std::map<int, Watcher> watchers_;
  v1::Lifecycle lifecycle_;             // the runner's view, mirrored
  std::vector<std::string> notices_;
  // Reconnecting after the runner was lost (guarded by mu_).
  std::shared_ptr<RunnerClient> reconnect_client_;
  std::string reconnect_error_;
  bool shutting_down_ = false;
  std::condition_variable reconnect_cv_;
  int next_watcher_ = 1;
  std::thread reconnect_thread_;  // last member: it starts in the constructor
};

}  // namespace offload::daemon
