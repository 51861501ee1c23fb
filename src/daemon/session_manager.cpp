#include "offload/daemon/session_manager.h"
#include "offload/daemon/sync_manager.h"

#include <pwd.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <nlohmann/json.hpp>

#include "offload/common/duration.h"
#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/text.h"
#include "offload/dockerctx/context_store.h"

namespace offload::daemon {
namespace fs = std::filesystem;
using grpc::StatusCode;
using namespace std::chrono;

namespace {

std::string client_label() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const passwd* pw = ::getpwuid(::geteuid());
  return std::string(pw ? pw->pw_name : "?") + "@" + host;
}

ControlError context_error(const std::exception& e) {
  return ControlError(StatusCode::FAILED_PRECONDITION, e.what());
}

}  // namespace

std::string to_json(const PersistedSession& s) {
  nlohmann::ordered_json j;
  j["version"] = 1;
  j["account"] = s.account;
  j["runnerAddress"] = s.endpoint.address;
  j["runnerFingerprint"] = s.endpoint.fingerprint;
  j["accountToken"] = s.endpoint.account_token;
  j["sessionId"] = s.session_id;
  j["sessionToken"] = s.session_token;
  j["previousContext"] = s.previous_context;
  j["startedUnixMs"] = s.started_unix_ms;
  j["localRunnerPid"] = s.runner_pid;
  return j.dump(2) + "\n";
}

PersistedSession parse_persisted_session(std::string_view json, const std::string& source) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object()) throw std::runtime_error(source + " is not a JSON object");
  if (j.value("version", 0) != 1)
    throw std::runtime_error(source + " has an unsupported version");
  PersistedSession s;
  try {
    s.account = j.at("account").get<std::string>();
    s.endpoint.address = j.at("runnerAddress").get<std::string>();
    s.endpoint.fingerprint = j.at("runnerFingerprint").get<std::string>();
    s.endpoint.account_token = j.at("accountToken").get<std::string>();
    s.session_id = j.at("sessionId").get<std::string>();
    s.session_token = j.at("sessionToken").get<std::string>();
    s.previous_context = j.at("previousContext").get<std::string>();
    s.started_unix_ms = j.at("startedUnixMs").get<std::int64_t>();
    s.runner_pid = j.value("localRunnerPid", -1);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(source + ": missing or malformed field (" + e.what() + ")");
  }
  return s;
}

// Reads the runner's session events for as long as the session lives.
class SessionManager::EventsReader final : public grpc::ClientReadReactor<v1::SessionEvent> {
 public:
  EventsReader(SessionManager& manager, RunnerClient& client) : manager_(manager) {
    client.authorize(ctx_);
    client.stub().async()->Events(&ctx_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  // Cancels the stream and waits until gRPC is done with this object.
  ~EventsReader() override {
    cancelled_ = true;
    ctx_.TryCancel();
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return done_; });
  }

  // Waits until the runner has answered with the current state (or the stream failed), so
  // that no event of the session can be missed after start() returns.
  void wait_subscribed(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [this] { return subscribed_ || done_; });
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      if (event_.state() == v1::SESSION_STATE_ENDED) saw_end_ = true;
      manager_.on_session_event(event_);
    }
    {
      std::lock_guard lock(mu_);
      subscribed_ = true;
      cv_.notify_all();
    }
    if (ok) StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    if (!cancelled_ && !saw_end_)
      manager_.on_event_stream_lost(status.error_message().empty() ? "the runner closed the stream"
                                                                   : status.error_message());
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

 private:
  SessionManager& manager_;
  grpc::ClientContext ctx_;
  v1::EventsRequest request_;
  v1::SessionEvent event_;
  std::atomic<bool> cancelled_{false};
  bool saw_end_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  bool subscribed_ = false;
};

SessionManager::SessionManager(StatePaths paths, OffloadConfig config, Providers providers,
                               tunnel::StreamRegistry* streams)
    : paths_(std::move(paths)),
      config_(std::move(config)),
      providers_(std::move(providers)),
      streams_(streams),
      reconnect_thread_([this] { reconnect_loop(); }) {}

SessionManager::~SessionManager() {
  detach();
  {
    std::lock_guard lock(mu_);
    shutting_down_ = true;
  }
  reconnect_cv_.notify_all();
  reconnect_thread_.join();
}

