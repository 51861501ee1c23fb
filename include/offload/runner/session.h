// One session on the runner: the engine it owns, its credentials, its lifecycle and the clients
// that follow its events. The runner service keeps the table of sessions; tunnels, sync calls
// and event streams each hold theirs by shared_ptr while they run, so a session outlives its
// removal from the table until the last of them ends.
#pragma once

#include <grpcpp/grpcpp.h>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "offload/common/clock.h"
#include "offload/runner/api_policy.h"
#include "offload/runner/lifecycle.h"
#include "offload/runner/metrics.h"
#include "offload/runner/session_backend.h"
#include "offload/runner/session_snapshot.h"
#include "offload/runner/sync_call.h"
#include "offload/v1/runner.grpc.pb.h"

namespace offload::runner {

class SessionEventWriter;
class GatedApiSocket;

// Thread-safe: gRPC threads, the blocking pool, the tunnels' io_context and the engine's port
// watcher all call in. One mutex guards the state, the ports and the subscribers, and every
// event is published under it, so each subscriber sees the events in the order of the changes.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // The session's time (created_unix_ms, the lifecycle on `clock`) starts here, so from the
  // request that creates it rather than from when its engine is ready. `on_lifecycle_input`
  // runs after every lifecycle input, outside the session's lock: the service re-arms its
  // lifecycle timer there.
  Session(std::string id, std::string token, std::string account, std::string client_label,
          LifecycleLimits limits, const Clock& clock, std::function<void()> on_lifecycle_input,
          ApiAllowances allow = {});
  // A session brought back after a runner restart (serve --live-restore): the same id, owner,
  // token, limits, creation time and mounts. Its maximum duration counts from its creation;
  // idleness and the client TTL start afresh now. It has no token to hand out (token() is "").
  Session(const SessionSnapshot& snapshot, const Clock& clock,
          std::function<void()> on_lifecycle_input);
  ~Session();

  const std::string& id() const { return id_; }
  // The secret of the session's calls, for the creating client only; "" for a restored session.
  const std::string& token() const { return token_; }
  // True when `presented` is this session's token. Compares hashes in constant time.
  bool token_matches(std::string_view presented) const;
  // What a restarted runner needs to restore this session (see session_snapshot.h).
  SessionSnapshot snapshot() const;
  // Writes snapshot() into the engine's record, so a runner restart finds the session as it is
  // now. Called once the engine is attached and again whenever a client opens a new mount.
  // Failures are logged: the session itself goes on.
  void persist();
  const std::string& account() const { return account_; }
  const std::string& client_label() const { return client_label_; }
  // What the account's settings let this session's API requests do beyond the default policy.
  const ApiAllowances& allowances() const { return allow_; }
  std::int64_t created_unix_ms() const { return created_ms_; }

  // Set once, before the session is shared (put in the table, given to calls).
  void attach_engine(std::unique_ptr<SessionEngine> engine) { engine_ = std::move(engine); }
  SessionEngine& engine() { return *engine_; }
  // The session's gated Docker API socket (gated_api_socket.h): where it is (empty without an
  // engine), and serving it from the first create that binds the Docker socket until the
  // session object goes. False when it cannot be served (logged).
  std::filesystem::path api_socket_path() const;
  bool serve_api_socket(boost::asio::io_context& io);
  // Bind-mount replicas; stopped before the engine (and with it the sync root) is destroyed.
  SyncCalls& syncs() { return syncs_; }
  // A place for one more tunnel, held until the returned handle is destroyed; nullptr when the
  // session already has `max` (0 = unlimited) tunnels open.
  std::shared_ptr<void> try_hold_tunnel(std::size_t max);
  std::size_t open_tunnels() const { return tunnels_.load(); }
  // What its tunnels moved (metrics.h), for the runner's admin view.
  SessionTraffic& traffic() { return traffic_; }
  // Read-only: inputs go through the session, which publishes what they change.
  const SessionLifecycle& lifecycle() const { return lifecycle_; }

