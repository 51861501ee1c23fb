// The daemon's session state: which session there is (a Session object, see session.h), in what
// state, the accounts it can start on, the notices waiting for the user and the status watchers.
// The control service asks it to start and stop; the data path sees it as a SessionAccess.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "offload/config/config.h"
#include "offload/daemon/context_switch.h"
#include "offload/daemon/control_error.h"
#include "offload/daemon/provider.h"
#include "offload/daemon/session.h"
#include "offload/daemon/session_access.h"
#include "offload/daemon/state_file.h"
#include "offload/v1/control.pb.h"

namespace offload::daemon {

class SessionManager final : public SessionAccess, private SessionObserver {
 public:
  using Providers = std::map<std::string, std::unique_ptr<Provider>>;
  // Every tunnel of the session is registered in `streams` (may be null), so the owner can end
  // them all before its io_context goes away. `executor` runs the session's reconnect watchdog.
  SessionManager(StatePaths paths, OffloadConfig config, Providers providers,
                 boost::asio::any_io_executor executor, tunnel::StreamRegistry* streams = nullptr);
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
  // The provider of an account, or nullptr.
  const Provider* provider(const std::string& account) const;

  // SessionAccess: what the data path asks.
  std::shared_ptr<RunnerClient> runner() const override;
  std::string unavailable_message() const override;
  void post_notice(std::string notice) override;
  // Tunneled connections (Docker API and forwarded ports), counted for status.
  void connection_opened() override { ++active_streams_; }
  void connection_closed() override { --active_streams_; }

  // Status watchers get the status now and after every change. Once unwatch() returned, the
  // watcher is not running and is never called again, so its owner may go away: unwatch waits
  // for a call of it in progress on another thread (it may be called from inside the watcher's
  // own call, which then is its last).
  using Watcher = std::function<void(const v1::SessionStatus&)>;
  int watch(Watcher watcher);
  void unwatch(int id);
  std::size_t watcher_count() const;

 private:
  // SessionObserver: what the live session reports.
  void session_changed(Session& session) override;
  void session_notice(Session& session, std::string notice) override;
  void session_lost(Session& session, const std::string& why) override;
  void session_back(Session& session) override;
  void session_ended(Session& session, const std::string& reason) override;
  bool is_current(const Session& session) const;  // needs mu_

  Provider& provider_for(const std::string& account) const;
  SessionWiring wiring();
  void set_state(v1::DaemonState state, const std::string& ended_reason = {});
  // What Start waits for now (SessionStatus.start_phase); watchers see each one.
  void set_start_phase(const std::string& phase);
  void notify();
  // Lets go of an ended or stopped session: its events, ports, mounts, runner, state.json.
  void end_session();

  StatePaths paths_;
  OffloadConfig config_;
  Providers providers_;
  boost::asio::any_io_executor executor_;
  tunnel::StreamRegistry* streams_ = nullptr;
  StateFile state_file_;
  ContextSwitch contexts_;

  std::mutex ops_mu_;  // serialises start/stop
  mutable std::mutex mu_;
  v1::DaemonState state_ = v1::DAEMON_STATE_STOPPED;
  std::string ended_reason_;
  std::string start_phase_;  // "" unless Start is under way
  // Shared only so that detach() can use it while a stop() replaces it; nothing else keeps it.
  std::shared_ptr<Session> session_;
  std::shared_ptr<PortForwarder> ports_;
  std::shared_ptr<SyncManager> sync_;
  std::atomic<std::int64_t> active_streams_{0};
  // A watcher's calls and its unwatch() exclude each other through `calling` (recursive: the
  // watcher may unwatch itself); `active` is guarded by it.
  struct WatcherSlot {
    explicit WatcherSlot(Watcher w) : watcher(std::move(w)) {}
    Watcher watcher;
    std::recursive_mutex calling;
    bool active = true;
  };
  std::map<int, std::shared_ptr<WatcherSlot>> watchers_;
  int next_watcher_ = 1;
  std::vector<std::string> notices_;
};

}  // namespace offload::daemon