Provider& SessionManager::provider_for(const std::string& account) const {
  auto it = providers_.find(account);
  if (it == providers_.end()) {
    std::string names;
    for (const auto& [name, p] : providers_) names += (names.empty() ? "" : ", ") + name;
    throw ControlError(StatusCode::INVALID_ARGUMENT,
                       "unknown account \"" + account + "\" (accounts: " + names + ")");
  }
  return *it->second;
}

void SessionManager::set_state(v1::DaemonState state, const std::string& ended_reason) {
  {
    std::lock_guard lock(mu_);
    state_ = state;
    ended_reason_ = ended_reason;
  }
  notify();
}

void SessionManager::notify() {
  auto s = status();
  std::vector<Watcher> watchers;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, w] : watchers_) watchers.push_back(w);
  }
  for (auto& w : watchers) w(s);
}

int SessionManager::watch(Watcher watcher) {
  auto s = status();
  watcher(s);
  std::lock_guard lock(mu_);
  int id = next_watcher_++;
  watchers_[id] = std::move(watcher);
  return id;
}

void SessionManager::unwatch(int id) {
  std::lock_guard lock(mu_);
  watchers_.erase(id);
}

void SessionManager::add_notice(std::string notice) {
  std::lock_guard lock(mu_);
  // One of each is enough: a user who ran nothing for a while needs no pile of repeats.
  if (std::find(notices_.begin(), notices_.end(), notice) == notices_.end())
    notices_.push_back(std::move(notice));
}

std::vector<std::string> SessionManager::take_notices() {
  std::lock_guard lock(mu_);
  return std::exchange(notices_, {});
}

const Provider* SessionManager::provider(const std::string& account) const {
  auto it = providers_.find(account);
  return it == providers_.end() ? nullptr : it->second.get();
}

void SessionManager::stream_opened() { ++active_streams_; }
void SessionManager::stream_closed() { --active_streams_; }

void SessionManager::persist() {
  PersistedSession copy;
  {
    std::lock_guard lock(mu_);
    if (!session_) return;
    copy = *session_;
  }
  if (auto ec = write_file_atomic(paths_.state_file, to_json(copy), fs::perms(0600)))
    throw ControlError(StatusCode::INTERNAL,
                       "cannot write " + paths_.state_file.string() + ": " + ec.message());
}

void SessionManager::start_events() {
  std::shared_ptr<RunnerClient> client;
  {
    std::lock_guard lock(mu_);
    client = runner_;
  }
  if (!client) return;
  auto reader = std::make_unique<EventsReader>(*this, *client);
  reader->wait_subscribed(seconds(10));
  std::unique_ptr<EventsReader> old;
  {
    std::lock_guard lock(mu_);
    old = std::move(events_);
    events_ = std::move(reader);
  }
}

void SessionManager::attach_ports(std::shared_ptr<PortForwarder> ports) {
  std::lock_guard lock(mu_);
  ports_ = std::move(ports);
}

void SessionManager::detach() {
  std::unique_ptr<EventsReader> events;
  {
    std::lock_guard lock(mu_);
    events = std::move(events_);
  }
  events.reset();  // waits until no event callback runs any more
  clear_ports(/*session_over=*/false);
  std::lock_guard lock(mu_);
  ports_.reset();
}

void SessionManager::attach_sync(std::shared_ptr<SyncManager> sync) {
  std::lock_guard lock(mu_);
  sync_ = std::move(sync);
}

// The session is over (or no longer ours to follow): its forwarded ports close and its bind
// mounts stop synchronising.
void SessionManager::clear_ports(bool session_over) {
  std::shared_ptr<PortForwarder> ports;
  std::shared_ptr<SyncManager> sync;
  {
    std::lock_guard lock(mu_);
    ports = ports_;
    sync = sync_;
  }
  if (ports) ports->clear();
  if (sync) sync->stop_all(/*forget=*/session_over);
}

