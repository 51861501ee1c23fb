#include "offload/daemon/session_manager.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "offload/common/text.h"
#include "offload/daemon/sync_manager.h"
#include "offload/dockerctx/context_store.h"

namespace offload::daemon {
using grpc::StatusCode;
using namespace std::chrono;

SessionManager::SessionManager(StatePaths paths, OffloadConfig config, Providers providers,
                               boost::asio::any_io_executor executor,
                               tunnel::StreamRegistry* streams)
    : paths_(std::move(paths)),
      config_(std::move(config)),
      providers_(std::move(providers)),
      executor_(std::move(executor)),
      streams_(streams),
      state_file_(paths_.state_file),
      contexts_(paths_) {}

SessionManager::~SessionManager() {
  detach();
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mu_);
    session = std::move(session_);
  }
  // Destroyed here, outside mu_: its events and watchdog end first, and they report to us.
}

Provider& SessionManager::provider_for(const std::string& account) const {
  auto it = providers_.find(account);
  if (it == providers_.end()) {
    std::vector<std::string> names;
    for (const auto& [name, p] : providers_) names.push_back(name);
    throw ControlError(StatusCode::INVALID_ARGUMENT,
                       "unknown account \"" + account + "\" (accounts: " + join(names) + ")");
  }
  return *it->second;
}

const Provider* SessionManager::provider(const std::string& account) const {
  auto it = providers_.find(account);
  return it == providers_.end() ? nullptr : it->second.get();
}

SessionWiring SessionManager::wiring() {
  std::lock_guard lock(mu_);
  return SessionWiring{executor_, this, streams_, ports_, sync_};
}

// --- state, notices, watchers ----------------------------------------------------------------

void SessionManager::set_state(v1::DaemonState state, const std::string& ended_reason) {
  {
    std::lock_guard lock(mu_);
    state_ = state;
    ended_reason_ = ended_reason;
  }
  notify();
}

void SessionManager::set_start_phase(const std::string& phase) {
  {
    std::lock_guard lock(mu_);
    start_phase_ = phase;
  }
  notify();
}

void SessionManager::notify() {
  auto s = status();
  std::vector<std::shared_ptr<WatcherSlot>> slots;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, slot] : watchers_) slots.push_back(slot);
  }
  // Called outside mu_ (a watcher may ask for the status), each under its own slot lock: one
  // unwatched since the copy above is skipped, never called on an owner that is gone.
  for (auto& slot : slots) {
    std::lock_guard calling(slot->calling);
    if (slot->active) slot->watcher(s);
  }
}

int SessionManager::watch(Watcher watcher) {
  auto s = status();
  watcher(s);
  std::lock_guard lock(mu_);
  int id = next_watcher_++;
  watchers_[id] = std::make_shared<WatcherSlot>(std::move(watcher));
  return id;
}

void SessionManager::unwatch(int id) {
  std::shared_ptr<WatcherSlot> slot;
  {
    std::lock_guard lock(mu_);
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return;
    slot = std::move(it->second);
    watchers_.erase(it);
  }
  // Waits for a call in progress on another thread; a notify() that copied the slot before the
  // erase above then skips it.
  std::lock_guard calling(slot->calling);
  slot->active = false;
}

std::size_t SessionManager::watcher_count() const {
  std::lock_guard lock(mu_);
  return watchers_.size();
}

void SessionManager::post_notice(std::string notice) {
  std::lock_guard lock(mu_);
  // One of each is enough: a user who ran nothing for a while needs no pile of repeats.
  if (std::find(notices_.begin(), notices_.end(), notice) == notices_.end())
    notices_.push_back(std::move(notice));
}

std::vector<std::string> SessionManager::take_notices() {
  std::lock_guard lock(mu_);
  return std::exchange(notices_, {});
}

// --- what the session reports ------------------------------------------------------------------

bool SessionManager::is_current(const Session& session) const { return session_.get() == &session; }

void SessionManager::session_changed(Session& session) {
  {
    std::lock_guard lock(mu_);
    if (!is_current(session)) return;
  }
  notify();
}

void SessionManager::session_notice(Session& session, std::string notice) {
  {
    std::lock_guard lock(mu_);
    if (!is_current(session)) return;
  }
  post_notice(std::move(notice));
}

