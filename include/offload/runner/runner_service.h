// The offload.v1.Runner service: authenticates each call, keeps the table of sessions and hands
// every RPC to the part that does the work (Session, tunnel_targets, SyncCalls).
#pragma once

#include <grpcpp/grpcpp.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <functional>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "offload/common/clock.h"
#include "offload/runner/account_tokens.h"  // parse_token_file, for the runner's start-up
#include "offload/runner/lifecycle.h"
#include "offload/runner/metrics.h"
#include "offload/runner/session_backend.h"
#include "offload/v1/runner.grpc.pb.h"

namespace offload::runner {

struct RunnerOptions {
  // Account name → token. CreateSession and Hello need one of these.
  std::map<std::string, std::string> account_tokens;
  // Per-account settings from the accounts file (allowances, max-sessions); absent = defaults.
  std::map<std::string, AccountSettings> account_settings;
  // Sessions one account may hold at once (also those being created); 0 = unlimited.
  // An account's max-sessions= in the accounts file overrides it.
  std::size_t max_sessions_per_account = 0;
  // Longest idle timeout and client TTL a client may ask for; longer wishes are cut to it.
  std::chrono::milliseconds max_client_timeout{std::chrono::hours(24)};
  // Concurrent tunnels (engine API connections and port tunnels) per session; 0 = unlimited.
  std::size_t max_tunnels_per_session = 0;
  // Concurrent Sync calls per session; 0 = unlimited. Each buffers at most 16 messages of at
  // most the server's maximum message size.
  std::size_t max_sync_calls_per_session = 0;
  // Bytes of received Sync messages the replicas of one session have not taken yet, all its calls
  // together; 0 = unlimited. The session holds at most this plus one message per open call.
  std::size_t max_sync_buffer_per_session = 0;
  // Events a slow Events reader may fall behind before it is dropped.
  std::size_t max_queued_events = 256;
  std::string version = OFFLOAD_VERSION;
  std::string hostname;
  // Lifecycle limits for sessions whose client asks for none; max_duration is also a cap.
  LifecycleLimits default_limits;
  // Set when the runner has an image cache: fills Hello's image_cache.
  std::function<void(v1::ImageCache&)> describe_image_cache;
  // The time every lifecycle decision is made with (tests inject a ManualClock).
  const Clock* clock = &SystemClock::instance();
};

class Session;

class RunnerService final : public v1::Runner::CallbackService {
 public:
  // Tunnel coroutines run on `io`; blocking work (engine start/stop) on an internal pool.
  RunnerService(boost::asio::io_context& io, SessionBackend& backend, RunnerOptions options);
  ~RunnerService() override;

  // Destroys every session (runner shutdown). Blocking.
  void destroy_all(const std::string& reason);
  // Runner shutdown with --live-restore: stops the sessions' sync calls, records their state
  // and forgets them, leaving their engines running for the next runner process. Call after the
  // server stopped taking calls. Returns how many sessions were left running.
  std::size_t detach_all();
  // Runner start-up with --live-restore, before the server takes calls: brings back the
  // sessions of engines the backend adopted. An engine whose state cannot be used is destroyed.
  // Returns how many sessions were restored.
  std::size_t restore(std::vector<AdoptedEngine> engines);
  std::size_t session_count() const;
  // The live sessions, at this moment.
  std::vector<std::shared_ptr<Session>> sessions() const;
  // The live session `id`, or null (read-only use: tests, metrics).
  std::shared_ptr<Session> find_session(const std::string& id) const;

  // The live session `id` if `token` is its token, else null; for calls that do not come
  // through gRPC (the data channel). A miss is not logged here: the caller knows the peer.
  std::shared_ptr<Session> authenticated_session(const std::string& id,
                                                 std::string_view token) const;
  std::size_t max_tunnels_per_session() const { return options_.max_tunnels_per_session; }
  // Announced in Hello once the data channel listens (0: it does not).
  void set_data_channel_port(unsigned short port) { data_channel_port_ = port; }

  // Applies the lifecycle rules at the clock's current time: warns, and ends (destroys) the
  // sessions that are idle, lost their client or ran too long. The runner's own timer calls
  // this at each session's next deadline; tests call it after moving a ManualClock.
  void advance_lifecycles();
  // Ends the live session `id` as a lifecycle end would (its clients see it end with `reason`);
  // blocking, returns what teardown removed. Throws std::out_of_range when there is no such
  // session, std::runtime_error when teardown left something behind.
  std::vector<std::string> end_session(const std::string& id, const std::string& reason);

  // Replaces the accounts (the accounts file was reloaded). New sessions and Hello use the new
  // ones at once; running sessions keep going, since their calls carry their own session token.
  void set_accounts(std::map<std::string, AccountEntry> accounts);

  grpc::ServerUnaryReactor* Hello(grpc::CallbackServerContext*, const v1::HelloRequest*,
                                  v1::HelloResponse*) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext*,
                                          const v1::CreateSessionRequest*,
                                          v1::CreateSessionResponse*) override;
  grpc::ServerUnaryReactor* DestroySession(grpc::CallbackServerContext*,
                                           const v1::DestroySessionRequest*,
                                           v1::DestroySessionResponse*) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext*, const v1::GetSessionRequest*,
                                       v1::SessionInfo*) override;
  grpc::ServerUnaryReactor* ListContainers(grpc::CallbackServerContext*,
                                           const v1::ListContainersRequest*,
                                           v1::ListContainersResponse*) override;
  grpc::ServerUnaryReactor* ListImages(grpc::CallbackServerContext*, const v1::ListImagesRequest*,
                                       v1::ListImagesResponse*) override;
  grpc::ServerBidiReactor<v1::TunnelFrame, v1::TunnelFrame>* Tunnel(
      grpc::CallbackServerContext*) override;
  grpc::ServerWriteReactor<v1::SessionEvent>* Events(grpc::CallbackServerContext*,
                                                     const v1::EventsRequest*) override;
  grpc::ServerBidiReactor<v1::SyncMessage, v1::SyncMessage>* Sync(
      grpc::CallbackServerContext*) override;

 private:
  // OK with the account's name in `account`, or UNAUTHENTICATED.
  grpc::Status authenticate_account(grpc::CallbackServerContext* ctx, std::string& account) const;
  grpc::Status authenticate_session(grpc::CallbackServerContext* ctx,
                                    std::shared_ptr<Session>& session) const;
  // Authenticates the session, then runs `work(session) -> Status` on the blocking pool.
  template <class Work>
  grpc::ServerUnaryReactor* with_session(grpc::CallbackServerContext* ctx, Work work);
  std::shared_ptr<Session> remove_session(const std::string& id);
  // Feeds the engine's published ports and running containers into the session.
  void follow_engine(const std::shared_ptr<Session>& session);
  std::vector<std::string> destroy_session(const std::shared_ptr<Session>& session,
                                           const std::string& reason, SessionEnd why);

  void rearm_lifecycle_timer();

  boost::asio::io_context& io_;
  SessionBackend& backend_;
  RunnerOptions options_;  // account_tokens and account_settings guarded by accounts_mu_
  AccountTokens accounts_;  // guarded by accounts_mu_
  mutable std::mutex accounts_mu_;
  boost::asio::thread_pool blocking_{4};
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  // Sessions being created, per account: they count against max-sessions before they exist.
  std::map<std::string, std::size_t> creating_;  // guarded by mu_
  std::unique_ptr<boost::asio::steady_timer> lifecycle_timer_;  // guarded by mu_
  std::atomic<unsigned short> data_channel_port_{0};
};

}  // namespace offload::runner