void SessionManager::on_session_event(const v1::SessionEvent& event) {
  if (event.state() == v1::SESSION_STATE_RUNNING && event.has_lifecycle()) {
    bool warn = false;
    {
      std::lock_guard lock(mu_);
      warn = event.lifecycle().idle_warning() && !lifecycle_.idle_warning();
      lifecycle_ = event.lifecycle();
    }
    if (warn) {
      auto left = std::chrono::milliseconds(event.lifecycle().idle_deadline_unix_ms() - unix_now_ms());
      std::string notice = "the offload session is idle and ends in about " +
                           format_duration(std::max<std::chrono::milliseconds>(
                               std::chrono::milliseconds(0),
                               std::chrono::duration_cast<std::chrono::seconds>(left))) +
                           " unless something runs; its containers, images and volumes go with it";
      spdlog::warn("{}", notice);
      add_notice(notice);
    }
  }
  if (event.state() == v1::SESSION_STATE_RUNNING && event.ports_snapshot()) {
    std::shared_ptr<PortForwarder> ports;
    std::weak_ptr<RunnerClient> runner;
    {
      std::lock_guard lock(mu_);
      if (state_ != v1::DAEMON_STATE_STARTED && state_ != v1::DAEMON_STATE_STARTING) return;
      ports = ports_;
      runner = runner_;
    }
    if (!ports) return;
    std::vector<v1::PublishedPort> snapshot(event.ports().begin(), event.ports().end());
    ports->apply(snapshot, [runner](std::uint32_t port, const std::string& protocol)
                               -> std::shared_ptr<tunnel::ClientTunnelStream> {
      auto client = runner.lock();
      return client ? client->open_port_tunnel(port, protocol) : nullptr;
    });
    notify();
    return;
  }
  if (event.state() != v1::SESSION_STATE_ENDED) return;
  {
    std::lock_guard lock(mu_);
    if (state_ != v1::DAEMON_STATE_STARTED) return;  // our own stop, or already ended
    runner_.reset();
  }
  spdlog::warn("the session ended on the runner: {}", event.reason());
  add_notice("the offload session ended (" + event.reason() + "); run `docker offload start` "
             "for a new one");
  clear_ports();
  set_state(v1::DAEMON_STATE_ENDED, event.reason());
}

void SessionManager::on_event_stream_lost(const std::string& why) {
  {
    std::lock_guard lock(mu_);
    if (state_ != v1::DAEMON_STATE_STARTED) return;
    // Keep the session and its listeners: the runner keeps it for the client TTL, and we
    // reconnect. New connections meanwhile get a clear error instead of a hang.
    reconnect_client_ = std::move(runner_);
    state_ = v1::DAEMON_STATE_RECONNECTING;
    reconnect_error_ = why;
  }
  spdlog::error("lost the connection to the runner: {}; reconnecting", why);
  reconnect_cv_.notify_all();
  notify();
}

// The reconnect worker: waits for a lost runner, then retries with backoff until the session is
// back, is known to be gone, or the user starts/stops.
void SessionManager::reconnect_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    reconnect_cv_.wait(lock, [this] { return shutting_down_ || reconnect_client_; });
    if (shutting_down_) return;
    auto client = std::move(reconnect_client_);
    auto delay = milliseconds(250);
    while (state_ == v1::DAEMON_STATE_RECONNECTING && !shutting_down_) {
      reconnect_cv_.wait_for(lock, delay, [this] { return shutting_down_; });
      if (shutting_down_ || state_ != v1::DAEMON_STATE_RECONNECTING) break;
      lock.unlock();
      std::string failure;
      bool gone = false;
      v1::SessionInfo info;
      try {
        info = client->get_session(seconds(5));
      } catch (const RunnerError& e) {
        failure = e.what();
        gone = e.code == StatusCode::UNAUTHENTICATED;  // the runner no longer knows the session
      }
      if (failure.empty()) {
        {
          std::lock_guard relock(mu_);
          if (state_ == v1::DAEMON_STATE_RECONNECTING) {
            runner_ = client;
            info_ = info;
            state_ = v1::DAEMON_STATE_STARTED;
            reconnect_error_.clear();
          }
        }
        spdlog::info("reconnected to the runner at {}", client->address());
        start_events();  // its first event re-applies the ports: the reconcile after reconnect
        notify();
      } else if (gone) {
        spdlog::warn("the session is gone from the runner: {}", failure);
        clear_ports();
        std::string reason = "it ended while the runner was unreachable";
        add_notice("the offload session ended (" + reason + "); run `docker offload start` for a new one");
        bool was_reconnecting;
        {
          std::lock_guard relock(mu_);
          was_reconnecting = state_ == v1::DAEMON_STATE_RECONNECTING;
        }
        if (was_reconnecting) set_state(v1::DAEMON_STATE_ENDED, reason);
      } else {
        {
          std::lock_guard relock(mu_);
          reconnect_error_ = failure;
        }
        notify();
        delay = std::min<milliseconds>(delay * 2, seconds(30));
      }
      lock.lock();
    }
  }
}