void SessionManager::session_lost(Session& session, const std::string&) {
  {
    std::lock_guard lock(mu_);
    if (!is_current(session) || state_ != v1::DAEMON_STATE_STARTED) return;
    state_ = v1::DAEMON_STATE_RECONNECTING;
  }
  notify();
}

void SessionManager::session_back(Session& session) {
  {
    std::lock_guard lock(mu_);
    if (!is_current(session) || state_ != v1::DAEMON_STATE_RECONNECTING) return;
    state_ = v1::DAEMON_STATE_STARTED;
  }
  notify();
}

void SessionManager::session_ended(Session& session, const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    if (!is_current(session)) return;
    // Stopping or starting: the end is our own doing, not news for the user.
    if (state_ != v1::DAEMON_STATE_STARTED && state_ != v1::DAEMON_STATE_RECONNECTING) return;
  }
  post_notice("the offload session ended (" + reason +
              "); run `docker offload start` for a new one");
  set_state(v1::DAEMON_STATE_ENDED, reason);
}

// --- attaching, detaching, recovering ---------------------------------------------------------

void SessionManager::attach_ports(std::shared_ptr<PortForwarder> ports) {
  std::lock_guard lock(mu_);
  ports_ = std::move(ports);
}

void SessionManager::attach_sync(std::shared_ptr<SyncManager> sync) {
  std::lock_guard lock(mu_);
  sync_ = std::move(sync);
}

void SessionManager::detach() {
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mu_);
    session = session_;
  }
  if (session) session->let_go(/*session_over=*/false);  // no event reaches the forwarder now
  std::lock_guard lock(mu_);
  ports_.reset();
}

void SessionManager::recover() {
  auto saved = state_file_.load();
  if (!saved) return;
  auto it = providers_.find(saved->account);
  Provider* provider = it == providers_.end() ? nullptr : it->second.get();
  std::shared_ptr<Session> session = Session::adopt(*saved, provider, wiring());
  {
    std::lock_guard lock(mu_);
    session_ = session;
  }
  try {
    session->reattach(seconds(10));
  } catch (const RunnerError& e) {
    spdlog::error("cannot re-attach to session {}: {}", short_session_id(saved->session_id),
                  e.what());
    set_state(v1::DAEMON_STATE_ENDED,
              std::string("could not re-attach after a daemon restart: ") + e.what());
    return;
  }
  {
    std::lock_guard lock(mu_);
    state_ = v1::DAEMON_STATE_STARTED;
  }
  spdlog::info("re-attached to session {} on {}", short_session_id(saved->session_id),
               saved->endpoint.address);
  session->follow(seconds(10));
  notify();
}

// --- start and stop ---------------------------------------------------------------------------

void SessionManager::end_session() {
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mu_);
    session = std::move(session_);
  }
  if (session) session->let_go(/*session_over=*/true);
  state_file_.remove();
}

