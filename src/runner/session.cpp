#include "offload/runner/session.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "offload/common/text.h"
#include "offload/common/token.h"
#include "offload/runner/gated_api_socket.h"

namespace offload::runner {

using grpc::Status;
using grpc::StatusCode;

// --- Session ---

Session::Session(std::string id, std::string token, std::string account, std::string client_label,
                 LifecycleLimits limits, const Clock& clock,
                 std::function<void()> on_lifecycle_input, ApiAllowances allow)
    : id_(std::move(id)),
      token_(std::move(token)),
      token_sha256_(sha256_hex(token_)),
      account_(std::move(account)),
      client_label_(std::move(client_label)),
      allow_(std::move(allow)),
      created_ms_(unix_now_ms()),
      clock_(clock),
      lifecycle_(limits, clock.now()),
      on_lifecycle_input_(std::move(on_lifecycle_input)) {
  syncs_.set_on_new_claim([this] { persist(); });
}

Session::Session(const SessionSnapshot& snapshot, const Clock& clock,
                 std::function<void()> on_lifecycle_input)
    : id_(snapshot.id),
      token_sha256_(snapshot.token_sha256),
      account_(snapshot.account),
      client_label_(snapshot.client_label),
      allow_(snapshot.allow),
      created_ms_(snapshot.created_unix_ms),
      clock_(clock),
      // The wall clock says how long the session has existed; a clock set back counts as none.
      lifecycle_(snapshot.limits, clock.now(),
                 std::chrono::milliseconds(std::max<std::int64_t>(
                     0, unix_now_ms() - snapshot.created_unix_ms))),
      on_lifecycle_input_(std::move(on_lifecycle_input)) {
  syncs_.restore_claims(snapshot.mounts);
  syncs_.set_on_new_claim([this] { persist(); });
}

Session::~Session() {
  if (api_socket_) api_socket_->stop();
}

std::filesystem::path Session::api_socket_path() const {
  if (!engine_) return {};
  return engine_->api_socket().parent_path() / "api" / "docker.sock";
}

bool Session::serve_api_socket(boost::asio::io_context& io) {
  std::lock_guard lock(api_socket_mu_);
  if (api_socket_) return true;
  const auto path = api_socket_path();
  if (path.empty()) return false;
  try {
    api_socket_ = GatedApiSocket::start(io, path, weak_from_this());
    spdlog::info("session {}: serving its gated Docker API socket for containers at {}",
                 short_session_id(id_), path.string());
    return true;
  } catch (const std::exception& e) {
    spdlog::warn("session {}: cannot serve the gated Docker API socket: {}", short_session_id(id_),
                 e.what());
    return false;
  }
}

bool Session::token_matches(std::string_view presented) const {
  return !presented.empty() && secrets_equal(sha256_hex(presented), token_sha256_);
}

SessionSnapshot Session::snapshot() const {
  SessionSnapshot s;
  s.id = id_;
  s.token_sha256 = token_sha256_;
  s.account = account_;
  s.client_label = client_label_;
  s.limits = lifecycle_.limits();
  s.allow = allow_;
  s.created_unix_ms = created_ms_;
  s.mounts = syncs_.claims();
  return s;
}

void Session::persist() {
  if (!engine_) return;
  try {
    engine_->save_state(snapshot_json(snapshot()));
  } catch (const std::exception& e) {
    spdlog::error("session {}: cannot record its state, so it would not survive a runner "
                  "restart: {}",
                  short_session_id(id_), e.what());
  }
}

void Session::set_running_containers(std::size_t n) {
  running_containers_ = static_cast<std::int64_t>(n);
  lifecycle_input([&](auto now) { lifecycle_.set_running_containers(n, now); });
}

std::shared_ptr<void> Session::try_hold_tunnel(std::size_t max) {
  // Count first, then check: two tunnels opening at once cannot both take the last place.
  if (++tunnels_ > max && max > 0) {
    --tunnels_;
    return nullptr;
  }
  // The handle keeps the session (and so tunnels_) alive as long as it lives.
  auto self = shared_from_this();
  return std::shared_ptr<void>(static_cast<void*>(this), [self](void*) { --self->tunnels_; });
}

SessionLifecycle::Tick Session::advance() {
  std::lock_guard lock(mu_);
  auto tick = lifecycle_.advance(clock_.now());
  if (tick.warning_started && state_ == v1::SESSION_STATE_RUNNING) publish_locked(event_locked({}));
  return tick;
}

v1::SessionInfo Session::info(const std::string& runner_version,
                              const std::string& runner_hostname) {
  v1::SessionInfo info;
  info.set_session_id(id_);
  info.set_created_unix_ms(created_ms_);
  info.set_runner_version(runner_version);
  info.set_runner_hostname(runner_hostname);
  const auto& limits = lifecycle_.limits();
  info.set_idle_timeout_ms(limits.idle_timeout.count());
  info.set_client_ttl_ms(limits.client_ttl.count());
  info.set_max_duration_ms(limits.max_duration.count());
  info.set_gpu(allow_.gpu);
  std::lock_guard lock(mu_);
  info.set_state(state_);
  if (engine_ && state_ == v1::SESSION_STATE_RUNNING) engine_->describe(info);
  return info;
}

void Session::subscribe(SessionEventWriter* w) {
  std::lock_guard lock(mu_);
  subscribers_.push_back(w);
  w->push(event_locked(end_reason_));  // the current state first: no separate query needed
}

void Session::unsubscribe(SessionEventWriter* w) {
  std::lock_guard lock(mu_);
  std::erase(subscribers_, w);
}

void Session::transition(v1::SessionState state, const std::string& reason) {
  std::lock_guard lock(mu_);
  state_ = state;
  if (state == v1::SESSION_STATE_ENDED) {
    end_reason_ = reason;
    ports_.clear();
  }
  publish_locked(event_locked(reason));
}

void Session::set_ports(const std::vector<v1::PublishedPort>& ports) {
  std::lock_guard lock(mu_);
  if (state_ != v1::SESSION_STATE_RUNNING) return;
  ports_ = ports;
  publish_locked(event_locked({}));
}

std::vector<v1::PublishedPort> Session::published_ports() const {
  std::lock_guard lock(mu_);
  return ports_;
}

v1::SessionEvent Session::event_locked(const std::string& reason) const {
  v1::SessionEvent e;
  e.set_state(state_);
  e.set_reason(reason);
  e.set_at_unix_ms(unix_now_ms());
  e.set_ports_snapshot(true);
  for (const auto& p : ports_) *e.add_ports() = p;
  *e.mutable_lifecycle() = lifecycle_locked();
  return e;
}

v1::Lifecycle Session::lifecycle_locked() const {
  auto now = clock_.now();
  auto view = lifecycle_.view(now);
  // The lifecycle runs on the injected (steady) clock; clients get wall-clock deadlines.
  auto to_unix_ms = [&](SessionLifecycle::time_point t) -> std::int64_t {
    if (t == SessionLifecycle::time_point::max()) return 0;
    return unix_now_ms() + std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count();
  };
  v1::Lifecycle l;
  l.set_active(view.active);
  if (!view.active) l.set_idle_deadline_unix_ms(to_unix_ms(view.idle_deadline));
  l.set_idle_warning(view.warning);
  l.set_max_deadline_unix_ms(to_unix_ms(view.max_deadline));
  l.set_running_containers(running_containers_);
  l.set_active_streams(active_streams_);
  return l;
}

void Session::publish_locked(const v1::SessionEvent& e) {
  for (auto* w : subscribers_) w->push(e);
}

// --- SessionEventWriter ---

SessionEventWriter::SessionEventWriter(std::shared_ptr<Session> session, std::size_t max_queued)
    : session_(std::move(session)), max_queued_(std::max<std::size_t>(max_queued, 1)) {
  session_->subscribe(this);
  session_->client_attached();  // an open Events stream is the client's lease
}

void SessionEventWriter::push(const v1::SessionEvent& event) {
  std::lock_guard lock(mu_);
  if (finished_ || too_slow_) return;
  if (queue_.size() >= max_queued_) {
    // Every event carries the whole state, but a reader this far behind is stuck or hostile:
    // drop it rather than buffer for it forever. Only the write in flight stays (gRPC holds it).
    too_slow_ = true;
    if (writing_) {
      queue_.erase(queue_.begin() + 1, queue_.end());
    } else {
      queue_.clear();
      finish_locked(too_slow_status());
    }
    return;
  }
  queue_.push_back(event);
  if (event.state() == v1::SESSION_STATE_ENDED) closing_ = true;
  if (!writing_) write_next_locked();
}

void SessionEventWriter::OnWriteDone(bool ok) {
  std::lock_guard lock(mu_);
  writing_ = false;
  queue_.pop_front();
  if (!ok) {
    finish_locked(Status(StatusCode::CANCELLED, "event stream broken"));
    return;
  }
  if (too_slow_) {
    finish_locked(too_slow_status());
    return;
  }
  if (!queue_.empty()) write_next_locked();
  else if (closing_) finish_locked(Status::OK);
}

void SessionEventWriter::OnCancel() {
  std::lock_guard lock(mu_);
  if (!writing_) finish_locked(Status(StatusCode::CANCELLED, "client went away"));
  else closing_ = true;  // finished once the in-flight write completes (it fails)
}

void SessionEventWriter::OnDone() {
  session_->unsubscribe(this);
  session_->client_detached();
  delete this;
}

Status SessionEventWriter::too_slow_status() const {
  return Status(StatusCode::RESOURCE_EXHAUSTED,
                "this Events stream fell " + std::to_string(max_queued_) +
                    " events behind and was dropped; read events promptly and reconnect (each "
                    "event carries the whole session state)");
}

void SessionEventWriter::write_next_locked() {
  writing_ = true;
  StartWrite(&queue_.front());
}

void SessionEventWriter::finish_locked(const Status& status) {
  if (finished_) return;
  finished_ = true;
  Finish(status);
}

}  // namespace offload::runner