void SessionManager::recover() {
  std::string text;
  if (auto ec = read_file(paths_.state_file, text)) {
    if (ec != std::errc::no_such_file_or_directory)
      spdlog::error("cannot read {}: {}", paths_.state_file.string(), ec.message());
    return;
  }
  PersistedSession saved;
  try {
    saved = parse_persisted_session(text, paths_.state_file.string());
  } catch (const std::exception& e) {
    // Keep the evidence, start clean: a corrupt file must not keep the daemon down.
    fs::path aside = paths_.state_file;
    aside += ".corrupt-" + std::to_string(unix_now_ms());
    std::error_code ec;
    fs::rename(paths_.state_file, aside, ec);
    spdlog::error("{}; moved it to {}", e.what(), aside.string());
    return;
  }
  {
    std::lock_guard lock(mu_);
    session_ = saved;
    if (saved.runner_pid > 0) {
      ProvisionedRunner p;
      p.endpoint = saved.endpoint;
      p.runner_pid = saved.runner_pid;
      provisioned_ = p;
    }
  }
  auto client = std::make_shared<RunnerClient>(saved.endpoint, streams_);
  client->attach(saved.session_id, saved.session_token);
  try {
    auto info = client->get_session(seconds(10));
    {
      std::lock_guard lock(mu_);
      info_ = info;
      runner_ = client;
      state_ = v1::DAEMON_STATE_STARTED;
    }
    spdlog::info("re-attached to session {} on {}", short_session_id(saved.session_id),
                 saved.endpoint.address);
    start_events();
  } catch (const RunnerError& e) {
    spdlog::error("cannot re-attach to session {}: {}", short_session_id(saved.session_id), e.what());
    set_state(v1::DAEMON_STATE_ENDED, std::string("could not re-attach after a daemon restart: ") +
                                          e.what());
    return;
  }
  notify();
}

