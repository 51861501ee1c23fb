// offloadd's live session: the runner it runs on, the stream of its events, the mirror of the
// runner's lifecycle view, the hand-off of its published ports and bind mounts, and the watchdog
// that reconnects when the runner is lost.
//
// Built by Session::start (provision a runner, create the session on it) or Session::adopt (the
// session recorded in state.json). Until commit(), destroying a Session is the rollback of its
// start: the session on the runner is destroyed and the runner its provider started is released,
// so a start that fails at any step leaves nothing behind. After commit(), destroying it only lets
// go of it here (a restarted daemon re-attaches); ending it is destroy() + let_go(true).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "offload/daemon/provider.h"
#include "offload/daemon/runner_client.h"
#include "offload/daemon/state_file.h"
#include "offload/v1/control.pb.h"

namespace offload::daemon {

class PortForwarder;
class Session;
class SyncManager;

// What a Session tells its owner. Called on gRPC threads or the session's executor, never with
// the session's own lock held; `session` lets the owner ignore a session it has already replaced.
class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  // Something `status` shows changed: the lifecycle view, the ports, the reconnect error.
  virtual void session_changed(Session& session) = 0;
  // A message for the user (the idle warning), to print once.
  virtual void session_notice(Session& session, std::string notice) = 0;
  // The runner cannot be reached; the session reconnects by itself.
  virtual void session_lost(Session& session, const std::string& why) = 0;
  // The runner answers again and still has the session; its events flow again.
  virtual void session_back(Session& session) = 0;
  // The session is over on the runner (`reason` for the user): its ports are closed and its
  // mounts stopped already.
  virtual void session_ended(Session& session, const std::string& reason) = 0;
};

// What a session works with on this machine.
struct SessionWiring {
  boost::asio::any_io_executor executor;  // runs the reconnect watchdog
  SessionObserver* observer = nullptr;    // required
  tunnel::StreamRegistry* streams = nullptr;
  std::shared_ptr<PortForwarder> ports;   // may be null: no port forwarding
  std::shared_ptr<SyncManager> sync;      // may be null: no bind mounts
};

// What `start` asks of the runner.
struct StartPlan {
  std::string account;
  std::string previous_context;  // recorded in state.json for `stop`
  std::chrono::milliseconds timeout{0};
  v1::CreateSessionRequest create;  // create.gpu(): refused at Hello by a runner without GPUs
  // Told each phase as it begins: "runner", "engine" (then "events" and "context" are the
  // manager's own). May be empty.
  std::function<void(const std::string& phase)> on_phase;
};

// The reconnect watchdog's backoff: 250 ms, doubling, at most 30 s.
inline constexpr std::chrono::milliseconds kFirstReconnectDelay{250};
std::chrono::milliseconds next_reconnect_delay(std::chrono::milliseconds delay);

class Session {
 public:
  // Provisions a runner through `provider` and creates the session on it (blocking; within
  // plan.timeout, each step given at least a second). `cancelled` is polled between steps.
  // Throws ControlError (CANCELLED), ProvisionError or RunnerError, having undone what it made.
  static std::unique_ptr<Session> start(Provider& provider, const StartPlan& plan,
                                        SessionWiring wiring,
                                        const std::function<bool()>& cancelled);
  // The session recorded in state.json, committed; nothing is contacted yet (see reattach()).
  // `provider` (may be null: the account is gone from the config) releases a local runner.
  static std::unique_ptr<Session> adopt(const PersistedSession& saved, Provider* provider,
                                        SessionWiring wiring);

  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // state.json and the docker context point at the session now: it is no longer rolled back.
  void commit();
  // The start failed after Session::start returned; `why` is what the runner records when the
  // destructor destroys the session.
  void abandon(std::string why);

  // Checks that the runner still has the session (blocking). Throws RunnerError.
  void reattach(std::chrono::milliseconds timeout);
  // Subscribes to the session's events. Waits up to `wait` until the runner has sent the current
  // state, so that no end of the session can be missed once this returns.
  void follow(std::chrono::milliseconds wait);

  // Destroys the session on the runner (blocking). Throws RunnerError. Call let_go(true) after.
  v1::DestroySessionResponse destroy(const std::string& reason);
  // Stops following the runner: events, the watchdog, forwarded ports. `session_over`: the
  // session's mounts are forgotten and the runner the provider started is released; otherwise
  // (the daemon shuts down, the session lives on) a restarted daemon resumes the mounts.
  // Idempotent.
  void let_go(bool session_over);

  const PersistedSession& record() const { return record_; }
  // The client of the session's runner (also while it is unreachable).
  std::shared_ptr<RunnerClient> client() const { return client_; }
  v1::SessionInfo info() const;
  std::string reconnect_error() const;
  // The session's part of `status`: where it runs, the runner's info, and (while `live`) the
  // lifecycle view and the forwarded ports.
  void describe(v1::SessionStatus& status, bool live) const;

 private:
  class EventsReader;
  struct Watchdog;
  // following: events flow; reconnecting: the watchdog runs; ending: destroy() was asked;
  // over: the runner ended it, or we let go.
  enum class Link { idle, following, reconnecting, ending, over };

  Session(PersistedSession record, Provider* provider, SessionWiring wiring, bool committed);

  // From the events stream (gRPC threads).
  void on_event(const v1::SessionEvent& event);
  void on_events_lost(const std::string& why);
  // The session is over on the runner: close its ports, stop (and forget) its mounts.
  void end_here();

  void start_watchdog();
  void stop_watchdog();
  static boost::asio::awaitable<void> reconnect(std::shared_ptr<Watchdog> dog,
                                                std::shared_ptr<RunnerClient> client);
  // One answer of the runner while reconnecting; false once there is nothing left to retry.
  bool reconnect_step(const std::optional<RunnerError>& error, const v1::SessionInfo& info);

  PersistedSession record_;
  Provider* provider_ = nullptr;
  SessionWiring wiring_;
  std::optional<ProvisionedRunner> provisioned_;
  std::shared_ptr<RunnerClient> client_;
  bool committed_ = false;
  bool created_ = false;     // the runner has the session (it must be destroyed on rollback)
  bool released_ = false;    // let_go(true) ran
  std::string rollback_reason_ = "start failed";

  mutable std::mutex mu_;
  Link link_ = Link::idle;
  v1::SessionInfo info_;
  v1::Lifecycle lifecycle_;  // the runner's view, mirrored
  std::string reconnect_error_;
  std::unique_ptr<EventsReader> events_;
  std::shared_ptr<Watchdog> watchdog_;
};

}  // namespace offload::daemon
