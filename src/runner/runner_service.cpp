#include "offload/runner/runner_service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <algorithm>
#include <optional>

#include "offload/common/duration.h"
#include "offload/common/clock.h"
#include "offload/common/text.h"
#include "offload/common/token.h"
#include "offload/runner/metrics.h"
#include "offload/runner/session.h"
#include "offload/runner/sync_call.h"
#include "offload/runner/tunnel_targets.h"
#include "offload/tunnel/data_channel.h"
#include "offload/tunnel/grpc_streams.h"

namespace offload::runner {
namespace asio = boost::asio;
using grpc::Status;
using grpc::StatusCode;

namespace {

std::string metadata(const grpc::CallbackServerContext* ctx, const std::string& key) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return {};
  return std::string(it->second.data(), it->second.size());
}

std::string bearer_token(const grpc::CallbackServerContext* ctx) {
  std::string value = metadata(ctx, "authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (value.rfind(kPrefix, 0) != 0) return {};
  return value.substr(kPrefix.size());
}

// Answers a tunnel that failed authentication.
class RejectedTunnel final : public grpc::ServerBidiReactor<v1::TunnelFrame, v1::TunnelFrame> {
 public:
  explicit RejectedTunnel(const Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

class RejectedSync final : public grpc::ServerBidiReactor<v1::SyncMessage, v1::SyncMessage> {
 public:
  explicit RejectedSync(const Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

class RejectedEvents final : public grpc::ServerWriteReactor<v1::SessionEvent> {
 public:
  explicit RejectedEvents(const Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

RunnerService::RunnerService(asio::io_context& io, SessionBackend& backend, RunnerOptions options)
    : io_(io), backend_(backend), options_(std::move(options)), accounts_(options_.account_tokens) {
  if (options_.hostname.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    options_.hostname = host;
  }
}

RunnerService::~RunnerService() { blocking_.join(); }

std::vector<std::shared_ptr<Session>> RunnerService::sessions() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<Session>> all;
  for (const auto& [id, s] : sessions_) all.push_back(s);
  return all;
}

std::size_t RunnerService::session_count() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

std::shared_ptr<Session> RunnerService::find_session(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second;
}

void RunnerService::set_accounts(std::map<std::string, AccountEntry> accounts) {
  std::map<std::string, std::string> tokens;
  std::map<std::string, AccountSettings> settings;
  for (auto& [name, entry] : accounts) {
    tokens[name] = std::move(entry.token);
    settings[name] = std::move(entry.settings);
  }
  AccountTokens replacement(tokens);
  std::lock_guard lock(accounts_mu_);
  accounts_ = std::move(replacement);
  options_.account_tokens = std::move(tokens);
  options_.account_settings = std::move(settings);
}

Status RunnerService::authenticate_account(grpc::CallbackServerContext* ctx,
                                           std::string& account) const {
  std::optional<std::string> name;
  {
    std::lock_guard lock(accounts_mu_);
    name = accounts_.authenticate(bearer_token(ctx));
  }
  if (name) {
    account = std::move(*name);
    return Status::OK;
  }
  spdlog::warn("rejected a call from {}: invalid account token", ctx->peer());
  return Status(StatusCode::UNAUTHENTICATED,
                "the runner rejected the account token: check the account's token file");
}

std::shared_ptr<Session> RunnerService::authenticated_session(const std::string& id,
                                                              std::string_view token) const {
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(id);
    if (it != sessions_.end()) session = it->second;
  }
  if (session && session->token_matches(token)) return session;
  return nullptr;
}

Status RunnerService::authenticate_session(grpc::CallbackServerContext* ctx,
                                           std::shared_ptr<Session>& session) const {
  std::string id = metadata(ctx, "offload-session");
  session = authenticated_session(id, bearer_token(ctx));
  if (session) return Status::OK;
  spdlog::warn("rejected a call from {} for session {}: unknown session or invalid token",
               ctx->peer(), short_session_id(id));
  return Status(StatusCode::UNAUTHENTICATED,
                "the runner does not know this session or its token (it may have ended)");
}

grpc::ServerUnaryReactor* RunnerService::Hello(grpc::CallbackServerContext* ctx,
                                               const v1::HelloRequest* request,
                                               v1::HelloResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  std::string account;
  if (auto st = authenticate_account(ctx, account); !st.ok()) {
    reactor->Finish(st);
    return reactor;
  }
  response->set_protocol(v1::PROTOCOL_VERSION_1);
  response->set_runner_version(options_.version);
  response->set_hostname(options_.hostname);
  const GpuInventory gpus = backend_.gpus();
  response->set_gpu_available(gpus.usable());
  for (const auto& model : gpus.models) response->add_gpu_models(model);
  response->set_gpu_problem(gpus.problem);
  if (options_.describe_image_cache) options_.describe_image_cache(*response->mutable_image_cache());
  response->set_data_channel_port(data_channel_port_.load());
  if (data_channel_port_.load() != 0)
    response->set_data_channel_version(tunnel::data_channel::kLatestVersion);
  if (request->protocol() != v1::PROTOCOL_VERSION_1) {
    reactor->Finish(Status(StatusCode::FAILED_PRECONDITION,
                           "this runner speaks protocol 1 only; upgrade docker-offload"));
    return reactor;
  }
  // Debug: offloadd also greets at every `docker offload status` (for the image cache).
  spdlog::debug("hello from {} (account {}, offloadd {})", ctx->peer(), account,
               request->client_version());
  reactor->Finish(Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* RunnerService::CreateSession(grpc::CallbackServerContext* ctx,
                                                       const v1::CreateSessionRequest* request,
                                                       v1::CreateSessionResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  std::string account;
  if (auto st = authenticate_account(ctx, account); !st.ok()) {
    reactor->Finish(st);
    return reactor;
  }
  // The client's wishes, within the runner's own limits. Compared as counts before any
  // chrono arithmetic, so INT64_MAX or negative wishes cannot overflow anything.
  LifecycleLimits limits = options_.default_limits;
  const std::int64_t longest = options_.max_client_timeout.count();
  auto pick = [longest](std::int64_t asked, std::chrono::milliseconds fallback) {
    if (asked <= 0) return fallback;  // "no wish": the runner's default
    return std::chrono::milliseconds(longest > 0 ? std::min(asked, longest) : asked);
  };
  limits.idle_timeout = pick(request->idle_timeout_ms(), limits.idle_timeout);
  limits.client_ttl = pick(request->client_ttl_ms(), limits.client_ttl);
  // The runner's maximum duration is a cap the client can shorten, never lift or turn off.
  const auto cap = options_.default_limits.max_duration;
  const std::int64_t asked_max = request->max_duration_ms();
  if (asked_max > 0)
    limits.max_duration = std::chrono::milliseconds(cap.count() > 0 ? std::min(asked_max, cap.count())
                                                                    : asked_max);
  else
    limits.max_duration = cap;

  // Before anything is counted or started: a GPU asked of a runner without one fails at once.
  const bool gpu = request->gpu();
  if (gpu && !backend_.gpu_available()) {
    const std::string problem = backend_.gpus().problem;
    spdlog::warn("refused a GPU session for account {}: {}", account, problem);
    reactor->Finish(Status(StatusCode::FAILED_PRECONDITION,
                           "runner " + options_.hostname + " cannot give the session a GPU: " +
                               problem));
    return reactor;
  }
  // Sessions per account: the ones being created count too, or parallel requests would slip by.
  AccountSettings settings;
  {
    std::lock_guard lock(accounts_mu_);
    if (auto it = options_.account_settings.find(account); it != options_.account_settings.end())
      settings = it->second;
  }
  const std::size_t max_sessions =
      settings.max_sessions.value_or(options_.max_sessions_per_account);
  {
    std::lock_guard lock(mu_);
    std::size_t held = creating_[account];
    for (const auto& [id, s] : sessions_) held += s->account() == account;
    if (max_sessions > 0 && held >= max_sessions) {
      spdlog::warn("refused a session for account {}: it holds {} of its {} sessions", account,
                   held, max_sessions);
      reactor->Finish(Status(
          StatusCode::RESOURCE_EXHAUSTED,
          "account \"" + account + "\" already has " + std::to_string(held) + " sessions, the most " +
              "this runner allows it (end one with `docker offload stop`, or ask the operator to "
              "raise --max-sessions-per-account or the account's max-sessions= in the accounts "
              "file)"));
      return reactor;
    }
    ++creating_[account];
  }
  // Starting an engine takes seconds: never on a gRPC thread.
  ApiAllowances allow = settings.allow;
  allow.gpu = gpu;  // the session's own, not the account's: `--gpus` only where it was asked for
  asio::post(blocking_, [this, ctx, reactor, response, account, limits, allow, gpu,
                         label = request->client_label()] {
    auto session = std::make_shared<Session>(random_hex(16), random_hex(32), account, label, limits,
                                             *options_.clock, [this] { rearm_lifecycle_timer(); },
                                             allow);
    session->syncs().set_max_calls(options_.max_sync_calls_per_session);
    session->syncs().set_max_buffered_bytes(options_.max_sync_buffer_per_session);
    // Whatever happens below, this request stops counting as "being created".
    struct Created {
      Created(RunnerService* s, std::string a) : self(s), account(std::move(a)) {}
      Created(const Created&) = delete;
      Created& operator=(const Created&) = delete;
      RunnerService* self;
      std::string account;
      std::shared_ptr<Session> session;  // set on success: enters the table in the same step
      ~Created() {
        std::lock_guard lock(self->mu_);
        if (--self->creating_[account] == 0) self->creating_.erase(account);
        if (session) self->sessions_[session->id()] = session;
      }
    };
    std::optional<Created> created;
    created.emplace(this, account);
    RunnerMetrics::global().session_starting();
    const auto began = std::chrono::steady_clock::now();
    auto start_done = [began](SessionStart result) {
      RunnerMetrics::global().session_start_done(result, std::chrono::steady_clock::now() - began);
    };
    spdlog::info("session {}: creating for account {} ({}); idle timeout {}, client TTL {}, "
                 "maximum duration {}{}",
                 short_session_id(session->id()), account, label,
                 format_duration(limits.idle_timeout), format_duration(limits.client_ttl),
                 format_duration(limits.max_duration), gpu ? "; with the GPUs" : "");
    try {
      session->attach_engine(gpu ? backend_.create_with_gpus(session->id())
                                 : backend_.create(session->id()));
    } catch (const std::exception& e) {
      spdlog::error("session {}: engine failed to start: {}", short_session_id(session->id()),
                    e.what());
      start_done(SessionStart::failed);
      reactor->Finish(Status(StatusCode::FAILED_PRECONDITION, e.what()));
      return;
    }
    if (ctx->IsCancelled()) {
      // Nobody will ever learn this session's token: do not leave it running.
      spdlog::warn("session {}: client gave up while it was created; destroying it",
                   short_session_id(session->id()));
      try {
        session->engine().destroy("client gave up during creation");
      } catch (const std::exception& e) {
        spdlog::error("session {}: {}", short_session_id(session->id()), e.what());
      }
      start_done(SessionStart::cancelled);
      reactor->Finish(Status(StatusCode::CANCELLED, "cancelled"));
      return;
    }
    // Before the client learns the token: a runner restarted from now on finds the session.
    session->persist();
    created->session = session;
    created.reset();  // in the table now, and no longer "being created"
    start_done(SessionStart::ok);
    follow_engine(session);
    rearm_lifecycle_timer();
    response->set_session_id(session->id());
    response->set_session_token(session->token());
    *response->mutable_info() = session->info(options_.version, options_.hostname);
    spdlog::info("session {}: running (engine {})", short_session_id(session->id()),
                 response->info().engine_version());
    reactor->Finish(Status::OK);
  });
  return reactor;
}

void RunnerService::follow_engine(const std::shared_ptr<Session>& session) {
  std::weak_ptr<Session> weak = session;
  session->engine().watch(
      [weak](const std::vector<v1::PublishedPort>& ports) {
        if (auto s = weak.lock()) s->set_ports(ports);
      },
      [weak](std::size_t running) {
        if (auto s = weak.lock()) s->set_running_containers(running);
      });
}

std::size_t RunnerService::restore(std::vector<AdoptedEngine> engines) {
  std::size_t restored = 0;
  for (auto& adopted : engines) {
    const std::string id8 = short_session_id(adopted.session_id);
    std::shared_ptr<Session> session;
    try {
      auto snapshot = parse_session_snapshot(adopted.session_state, adopted.session_id);
      session = std::make_shared<Session>(snapshot, *options_.clock,
                                          [this] { rearm_lifecycle_timer(); });
    } catch (const std::exception& e) {
      // Nobody could ever authenticate to it: an engine without a usable session is a leftover.
      spdlog::error("session {}: cannot restore it ({}); destroying its engine", id8, e.what());
      try {
        adopted.engine->destroy("its session could not be restored after a runner restart");
      } catch (const std::exception& teardown) {
        spdlog::error("session {}: {}", id8, teardown.what());
      }
      continue;
    }
    session->syncs().set_max_calls(options_.max_sync_calls_per_session);
    session->syncs().set_max_buffered_bytes(options_.max_sync_buffer_per_session);
    session->attach_engine(std::move(adopted.engine));
    {
      std::lock_guard lock(mu_);
      sessions_[session->id()] = session;
    }
    follow_engine(session);
    RunnerMetrics::global().session_restored();
    ++restored;
    spdlog::info("session {}: restored for account {} ({}), created {} ago", id8,
                 session->account(), session->client_label(),
                 format_duration(std::chrono::milliseconds(
                     std::max<std::int64_t>(0, unix_now_ms() - session->created_unix_ms()))));
  }
  rearm_lifecycle_timer();
  return restored;
}

std::size_t RunnerService::detach_all() {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, s] : sessions_) all.push_back(s);
    sessions_.clear();
    if (lifecycle_timer_) lifecycle_timer_->cancel();
  }
  for (auto& s : all) {
    // Replicas finish what they were writing; the clients' sync resumes after the restart.
    if (!s->syncs().stop_all(std::chrono::seconds(10)))
      spdlog::warn("session {}: a sync call did not stop in time", short_session_id(s->id()));
    s->persist();
    RunnerMetrics::global().session_detached();
    spdlog::info("session {}: left running for the next runner process",
                 short_session_id(s->id()));
  }
  return all.size();
}

std::shared_ptr<Session> RunnerService::remove_session(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return nullptr;
  auto s = it->second;
  sessions_.erase(it);
  return s;
}

std::vector<std::string> RunnerService::destroy_session(const std::shared_ptr<Session>& session,
                                                        const std::string& reason,
                                                        SessionEnd why) {
  RunnerMetrics::global().session_stopping(why);
  session->transition(v1::SESSION_STATE_STOPPING, reason);
  if (!session->syncs().stop_all(std::chrono::seconds(10)))
    spdlog::warn("session {}: a sync call did not stop in time", short_session_id(session->id()));
  std::vector<std::string> removed;
  std::string failure;
  try {
    removed = session->engine().destroy(reason);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  session->transition(v1::SESSION_STATE_ENDED, reason);
  RunnerMetrics::global().session_stopped();
  if (!failure.empty()) {
    spdlog::error("session {}: teardown incomplete: {}", short_session_id(session->id()), failure);
    throw std::runtime_error(failure);
  }
  spdlog::info("session {}: destroyed ({}); removed {} resources",
               short_session_id(session->id()), reason, removed.size());
  return removed;
}

template <class Work>
grpc::ServerUnaryReactor* RunnerService::with_session(grpc::CallbackServerContext* ctx,
                                                      Work work) {
  auto* reactor = ctx->DefaultReactor();
  std::shared_ptr<Session> session;
  if (auto st = authenticate_session(ctx, session); !st.ok()) {
    reactor->Finish(st);
    return reactor;
  }
  // Engine calls block (unix-socket HTTP, teardown): never on a gRPC thread.
  asio::post(blocking_, [reactor, session, work = std::move(work)]() mutable {
    try {
      reactor->Finish(work(session));
    } catch (const std::exception& e) {
      reactor->Finish(Status(StatusCode::UNAVAILABLE, e.what()));
    }
  });
  return reactor;
}

grpc::ServerUnaryReactor* RunnerService::DestroySession(grpc::CallbackServerContext* ctx,
                                                        const v1::DestroySessionRequest* request,
                                                        v1::DestroySessionResponse* response) {
  std::string reason = request->reason().empty() ? "destroyed by client" : request->reason();
  return with_session(ctx, [this, response, reason](const std::shared_ptr<Session>& session) {
    if (!remove_session(session->id())) return Status::OK;  // a concurrent destroy won
    try {
      for (auto& r : destroy_session(session, reason, SessionEnd::client_request))
        response->add_removed(r);
      return Status::OK;
    } catch (const std::exception& e) {
      return Status(StatusCode::INTERNAL, std::string("teardown incomplete: ") + e.what());
    }
  });
}

grpc::ServerUnaryReactor* RunnerService::GetSession(grpc::CallbackServerContext* ctx,
                                                    const v1::GetSessionRequest*,
                                                    v1::SessionInfo* response) {
  return with_session(ctx, [this, response](const std::shared_ptr<Session>& session) {
    *response = session->info(options_.version, options_.hostname);
    return Status::OK;
  });
}

grpc::ServerUnaryReactor* RunnerService::ListContainers(grpc::CallbackServerContext* ctx,
                                                        const v1::ListContainersRequest* request,
                                                        v1::ListContainersResponse* response) {
  return with_session(ctx, [response, all = request->all()](const std::shared_ptr<Session>& s) {
    for (auto& c : s->engine().list_containers(all)) *response->add_containers() = c;
    return Status::OK;
  });
}

grpc::ServerUnaryReactor* RunnerService::ListImages(grpc::CallbackServerContext* ctx,
                                                    const v1::ListImagesRequest*,
                                                    v1::ListImagesResponse* response) {
  return with_session(ctx, [response](const std::shared_ptr<Session>& s) {
    for (auto& i : s->engine().list_images()) *response->add_images() = i;
    return Status::OK;
  });
}

grpc::ServerBidiReactor<v1::TunnelFrame, v1::TunnelFrame>* RunnerService::Tunnel(
    grpc::CallbackServerContext* ctx) {
  std::shared_ptr<Session> session;
  if (auto st = authenticate_session(ctx, session); !st.ok()) return new RejectedTunnel(st);

  auto hold = session->try_hold_tunnel(options_.max_tunnels_per_session);
  if (!hold)
    return new RejectedTunnel(Status(
        StatusCode::RESOURCE_EXHAUSTED,
        "this session already has " + std::to_string(options_.max_tunnels_per_session) +
            " tunnels open, the most the runner allows per session; close some connections, or "
            "ask the operator to raise --max-tunnels-per-session"));
  // The target comes with the tunnel's first frame; tunnel_targets decides what it may dial.
  // The handler lives as long as the stream, and with it the tunnel's place (`hold`).
  auto on_open = [this, session, hold](std::shared_ptr<tunnel::ServerTunnelStream> stream,
                                 const v1::TunnelOpen& open) {
    start_tunnel(io_, std::move(stream), session, open);
  };
  return tunnel::ServerTunnelStream::create(ctx, std::move(on_open));
}

grpc::ServerBidiReactor<v1::SyncMessage, v1::SyncMessage>* RunnerService::Sync(
    grpc::CallbackServerContext* ctx) {
  std::shared_ptr<Session> session;
  if (auto st = authenticate_session(ctx, session); !st.ok()) return new RejectedSync(st);
  auto root = session->engine().sync_root();
  if (root.empty())
    return new RejectedSync(Status(StatusCode::UNIMPLEMENTED,
                                   "this runner cannot synchronise bind mounts"));
  return session->syncs().start(ctx, root, short_session_id(session->id()),
                               session->engine().sync_id_shift());
}

grpc::ServerWriteReactor<v1::SessionEvent>* RunnerService::Events(grpc::CallbackServerContext* ctx,
                                                                  const v1::EventsRequest*) {
  std::shared_ptr<Session> session;
  if (auto st = authenticate_session(ctx, session); !st.ok()) return new RejectedEvents(st);
  return new SessionEventWriter(session, options_.max_queued_events);
}

void RunnerService::advance_lifecycles() {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, s] : sessions_) all.push_back(s);
  }
  for (auto& s : all) {
    auto tick = s->advance();
    if (tick.warning_started)
      spdlog::info("session {}: idle; it ends in {} unless something runs",
                   short_session_id(s->id()),
                   format_duration(s->lifecycle().limits().idle_warning));
    if (!tick.ended) continue;
    std::string reason = s->end_reason_text();
    const SessionEnd why = session_end_of(s->lifecycle().view(options_.clock->now()).ended);
    if (!remove_session(s->id())) continue;  // destroyed meanwhile
    spdlog::info("session {}: ending: {}", short_session_id(s->id()), reason);
    asio::post(blocking_, [this, s, reason, why] {
      try {
        destroy_session(s, reason, why);
      } catch (const std::exception&) {
        // logged by destroy_session; the record stays for the next start-up to retry
      }
    });
  }
  rearm_lifecycle_timer();
}

void RunnerService::rearm_lifecycle_timer() {
  std::lock_guard lock(mu_);
  auto next = SessionLifecycle::time_point::max();
  for (auto& [id, s] : sessions_) next = std::min(next, s->lifecycle().next_deadline());
  if (!lifecycle_timer_) lifecycle_timer_ = std::make_unique<asio::steady_timer>(io_);
  if (next == SessionLifecycle::time_point::max()) {
    lifecycle_timer_->cancel();
    return;
  }
  // The timer waits in real time for the injected clock's deadline; a ManualClock's tests call
  // advance_lifecycles() themselves.
  auto wait = std::max(Clock::duration::zero(), next - options_.clock->now());
  lifecycle_timer_->expires_after(std::min<Clock::duration>(wait, std::chrono::hours(1)));
  lifecycle_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (!ec) advance_lifecycles();
  });
}

std::vector<std::string> RunnerService::end_session(const std::string& id,
                                                    const std::string& reason) {
  auto session = remove_session(id);
  if (!session) throw std::out_of_range("no session " + id + " (it may have ended)");
  spdlog::info("session {}: ending: {}", short_session_id(id), reason);
  rearm_lifecycle_timer();
  return destroy_session(session, reason, SessionEnd::admin);
}

void RunnerService::destroy_all(const std::string& reason) {
  std::vector<std::shared_ptr<Session>> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, s] : sessions_) all.push_back(s);
    sessions_.clear();
  }
  for (auto& s : all) {
    try {
      destroy_session(s, reason, SessionEnd::runner_shutdown);
    } catch (const std::exception&) {
      // already logged
    }
  }
}

}  // namespace offload::runner