v1::StartResponse SessionManager::start(const v1::StartRequest& request,
                                        const std::function<bool()>& cancelled) {
  std::lock_guard ops(ops_mu_);
  StartPlan plan;
  plan.account = request.account().empty() ? config_.default_account : request.account();
  Provider& provider = provider_for(plan.account);
  plan.timeout =
      request.timeout_ms() > 0 ? milliseconds(request.timeout_ms()) : config_.start_timeout;
  auto idle = request.idle_timeout_ms() > 0 ? milliseconds(request.idle_timeout_ms())
                                            : config_.idle_timeout;
  // 0 in the config means "never idle"; the protocol's 0 means "runner default", so never is
  // asked for as a duration no session reaches.
  plan.create.set_idle_timeout_ms(idle.count() > 0
                                      ? idle.count()
                                      : duration_cast<milliseconds>(hours(24 * 365)).count());
  plan.create.set_client_ttl_ms(config_.client_ttl.count());
  plan.create.set_max_duration_ms(config_.max_session_duration.count());
  plan.create.set_gpu(request.gpu());
  plan.on_phase = [this](const std::string& phase) { set_start_phase(phase); };

  std::string carried_previous;
  {
    std::lock_guard lock(mu_);
    if (state_ == v1::DAEMON_STATE_STARTED) {
      throw ControlError(StatusCode::FAILED_PRECONDITION,
                         "an offload session is already running on account \"" +
                             session_->record().account + "\"; run `docker offload stop` first");
    }
    if (state_ == v1::DAEMON_STATE_STARTING || state_ == v1::DAEMON_STATE_STOPPING)
      throw ControlError(StatusCode::FAILED_PRECONDITION,
                         "an offload session is being started or stopped; try again in a moment");
    if (session_) carried_previous = session_->record().previous_context;
  }

  // Reads the user's docker config before anything is created: a broken file fails fast.
  plan.previous_context = contexts_.previous_context(carried_previous);

  // An ended session is replaced: let go of what is left of it first.
  end_session();

  set_state(v1::DAEMON_STATE_STARTING);
  std::unique_ptr<Session> session;
  try {
    session = Session::start(provider, plan, wiring(), cancelled);
    // state.json first: if we die between the two writes, stop still knows what to restore.
    try {
      state_file_.save(session->record());
    } catch (const std::runtime_error& e) {
      throw ControlError(StatusCode::INTERNAL, e.what());
    }
    set_start_phase("context");
    contexts_.switch_to_offload(plan.account);
  } catch (const std::exception& e) {
    std::string message = e.what();
    spdlog::error("start failed: {}", message);
    if (session) session->abandon("start failed: " + message);
    session.reset();  // the rollback
    state_file_.remove();
    {
      std::lock_guard lock(mu_);
      start_phase_.clear();
    }
    set_state(v1::DAEMON_STATE_STOPPED);
    if (auto* c = dynamic_cast<const ControlError*>(&e)) throw *c;
    if (auto* r = dynamic_cast<const RunnerError*>(&e)) throw ControlError(r->code, message);
    throw ControlError(StatusCode::FAILED_PRECONDITION, message);
  }
  session->commit();
  std::shared_ptr<Session> live(std::move(session));
  {
    std::lock_guard lock(mu_);
    session_ = live;
    state_ = v1::DAEMON_STATE_STARTED;
    ended_reason_.clear();
    start_phase_ = "events";  // Start still waits for the runner's first session event
  }
  notify();
  live->follow(seconds(10));
  {
    std::lock_guard lock(mu_);
    start_phase_.clear();
  }
  notify();
  spdlog::info("session {} started on account {} ({})", short_session_id(live->record().session_id),
               plan.account, live->record().endpoint.address);
  v1::StartResponse response;
  *response.mutable_status() = status();
  response.set_previous_context(plan.previous_context);
  return response;
}

v1::StopResponse SessionManager::stop() {
  std::lock_guard ops(ops_mu_);
  std::shared_ptr<Session> session;
  v1::DaemonState was;
  {
    std::lock_guard lock(mu_);
    session = session_;
    was = state_;
  }
  v1::StopResponse response;
  response.set_had_session(session != nullptr);
  std::string teardown_error;
  if (session) {
    set_state(v1::DAEMON_STATE_STOPPING);
    // Also when the session ended or could not be re-attached: the runner may merely be
    // unreachable from here now.
    try {
      auto destroyed = session->destroy("stopped by user");
      spdlog::info("session {} destroyed ({} resources removed)",
                   short_session_id(session->record().session_id), destroyed.removed_size());
    } catch (const RunnerError& e) {
      if (e.code != StatusCode::UNAUTHENTICATED || was == v1::DAEMON_STATE_STARTED)
        teardown_error = e.what();
      spdlog::warn("destroying the session: {}", e.what());
    }
    end_session();
  }
  std::string restored;
  try {
    restored = contexts_.restore(session ? session->record().previous_context : "default");
  } catch (const ControlError&) {
    set_state(v1::DAEMON_STATE_STOPPED);
    throw;
  }
  response.set_restored_context(restored);
  set_state(v1::DAEMON_STATE_STOPPED);
  if (!teardown_error.empty())
    throw ControlError(StatusCode::UNAVAILABLE,
                       "the docker context is restored, but the remote session could not be "
                       "destroyed: " + teardown_error);
  return response;
}