v1::StartResponse SessionManager::start(const v1::StartRequest& request,
                                        const std::function<bool()>& cancelled) {
  std::lock_guard ops(ops_mu_);
  std::string account = request.account().empty() ? config_.default_account : request.account();
  Provider& provider = provider_for(account);
  milliseconds timeout =
      request.timeout_ms() > 0 ? milliseconds(request.timeout_ms()) : config_.start_timeout;

  std::string carried_previous;
  {
    std::lock_guard lock(mu_);
    if (state_ == v1::DAEMON_STATE_STARTED) {
      throw ControlError(StatusCode::FAILED_PRECONDITION,
                         "an offload session is already running on account \"" +
                             session_->account + "\"; run `docker offload stop` first");
    }
    if (state_ == v1::DAEMON_STATE_STARTING || state_ == v1::DAEMON_STATE_STOPPING)
      throw ControlError(StatusCode::FAILED_PRECONDITION,
                         "an offload session is being started or stopped; try again in a moment");
    if (session_) carried_previous = session_->previous_context;
  }

  // Read the user's docker config before creating anything: a broken file fails fast.
  ContextStore contexts(paths_.docker_config);
  std::string previous;
  try {
    std::string current = contexts.current_context();
    previous = current == kOffloadContextName
                   ? (carried_previous.empty() ? std::string("default") : carried_previous)
                   : current;
  } catch (const ContextError& e) {
    throw context_error(e);
  }

  // An ended session is replaced: let go of what is left of it first.
  if (session_) clear_session();

  set_state(v1::DAEMON_STATE_STARTING);
  ProvisionedRunner provisioned;
  std::shared_ptr<RunnerClient> client;
  bool session_created = false;
  try {
    auto deadline = steady_clock::now() + timeout;
    auto left = [&] {
      return std::max(milliseconds(1000),
                      duration_cast<milliseconds>(deadline - steady_clock::now()));
    };
    provisioned = provider.provision(timeout);
    if (cancelled()) throw ControlError(StatusCode::CANCELLED, "start cancelled");
    client = std::make_shared<RunnerClient>(provisioned.endpoint, streams_);
    client->hello(left());
    v1::CreateSessionRequest create;
    create.set_client_label(client_label());
    auto idle = request.idle_timeout_ms() > 0 ? milliseconds(request.idle_timeout_ms())
                                              : config_.idle_timeout;
    // 0 in the config means "never idle"; the protocol's 0 means "runner default", so never
    // is asked for as a duration no session reaches.
    create.set_idle_timeout_ms(idle.count() > 0 ? idle.count()
                                                : duration_cast<milliseconds>(hours(24 * 365)).count());
    create.set_client_ttl_ms(config_.client_ttl.count());
    create.set_max_duration_ms(config_.max_session_duration.count());
    auto created = client->create_session(create, left());
    client->attach(created.session_id(), created.session_token());
    session_created = true;
    if (cancelled()) throw ControlError(StatusCode::CANCELLED, "start cancelled");

    PersistedSession s;
    s.account = account;
    s.endpoint = provisioned.endpoint;
    s.session_id = created.session_id();
    s.session_token = created.session_token();
    s.previous_context = previous;
    s.started_unix_ms = unix_now_ms();
    s.runner_pid = provisioned.runner_pid;
    {
      std::lock_guard lock(mu_);
      session_ = s;
      provisioned_ = provisioned;
      info_ = created.info();
    }
    // state.json first: if we die between the two writes, stop still knows what to restore.
    persist();
    contexts.write_context(kOffloadContextName, "unix://" + paths_.docker_socket.string(),
                           "Docker Offload session (account " + account + ")");
    contexts.use_context(kOffloadContextName);
  } catch (const std::exception& e) {
    std::string message = e.what();
    spdlog::error("start failed: {}", message);
    if (session_created) {
      try {
        client->destroy_session("start failed: " + message);
      } catch (const std::exception& d) {
        spdlog::error("cannot destroy the half-started session: {}", d.what());
      }
    }
    provider.release(provisioned);
    {
      std::lock_guard lock(mu_);
      session_.reset();
      provisioned_.reset();
    }
    std::error_code ec;
    fs::remove(paths_.state_file, ec);
    set_state(v1::DAEMON_STATE_STOPPED);
    if (auto* c = dynamic_cast<const ControlError*>(&e)) throw *c;
    if (dynamic_cast<const ContextError*>(&e)) throw ControlError(StatusCode::FAILED_PRECONDITION, message);
    if (auto* r = dynamic_cast<const RunnerError*>(&e)) throw ControlError(r->code, message);
    throw ControlError(StatusCode::FAILED_PRECONDITION, message);
  }
  {
    std::lock_guard lock(mu_);
    runner_ = client;
    state_ = v1::DAEMON_STATE_STARTED;
    ended_reason_.clear();
  }
  start_events();
  notify();
  spdlog::info("session {} started on account {} ({})", short_session_id(session_->session_id), account,
               provisioned.endpoint.address);
  v1::StartResponse response;
  *response.mutable_status() = status();
  response.set_previous_context(previous);
  return response;
}

// Lets go of the session's resources on our side (events, runner process, state file).
void SessionManager::clear_session() {
  std::unique_ptr<EventsReader> events;
  std::optional<ProvisionedRunner> provisioned;
  std::string account;
  {
    std::lock_guard lock(mu_);
    events = std::move(events_);
    provisioned = provisioned_;
    provisioned_.reset();
    runner_.reset();
    if (session_) account = session_->account;
    session_.reset();
    info_.Clear();
    lifecycle_.Clear();
  }
  events.reset();
  clear_ports();
  if (provisioned) {
    auto it = providers_.find(account);
    if (it != providers_.end()) it->second->release(*provisioned);
    else terminate_process(provisioned->runner_pid, seconds(60));
  }
  std::error_code ec;
  fs::remove(paths_.state_file, ec);
}

std::string SessionManager::restore_context(const std::string& previous) {
  ContextStore contexts(paths_.docker_config);
  std::string target = previous.empty() ? "default" : previous;
  try {
    // Only undo our own switch: if the user moved elsewhere meanwhile, leave their choice.
    if (contexts.current_context() != kOffloadContextName) return contexts.current_context();
    if (target != "default" && !contexts.context_exists(target)) {
      spdlog::warn("previous context {} no longer exists; using default", target);
      target = "default";
    }
    contexts.use_context(target);
  } catch (const ContextError& e) {
    throw context_error(e);
  }
  return target;
}

