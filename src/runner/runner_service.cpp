#include "offload/runner/runner_service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <deque>
#include <sstream>

#include "offload/common/token.h"
#include "offload/tunnel/grpc_streams.h"
#include "offload/tunnel/pump.h"

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

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string short_id(const std::string& id) { return id.substr(0, 8); }

// Answers a tunnel that failed authentication.
class RejectedTunnel final : public grpc::ServerBidiReactor<v1::TunnelFrame, v1::TunnelFrame> {
 public:
  explicit RejectedTunnel(const Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

class RejectedEvents final : public grpc::ServerWriteReactor<v1::SessionEvent> {
 public:
  explicit RejectedEvents(const Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

std::map<std::string, std::string> parse_token_file(const std::string& text,
                                                    const std::string& source) {
  std::map<std::string, std::string> tokens;
  std::istringstream in(text);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    std::size_t start = line.find_first_not_of(' ');
    if (start == std::string::npos || line[start] == '#') continue;
    line = line.substr(start);
    auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == line.size())
      throw std::runtime_error(source + ":" + std::to_string(number) +
                               ": expected NAME:TOKEN (the token itself is not shown)");
    auto trim = [](std::string v) {
      v.erase(0, v.find_first_not_of(" \t"));
      v.erase(v.find_last_not_of(" \t") + 1);
      return v;
    };
    std::string name = trim(line.substr(0, colon)), token = trim(line.substr(colon + 1));
    if (name.empty() || token.empty())
      throw std::runtime_error(source + ":" + std::to_string(number) +
                               ": expected NAME:TOKEN (the token itself is not shown)");
    if (token.size() < 16)
      throw std::runtime_error(source + ":" + std::to_string(number) + ": the token of account \"" +
                               name + "\" is shorter than 16 characters");
    if (!tokens.emplace(name, token).second)
      throw std::runtime_error(source + ":" + std::to_string(number) + ": account \"" + name +
                               "\" appears twice");
  }
  if (tokens.empty()) throw std::runtime_error(source + ": no account tokens");
  return tokens;
}

// One session: its engine, credentials and event subscribers.
class RunnerService::Session {
 public:
  std::string id;
  std::string token;
  std::string account;
  std::string client_label;
  std::int64_t created_ms = 0;
  std::unique_ptr<SessionEngine> engine;
  std::atomic<int> active_tunnels{0};

  v1::SessionInfo info(const RunnerOptions& options) {
    v1::SessionInfo info;
    info.set_session_id(id);
    info.set_created_unix_ms(created_ms);
    info.set_runner_version(options.version);
    info.set_runner_hostname(options.hostname);
    std::lock_guard lock(mu_);
    info.set_state(state_);
    if (engine && state_ == v1::SESSION_STATE_RUNNING) engine->describe(info);
    return info;
  }

  v1::SessionEvent current_event() {
    std::lock_guard lock(mu_);
    v1::SessionEvent e;
    e.set_state(state_);
    e.set_reason(end_reason_);
    e.set_at_unix_ms(now_ms());
    return e;
  }

  void subscribe(EventWriter* w);
  void unsubscribe(EventWriter* w) {
    std::lock_guard lock(mu_);
    std::erase(subscribers_, w);
  }
  // Moves to `state` and tells every subscriber; ENDED closes their streams.
  void transition(v1::SessionState state, const std::string& reason);

 private:
  std::mutex mu_;
  v1::SessionState state_ = v1::SESSION_STATE_RUNNING;
  std::string end_reason_;
  std::vector<EventWriter*> subscribers_;
};

// Writes session events to one client, one write in flight, and ends the stream after ENDED.
class RunnerService::EventWriter final : public grpc::ServerWriteReactor<v1::SessionEvent> {
 public:
  explicit EventWriter(std::shared_ptr<Session> session) : session_(std::move(session)) {
    session_->subscribe(this);
  }

  void push(const v1::SessionEvent& event) {
    std::lock_guard lock(mu_);
    if (finished_) return;
    queue_.push_back(event);
    if (event.state() == v1::SESSION_STATE_ENDED) closing_ = true;
    if (!writing_) write_next_locked();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    queue_.pop_front();
    if (!ok) {
      finish_locked(Status(StatusCode::CANCELLED, "event stream broken"));
      return;
    }
    if (!queue_.empty()) write_next_locked();
    else if (closing_) finish_locked(Status::OK);
  }

  void OnCancel() override {
    std::lock_guard lock(mu_);
    if (!writing_) finish_locked(Status(StatusCode::CANCELLED, "client went away"));
    else closing_ = true;  // finished once the in-flight write completes (it fails)
  }

  void OnDone() override {
    session_->unsubscribe(this);
    delete this;
  }

 private:
  void write_next_locked() {
    writing_ = true;
    StartWrite(&queue_.front());
  }
  void finish_locked(const Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  std::shared_ptr<Session> session_;
  std::mutex mu_;
  std::deque<v1::SessionEvent> queue_;
  bool writing_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

void RunnerService::Session::subscribe(EventWriter* w) {
  std::lock_guard lock(mu_);
  subscribers_.push_back(w);
  v1::SessionEvent e;
  e.set_state(state_);
  e.set_reason(end_reason_);
  e.set_at_unix_ms(now_ms());
  w->push(e);  // the current state first, so the client needs no separate query
}

void RunnerService::Session::transition(v1::SessionState state, const std::string& reason) {
  std::lock_guard lock(mu_);
  state_ = state;
  if (state == v1::SESSION_STATE_ENDED) end_reason_ = reason;
  v1::SessionEvent e;
  e.set_state(state);
  e.set_reason(reason);
  e.set_at_unix_ms(now_ms());
  for (auto* w : subscribers_) w->push(e);
}

RunnerService::RunnerService(asio::io_context& io, SessionBackend& backend, RunnerOptions options)
    : io_(io), backend_(backend), options_(std::move(options)) {
  if (options_.hostname.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    options_.hostname = host;
  }
}

RunnerService::~RunnerService() { blocking_.join(); }

std::size_t RunnerService::session_count() const {
  std::lock_guard lock(mu_);
  return sessions_.size();
}

Status RunnerService::authenticate_account(grpc::CallbackServerContext* ctx,
                                           std::string& account) const {
  std::string presented = bearer_token(ctx);
  if (!presented.empty()) {
    // Compare against every account so the time taken does not reveal which one matched.
    bool found = false;
    for (const auto& [name, token] : options_.account_tokens) {
      if (secrets_equal(presented, token) && !found) {
        found = true;
        account = name;
      }
    }
    if (found) return Status::OK;
  }
  spdlog::warn("rejected a call from {}: invalid account token", ctx->peer());
  return Status(StatusCode::UNAUTHENTICATED,
                "the runner rejected the account token: check the account's token file");
}

Status RunnerService::authenticate_session(grpc::CallbackServerContext* ctx,
                                           std::shared_ptr<Session>& session) const {
  std::string id = metadata(ctx, "offload-session");
  std::string presented = bearer_token(ctx);
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(id);
    if (it != sessions_.end()) session = it->second;
  }
  if (session && !presented.empty() && secrets_equal(presented, session->token))
    return Status::OK;
  session.reset();
  spdlog::warn("rejected a call from {} for session {}: unknown session or invalid token",
               ctx->peer(), short_id(id));
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
  response->set_gpu_available(backend_.gpu_available());
  if (request->protocol() != v1::PROTOCOL_VERSION_1) {
    reactor->Finish(Status(StatusCode::FAILED_PRECONDITION,
                           "this runner speaks protocol 1 only; upgrade docker-offload"));
    return reactor;
  }
  spdlog::info("hello from {} (account {}, offloadd {})", ctx->peer(), account,
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
  // Starting an engine takes seconds: never on a gRPC thread.
  asio::post(blocking_, [this, ctx, reactor, response, account, label = request->client_label()] {
    auto session = std::make_shared<Session>();
    session->id = random_hex(16);
    session->token = random_hex(32);
    session->account = account;
    session->client_label = label;
    session->created_ms = now_ms();
    spdlog::info("session {}: creating for account {} ({})", short_id(session->id), account, label);
    try {
      session->engine = backend_.create(session->id);
    } catch (const std::exception& e) {
      spdlog::error("session {}: engine failed to start: {}", short_id(session->id), e.what());
      reactor->Finish(Status(StatusCode::FAILED_PRECONDITION, e.what()));
      return;
    }
    if (ctx->IsCancelled()) {
      // Nobody will ever learn this session's token: do not leave it running.
      spdlog::warn("session {}: client gave up while it was created; destroying it",
                   short_id(session->id));
      try {
        session->engine->destroy("client gave up during creation");
      } catch (const std::exception& e) {
        spdlog::error("session {}: {}", short_id(session->id), e.what());
      }
      reactor->Finish(Status(StatusCode::CANCELLED, "cancelled"));
      return;
    }
    {
      std::lock_guard lock(mu_);
      sessions_[session->id] = session;
    }
    response->set_session_id(session->id);
    response->set_session_token(session->token);
    *response->mutable_info() = session->info(options_);
    spdlog::info("session {}: running (engine {})", short_id(session->id),
                 response->info().engine_version());
    reactor->Finish(Status::OK);
  });
  return reactor;
}

std::shared_ptr<RunnerService::Session> RunnerService::remove_session(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return nullptr;
  auto s = it->second;
  sessions_.erase(it);
  return s;
}

std::vector<std::string> RunnerService::destroy_session(const std::shared_ptr<Session>& session,
                                                        const std::string& reason) {
  session->transition(v1::SESSION_STATE_STOPPING, reason);
  std::vector<std::string> removed;
  std::string failure;
  try {
    removed = session->engine->destroy(reason);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  session->transition(v1::SESSION_STATE_ENDED, reason);
  if (!failure.empty()) {
    spdlog::error("session {}: teardown incomplete: {}", short_id(session->id), failure);
    throw std::runtime_error(failure);
  }
  spdlog::info("session {}: destroyed ({}); removed {} resources", short_id(session->id), reason,
               removed.size());
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
    if (!remove_session(session->id)) return Status::OK;  // a concurrent destroy won
    try {
      for (auto& r : destroy_session(session, reason)) response->add_removed(r);
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
    *response = session->info(options_);
    return Status::OK;
  });
}

grpc::ServerUnaryReactor* RunnerService::ListContainers(grpc::CallbackServerContext* ctx,
                                                        const v1::ListContainersRequest* request,
                                                        v1::ListContainersResponse* response) {
  return with_session(ctx, [response, all = request->all()](const std::shared_ptr<Session>& s) {
    for (auto& c : s->engine->list_containers(all)) *response->add_containers() = c;
    return Status::OK;
  });
}

grpc::ServerUnaryReactor* RunnerService::ListImages(grpc::CallbackServerContext* ctx,
                                                    const v1::ListImagesRequest*,
                                                    v1::ListImagesResponse* response) {
  return with_session(ctx, [response](const std::shared_ptr<Session>& s) {
    for (auto& i : s->engine->list_images()) *response->add_images() = i;
    return Status::OK;
  });
}

grpc::ServerBidiReactor<v1::TunnelFrame, v1::TunnelFrame>* RunnerService::Tunnel(
    grpc::CallbackServerContext* ctx) {
  std::shared_ptr<Session> session;
  if (auto st = authenticate_session(ctx, session); !st.ok()) return new RejectedTunnel(st);

  auto on_open = [this, session](std::shared_ptr<tunnel::ServerTunnelStream> stream,
                                 const v1::TunnelOpen& open) {
    if (open.target() != v1::TunnelOpen::TARGET_ENGINE_API) {
      // The runner dials only what the session owns; anything else is refused, loudly.
      spdlog::warn("session {}: refused tunnel to unknown target {}", short_id(session->id),
                   static_cast<int>(open.target()));
      stream->finish(Status(StatusCode::PERMISSION_DENIED, "tunnel target not allowed"));
      return;
    }
    std::filesystem::path socket_path = session->engine->api_socket();
    asio::co_spawn(
        asio::make_strand(io_),
        [stream, session, socket_path, label = open.label()]() -> asio::awaitable<void> {
          constexpr auto token = asio::as_tuple(asio::use_awaitable);
          asio::local::stream_protocol::socket engine(co_await asio::this_coro::executor);
          auto [ec] = co_await engine.async_connect(socket_path.string(), token);
          if (ec) {
            stream->finish(Status(StatusCode::UNAVAILABLE,
                                  "the session engine is not answering: " + ec.message()));
            co_return;
          }
          ++session->active_tunnels;
          auto result = co_await tunnel::splice(engine, *stream);
          --session->active_tunnels;
          spdlog::debug("session {}: tunnel {} closed: up {} ({} B), down {} ({} B)",
                        short_id(session->id), label, tunnel::to_string(result.up),
                        stream->bytes_out(), tunnel::to_string(result.down), stream->bytes_in());
          if (result.clean())
            stream->finish(Status::OK);
          else
            stream->finish(Status(StatusCode::UNAVAILABLE, "the session engine connection failed"));
        },
        asio::detached);
  };
  return tunnel::ServerTunnelStream::create(ctx, std::move(on_open));
}

grpc::ServerWriteReactor<v1::SessionEvent>* RunnerService::Events(grpc::CallbackServerContext* ctx,
                                                                  const v1::EventsRequest*) {
  std::shared_ptr<Session> session;
  if (auto st = authenticate_session(ctx, session); !st.ok()) return new RejectedEvents(st);
  return new EventWriter(session);
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
      destroy_session(s, reason);
    } catch (const std::exception&) {
      // already logged
    }
  }
}

}  // namespace offload::runner