  // Activity and lease inputs. Each publishes an event when the session turns active or idle.
  void stream_opened() { lifecycle_input([&](auto now) { lifecycle_.stream_opened(now); }, +1); }
  void stream_closed() { lifecycle_input([&](auto now) { lifecycle_.stream_closed(now); }, -1); }
  void client_attached() { lifecycle_input([&](auto now) { lifecycle_.client_attached(now); }); }
  void client_detached() { lifecycle_input([&](auto now) { lifecycle_.client_detached(now); }); }
  void set_running_containers(std::size_t n);
  // Advances the lifecycle to now; publishes a warning when it starts.
  SessionLifecycle::Tick advance();
  std::string end_reason_text() const { return lifecycle_.view(clock_.now()).reason_text; }

  // What GetSession and CreateSession answer; the runner's own fields come from the caller.
  v1::SessionInfo info(const std::string& runner_version, const std::string& runner_hostname);

  // Adds `w` and hands it the current state first, so a client needs no separate query.
  void subscribe(SessionEventWriter* w);
  void unsubscribe(SessionEventWriter* w);
  // Moves to `state` and tells every subscriber; ENDED closes their streams.
  void transition(v1::SessionState state, const std::string& reason);
  // A new set of published ports from the engine: tell every subscriber.
  void set_ports(const std::vector<v1::PublishedPort>& ports);
  // The ports the session's containers publish right now (empty once the session has ended).
  std::vector<v1::PublishedPort> published_ports() const;

 private:
  template <class Input>
  void lifecycle_input(Input input, int stream_delta = 0) {
    {
      std::lock_guard lock(mu_);
      active_streams_ += stream_delta;
      input(clock_.now());
      bool active = lifecycle_.view(clock_.now()).active;
      if (active != last_active_ && state_ == v1::SESSION_STATE_RUNNING) {
        last_active_ = active;
        publish_locked(event_locked({}));
      }
    }
    if (on_lifecycle_input_) on_lifecycle_input_();
  }

  // Every event carries the whole state: the session state, the complete port set and the
  // lifecycle view.
  v1::SessionEvent event_locked(const std::string& reason) const;
  v1::Lifecycle lifecycle_locked() const;
  void publish_locked(const v1::SessionEvent& e);

  const std::string id_;
  const std::string token_;
  const std::string token_sha256_;
  const std::string account_;
  const std::string client_label_;
  const ApiAllowances allow_;
  const std::int64_t created_ms_;
  std::unique_ptr<SessionEngine> engine_;
  SyncCalls syncs_;
  SessionTraffic traffic_;
  const Clock& clock_;
  SessionLifecycle lifecycle_;
  const std::function<void()> on_lifecycle_input_;

  mutable std::mutex mu_;
  v1::SessionState state_ = v1::SESSION_STATE_RUNNING;
  std::string end_reason_;
  std::vector<v1::PublishedPort> ports_;
  bool last_active_ = false;
  std::int64_t active_streams_ = 0;
  std::atomic<std::int64_t> running_containers_{0};
  std::atomic<std::size_t> tunnels_{0};
  std::vector<SessionEventWriter*> subscribers_;
  std::mutex api_socket_mu_;
  std::shared_ptr<GatedApiSocket> api_socket_;  // guarded by api_socket_mu_
};

// Writes a session's events to one client (Runner.Events), one write in flight, and ends the
// stream after ENDED. An open stream is the client's lease on the session. Deletes itself when
// gRPC is done with it.
class SessionEventWriter final : public grpc::ServerWriteReactor<v1::SessionEvent> {
 public:
  // A reader that falls `max_queued` events behind is dropped: its call ends with
  // RESOURCE_EXHAUSTED once the write in flight completes, and nothing more is queued for it.
  static constexpr std::size_t kDefaultMaxQueued = 256;
  explicit SessionEventWriter(std::shared_ptr<Session> session,
                              std::size_t max_queued = kDefaultMaxQueued);

  // Queues `event` for the client. The session calls it under its own lock.
  void push(const v1::SessionEvent& event);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void write_next_locked();
  grpc::Status too_slow_status() const;
  void finish_locked(const grpc::Status& status);

  std::shared_ptr<Session> session_;
  std::mutex mu_;
  std::deque<v1::SessionEvent> queue_;
  const std::size_t max_queued_;
  bool too_slow_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

}  // namespace offload::runner