v1::StopResponse SessionManager::stop() {
  std::lock_guard ops(ops_mu_);
  std::optional<PersistedSession> session;
  std::shared_ptr<RunnerClient> client;
  v1::DaemonState was;
  {
    std::lock_guard lock(mu_);
    session = session_;
    client = runner_;
    was = state_;
  }
  v1::StopResponse response;
  response.set_had_session(session.has_value());
  std::string teardown_error;
  if (session) {
    set_state(v1::DAEMON_STATE_STOPPING);
    if (!client &&
        (was == v1::DAEMON_STATE_ENDED || was == v1::DAEMON_STATE_RECONNECTING)) {
      // The session ended or could not be re-attached: still try to destroy it, in case the
      // runner is merely unreachable from here now.
      client = std::make_shared<RunnerClient>(session->endpoint, streams_);
      client->attach(session->session_id, session->session_token);
    }
    try {
      auto destroyed = client->destroy_session("stopped by user");
      spdlog::info("session {} destroyed ({} resources removed)", short_session_id(session->session_id),
                   destroyed.removed_size());
    } catch (const RunnerError& e) {
      if (e.code != StatusCode::UNAUTHENTICATED || was == v1::DAEMON_STATE_STARTED)
        teardown_error = e.what();
      spdlog::warn("destroying the session: {}", e.what());
    }
    clear_session();
  }
  std::string restored;
  try {
    restored = restore_context(session ? session->previous_context : "default");
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

v1::SessionStatus SessionManager::status() const {
  v1::SessionStatus s;
  std::shared_ptr<SyncManager> sync;
  {
    std::lock_guard lock(mu_);
    sync = sync_;
  }
  if (sync) {
    for (const auto& m : sync->status()) {
      auto* out = s.add_mounts();
      out->set_local_path(m.local_path);
      out->set_single_file(m.single_file);
      out->set_state(sync::to_string(m.state));
      out->set_error(m.error);
      out->set_files_sent(m.files_sent);
      out->set_bytes_sent(m.bytes_sent);
      out->set_files_received(m.files_received);
      out->set_bytes_received(m.bytes_received);
      out->set_entries(m.entries);
      for (const auto& c : m.conflicts) out->add_conflicts(c);
      for (const auto& k : m.skipped) out->add_skipped(k.path + " (" + k.reason + ")");
      out->set_last_change_unix_ms(m.last_change_unix_ms);
    }
  }
  std::lock_guard lock(mu_);
  s.set_state(state_);
  s.set_account(session_ ? session_->account : config_.default_account);
  s.set_context(kOffloadContextName);
  s.set_docker_host("unix://" + paths_.docker_socket.string());
  if (session_) {
    s.set_started_unix_ms(session_->started_unix_ms);
    s.set_runner_address(session_->endpoint.address);
  }
  *s.mutable_session() = info_;
  s.set_ended_reason(ended_reason_);
  s.set_gpu(false);
  s.set_active_streams(active_streams_.load());
  if (state_ == v1::DAEMON_STATE_STARTED) *s.mutable_lifecycle() = lifecycle_;
  s.set_idle_timeout_ms(info_.idle_timeout_ms());
  if (state_ == v1::DAEMON_STATE_RECONNECTING) s.set_reconnect_error(reconnect_error_);
  if (ports_ && (state_ == v1::DAEMON_STATE_STARTED || state_ == v1::DAEMON_STATE_STARTING))
    for (auto& p : ports_->ports()) *s.add_ports() = p;
  return s;
}

std::shared_ptr<RunnerClient> SessionManager::runner() const {
  std::lock_guard lock(mu_);
  return runner_;
}

std::string SessionManager::unavailable_message() const {
  std::lock_guard lock(mu_);
  switch (state_) {
    case v1::DAEMON_STATE_STARTING:
      return "the offload session is still starting; try again in a moment";
    case v1::DAEMON_STATE_STOPPING:
      return "the offload session is stopping; run `docker offload start` for a new one";
    case v1::DAEMON_STATE_RECONNECTING:
      return "the offload runner is unreachable (" + reconnect_error_ +
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
  if (runner_) {
    v.set_runner_version(info_.runner_version());
    v.set_engine_version(info_.engine_version());
    v.set_engine_api_version(info_.engine_api_version());
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