// --- queries ----------------------------------------------------------------------------------

v1::SessionStatus SessionManager::status() const {
  v1::SessionStatus s;
  std::shared_ptr<SyncManager> sync;
  {
    std::lock_guard lock(mu_);
    sync = sync_;
  }
  // Outside mu_: a mount being created asks us for the runner while it holds its own lock.
  if (sync) describe_mounts(sync->status(), s);
  // The runner's image cache changes while the session runs: asked afresh (runner() takes mu_).
  if (auto client = runner()) {
    try {
      auto hello = client->hello(std::chrono::seconds(2));
      if (hello.has_image_cache()) *s.mutable_image_cache() = hello.image_cache();
    } catch (const std::exception& e) {
      spdlog::debug("status: the runner did not describe its image cache: {}", e.what());
    }
  }
  std::lock_guard lock(mu_);
  s.set_state(state_);
  s.set_account(session_ ? session_->record().account : config_.default_account);
  s.set_context(kOffloadContextName);
  s.set_docker_host("unix://" + paths_.docker_socket.string());
  s.set_ended_reason(ended_reason_);
  s.set_start_phase(start_phase_);
  s.set_active_streams(active_streams_.load());
  if (session_) {
    const bool live = state_ == v1::DAEMON_STATE_STARTED;
    session_->describe(s, live);
    s.set_gpu(s.session().gpu());
    if (state_ == v1::DAEMON_STATE_RECONNECTING)
      s.set_reconnect_error(session_->reconnect_error());
  }
  return s;
}

std::shared_ptr<RunnerClient> SessionManager::runner() const {
  std::lock_guard lock(mu_);
  if (state_ != v1::DAEMON_STATE_STARTED || !session_) return nullptr;
  return session_->client();
}

std::string SessionManager::unavailable_message() const {
  std::lock_guard lock(mu_);
  switch (state_) {
    case v1::DAEMON_STATE_STARTING:
      return "the offload session is still starting; try again in a moment";
    case v1::DAEMON_STATE_STOPPING:
      return "the offload session is stopping; run `docker offload start` for a new one";
    case v1::DAEMON_STATE_RECONNECTING:
      return "the offload runner is unreachable (" +
             (session_ ? session_->reconnect_error() : std::string()) +
             "); reconnecting, the session and its containers live on: try again shortly";
    case v1::DAEMON_STATE_ENDED:
      return "the offload session ended (" + ended_reason_ +
             "); run `docker offload start` for a new one, or `docker offload stop` to return "
             "to your previous docker context";
    default:
      return "no offload session: run `docker offload start`, or `docker context use default` "
             "to use another engine";
  }
}

v1::ListContainersResponse SessionManager::list_containers(bool all) {
  auto client = runner();
  if (!client) throw ControlError(StatusCode::FAILED_PRECONDITION, unavailable_message());
  try {
    return client->list_containers(all);
  } catch (const RunnerError& e) {
    throw ControlError(e.code, e.what());
  }
}

v1::ListImagesResponse SessionManager::list_images() {
  auto client = runner();
  if (!client) throw ControlError(StatusCode::FAILED_PRECONDITION, unavailable_message());
  try {
    return client->list_images();
  } catch (const RunnerError& e) {
    throw ControlError(e.code, e.what());
  }
}

v1::VersionResponse SessionManager::version() {
  v1::VersionResponse v;
  v.set_daemon_version(OFFLOAD_VERSION);
  std::lock_guard lock(mu_);
  if (state_ == v1::DAEMON_STATE_STARTED && session_) {
    auto info = session_->info();
    v.set_runner_version(info.runner_version());
    v.set_engine_version(info.engine_version());
    v.set_engine_api_version(info.engine_api_version());
  }
  return v;
}

v1::ListAccountsResponse SessionManager::accounts() const {
  v1::ListAccountsResponse r;
  for (const auto& [name, provider] : providers_) {
    auto* a = r.add_accounts();
    a->set_name(name);
    a->set_type(provider->type());
    a->set_description(provider->description());
    a->set_is_default(name == config_.default_account);
    a->set_address(provider->address());
  }
  return r;
}

}  // namespace offload::daemon
