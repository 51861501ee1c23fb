#include "offload/daemon/session.h"

#include <pwd.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>

#include "offload/common/clock.h"
#include "offload/common/duration.h"
#include "offload/common/process.h"
#include "offload/common/text.h"
#include "offload/daemon/control_error.h"
#include "offload/daemon/port_forwarder.h"
#include "offload/daemon/sync_manager.h"

namespace offload::daemon {
namespace asio = boost::asio;
using grpc::StatusCode;
using namespace std::chrono;

std::chrono::milliseconds next_reconnect_delay(std::chrono::milliseconds delay) {
  return std::min<milliseconds>(delay * 2, seconds(30));
}

// Reads the runner's session events for as long as the session is followed.
class Session::EventsReader final : public grpc::ClientReadReactor<v1::SessionEvent> {
 public:
  EventsReader(Session& session, RunnerClient& client) : session_(session) {
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

  // Waits until the runner has answered with the current state (or the stream failed).
  void wait_subscribed(milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [this] { return subscribed_ || done_; });
  }

  void OnReadDone(bool ok) override {
    if (ok) {
      if (event_.state() == v1::SESSION_STATE_ENDED) saw_end_ = true;
      session_.on_event(event_);
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
      session_.on_events_lost(status.error_message().empty() ? "the runner closed the stream"
                                                             : status.error_message());
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

 private:
  Session& session_;
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

// The reconnect watchdog's shared state. Each episode (runner lost → back or gone) is one
// coroutine on the session's executor with a timer of its own; the session only ever reaches it
// through here, and nulls `session` (under `mu`) before it goes away.
struct Session::Watchdog {
  std::mutex mu;
  std::condition_variable idle;
  Session* session = nullptr;
  std::shared_ptr<asio::steady_timer> timer;  // the current episode's
  bool probing = false;                       // a GetSession is in flight
  std::function<void()> cancel_probe;         // ends it early
};

namespace {

std::string client_label() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const passwd* pw = ::getpwuid(::geteuid());
  return std::string(pw ? pw->pw_name : "?") + "@" + host;
}

}  // namespace

Session::Session(PersistedSession record, Provider* provider, SessionWiring wiring,
                 bool committed)
    : record_(std::move(record)),
      provider_(provider),
      wiring_(std::move(wiring)),
      committed_(committed),
      watchdog_(std::make_shared<Watchdog>()) {
  watchdog_->session = this;
}

std::unique_ptr<Session> Session::start(Provider& provider, const StartPlan& plan,
                                        SessionWiring wiring,
                                        const std::function<bool()>& cancelled) {
  PersistedSession record;
  record.account = plan.account;
  record.previous_context = plan.previous_context;
  std::unique_ptr<Session> session(
      new Session(std::move(record), &provider, std::move(wiring), /*committed=*/false));
  try {
    auto deadline = steady_clock::now() + plan.timeout;
    auto left = [&] {
      return std::max(milliseconds(1000),
                      duration_cast<milliseconds>(deadline - steady_clock::now()));
    };
    auto phase = [&](const char* name) {
      if (plan.on_phase) plan.on_phase(name);
    };
    phase("runner");
    session->provisioned_ = provider.provision(plan.timeout);
    session->record_.endpoint = session->provisioned_->endpoint;
    session->record_.runner_pid = session->provisioned_->runner_pid;
    if (cancelled()) throw ControlError(StatusCode::CANCELLED, "start cancelled");
    session->client_ =
        std::make_shared<RunnerClient>(session->record_.endpoint, session->wiring_.streams);
    v1::HelloResponse hello = session->client_->hello(left());
    if (plan.create.gpu() && !hello.gpu_available())
      throw ControlError(
          StatusCode::FAILED_PRECONDITION,
          "runner " + (hello.hostname().empty() ? std::string() : hello.hostname() + " ") + "at " +
              session->record_.endpoint.address + " (account \"" + plan.account +
              "\") cannot give the session a GPU: " +
              (hello.gpu_problem().empty() ? "it has none" : hello.gpu_problem()) +
              "; start without --gpu, or with an account whose runner has NVIDIA GPUs");
    phase("engine");
    v1::CreateSessionRequest create = plan.create;
    create.set_client_label(client_label());
    auto created = session->client_->create_session(create, left());
    session->client_->attach(created.session_id(), created.session_token());
    session->created_ = true;
    session->record_.session_id = created.session_id();
    session->record_.session_token = created.session_token();
    session->record_.started_unix_ms = unix_now_ms();
    session->info_ = created.info();
    if (cancelled()) throw ControlError(StatusCode::CANCELLED, "start cancelled");
  } catch (const std::exception& e) {
    session->abandon(std::string("start failed: ") + e.what());
    throw;  // `session` is destroyed on the way out: that is the rollback
  }
  return session;
}

std::unique_ptr<Session> Session::adopt(const PersistedSession& saved, Provider* provider,
                                        SessionWiring wiring) {
  std::unique_ptr<Session> session(new Session(saved, provider, std::move(wiring),
                                               /*committed=*/true));
  if (saved.runner_pid > 0) {
    ProvisionedRunner p;
    p.endpoint = saved.endpoint;
    p.runner_pid = saved.runner_pid;
    session->provisioned_ = p;
  }
  session->client_ = std::make_shared<RunnerClient>(saved.endpoint, session->wiring_.streams);
  session->client_->attach(saved.session_id, saved.session_token);
  session->created_ = true;
  return session;
}

Session::~Session() {
  stop_watchdog();
  std::unique_ptr<EventsReader> events;
  {
    std::lock_guard lock(mu_);
    events = std::move(events_);
  }
  events.reset();  // waits until no event callback runs any more
  if (committed_) return;
  // The rollback of a start that did not complete.
  if (created_) {
    try {
      client_->destroy_session(rollback_reason_);
    } catch (const std::exception& e) {
      spdlog::error("cannot destroy the half-started session: {}", e.what());
    }
  }
  if (provisioned_) provider_->release(*provisioned_);
}

void Session::commit() { committed_ = true; }

void Session::abandon(std::string why) {
  committed_ = false;
  rollback_reason_ = std::move(why);
}

void Session::reattach(milliseconds timeout) {
  auto info = client_->get_session(timeout);
  // Hello names the runner's data channel; without it forwarded ports still work, over gRPC.
  try {
    client_->hello(timeout);
  } catch (const std::exception& e) {
    spdlog::info("session {}: no Hello from the runner ({}); forwarded ports use gRPC",
                 short_session_id(info.session_id()), e.what());
  }
  std::lock_guard lock(mu_);
  info_ = info;
}

void Session::follow(milliseconds wait) {
  {
    std::lock_guard lock(mu_);
    if (link_ == Link::ending || link_ == Link::over) return;
    link_ = Link::following;
  }
  auto reader = std::make_unique<EventsReader>(*this, *client_);
  if (wait.count() > 0) reader->wait_subscribed(wait);
  std::unique_ptr<EventsReader> old;
  {
    std::lock_guard lock(mu_);
    old = std::move(events_);
    events_ = std::move(reader);
  }
  // `old` already ended (that is why we follow again), so this does not wait.
}

v1::DestroySessionResponse Session::destroy(const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    link_ = Link::ending;  // the ENDED event this causes is ours, not news
  }
  stop_watchdog();
  return client_->destroy_session(reason);
}

void Session::let_go(bool session_over) {
  stop_watchdog();
  std::unique_ptr<EventsReader> events;
  std::shared_ptr<PortForwarder> ports;
  std::shared_ptr<SyncManager> sync;
  {
    std::lock_guard lock(mu_);
    link_ = Link::over;
    events = std::move(events_);
    lifecycle_.Clear();
    // The daemon's forwarder and synchroniser outlive no session of theirs here: the daemon
    // destroys them with its io_context.
    ports = std::move(wiring_.ports);
    sync = std::move(wiring_.sync);
  }
  events.reset();
  if (ports) ports->clear();
  if (sync) sync->stop_all(/*forget=*/session_over);
  if (!session_over || released_) return;
  released_ = true;
  if (!provisioned_) return;
  if (provider_)
    provider_->release(*provisioned_);
  else
    terminate_process(provisioned_->runner_pid, seconds(60));
}

void Session::end_here() {
  std::shared_ptr<PortForwarder> ports;
  std::shared_ptr<SyncManager> sync;
  {
    std::lock_guard lock(mu_);
    ports = wiring_.ports;
    sync = wiring_.sync;
  }
  if (ports) ports->clear();
  if (sync) sync->stop_all(/*forget=*/true);
}

void Session::on_event(const v1::SessionEvent& event) {
  auto& observer = *wiring_.observer;
  if (event.state() == v1::SESSION_STATE_RUNNING) {
    std::string notice;
    {
      std::lock_guard lock(mu_);
      if (link_ != Link::following) return;
      if (event.has_lifecycle()) {
        if (event.lifecycle().idle_warning() && !lifecycle_.idle_warning()) {
          auto left = milliseconds(event.lifecycle().idle_deadline_unix_ms() - unix_now_ms());
          notice = "the offload session is idle and ends in about " +
                   format_duration(std::max<milliseconds>(milliseconds(0), duration_cast<seconds>(left))) +
                   " unless something runs; its containers, images and volumes go with it";
        }
        lifecycle_ = event.lifecycle();
      }
      if (event.ports_snapshot() && wiring_.ports) {
        // Under the lock: let_go() cannot clear the forwarder between the check and the apply.
        std::vector<v1::PublishedPort> snapshot(event.ports().begin(), event.ports().end());
        std::weak_ptr<RunnerClient> runner = client_;
        wiring_.ports->apply(snapshot, [runner](std::uint32_t port, const std::string& protocol)
                                           -> std::shared_ptr<tunnel::ClientTunnelStream> {
          auto client = runner.lock();
          return client ? client->open_port_tunnel(port, protocol) : nullptr;
        }, PortForwarder::DataChannel{
            [runner](unsigned max_version) {
              auto client = runner.lock();
              return client ? client->data_channel(max_version) : nullptr;
            },
            [runner](const std::string& why) {
              if (auto client = runner.lock()) client->data_channel_failed(why);
            }});
      }
    }
    if (!notice.empty()) {
      spdlog::warn("{}", notice);
      observer.session_notice(*this, std::move(notice));
    }
    observer.session_changed(*this);
    return;
  }
  if (event.state() != v1::SESSION_STATE_ENDED) return;
  {
    std::lock_guard lock(mu_);
    if (link_ != Link::following) return;  // our own destroy(), or already over
    link_ = Link::over;
    lifecycle_.Clear();
  }
  spdlog::warn("the session ended on the runner: {}", event.reason());
  end_here();
  observer.session_ended(*this, event.reason());
}

void Session::on_events_lost(const std::string& why) {
  {
    std::lock_guard lock(mu_);
    if (link_ != Link::following) return;
    // Keep the session and its listeners: the runner keeps it for the client TTL, and we
    // reconnect. New connections meanwhile get a clear error instead of a hang.
    link_ = Link::reconnecting;
    reconnect_error_ = why;
  }
  spdlog::error("lost the connection to the runner: {}; reconnecting", why);
  wiring_.observer->session_lost(*this, why);
  start_watchdog();
}

void Session::start_watchdog() {
  asio::co_spawn(wiring_.executor, reconnect(watchdog_, client_), asio::detached);
}

void Session::stop_watchdog() {
  std::shared_ptr<asio::steady_timer> timer;
  std::function<void()> cancel;
  {
    std::lock_guard lock(watchdog_->mu);
    watchdog_->session = nullptr;
    timer = watchdog_->timer;
    cancel = watchdog_->cancel_probe;
  }
  if (timer) asio::post(timer->get_executor(), [timer] { timer->cancel(); });
  // Outside the lock: gRPC may run the call's completion inline, and that takes the lock.
  if (cancel) cancel();
  // A probe in flight completes on a gRPC thread and posts to the executor: wait for that, so
  // nothing of this session is touched after it is gone (bounded by the probe's deadline).
  std::unique_lock lock(watchdog_->mu);
  watchdog_->idle.wait_for(lock, seconds(10), [this] { return !watchdog_->probing; });
}

namespace {

// RunnerClient::async_get_session as an awaitable that resumes on the coroutine's executor. The
// watchdog `dog` knows while the call is in flight and how to cancel it; the completion is posted
// before the call counts as finished, so once stop_watchdog() sees no call in flight nothing of
// it runs on a gRPC thread any more.
template <class Watchdog>
auto async_probe(RunnerClient& client, milliseconds timeout, std::shared_ptr<Watchdog> dog) {
  using Signature = void(std::optional<RunnerError>, v1::SessionInfo);
  return asio::async_initiate<decltype(asio::use_awaitable), Signature>(
      [&client, timeout, dog](auto handler) {
        auto boxed = std::make_shared<decltype(handler)>(std::move(handler));
        {
          std::lock_guard lock(dog->mu);
          dog->probing = true;
        }
        auto cancel = client.async_get_session(
            timeout, [boxed, dog](std::optional<RunnerError> error, v1::SessionInfo info) {
              auto ex = asio::get_associated_executor(*boxed);
              asio::post(ex, [boxed, error = std::move(error), info = std::move(info)]() mutable {
                std::move (*boxed)(std::move(error), std::move(info));
              });
              std::lock_guard lock(dog->mu);
              dog->probing = false;
              dog->cancel_probe = nullptr;
              dog->idle.notify_all();
            });
        std::lock_guard lock(dog->mu);
        if (dog->probing) dog->cancel_probe = std::move(cancel);
      },
      asio::use_awaitable);
}

}  // namespace

// One reconnect episode: waits with backoff, asks the runner for the session, and stops once the
// session is back, is known to be gone, or is let go of.
asio::awaitable<void> Session::reconnect(std::shared_ptr<Watchdog> dog,
                                         std::shared_ptr<RunnerClient> client) {
  auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
  {
    std::lock_guard lock(dog->mu);
    if (!dog->session) co_return;
    dog->timer = timer;
  }
  auto delay = kFirstReconnectDelay;
  for (;;) {
    timer->expires_after(delay);
    auto [ec] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    {
      std::lock_guard lock(dog->mu);
      if (!dog->session) co_return;
    }
    auto [error, info] = co_await async_probe(*client, seconds(5), dog);
    std::lock_guard lock(dog->mu);
    // Under the watchdog's lock: the session cannot go away during the step.
    if (!dog->session || !dog->session->reconnect_step(error, info)) {
      if (dog->timer == timer) dog->timer.reset();
      co_return;
    }
    delay = next_reconnect_delay(delay);
  }
}

bool Session::reconnect_step(const std::optional<RunnerError>& error,
                             const v1::SessionInfo& info) {
  auto& observer = *wiring_.observer;
  if (!error) {
    {
      std::lock_guard lock(mu_);
      if (link_ != Link::reconnecting) return false;
      info_ = info;
      reconnect_error_.clear();
    }
    spdlog::info("reconnected to the runner at {}", client_->address());
    // The owner first, so that a stream that breaks again at once is seen as a new loss.
    observer.session_back(*this);
    // Its first event re-applies the ports: the reconcile after a reconnect.
    follow(milliseconds(0));
    return false;
  }
  if (error->code == StatusCode::UNAUTHENTICATED) {  // the runner no longer knows the session
    {
      std::lock_guard lock(mu_);
      if (link_ != Link::reconnecting) return false;
      link_ = Link::over;
      lifecycle_.Clear();
    }
    spdlog::warn("the session is gone from the runner: {}", error->what());
    end_here();
    observer.session_ended(*this, "it ended while the runner was unreachable");
    return false;
  }
  {
    std::lock_guard lock(mu_);
    if (link_ != Link::reconnecting) return false;
    reconnect_error_ = error->what();
  }
  observer.session_changed(*this);
  return true;
}

v1::SessionInfo Session::info() const {
  std::lock_guard lock(mu_);
  return info_;
}

std::string Session::reconnect_error() const {
  std::lock_guard lock(mu_);
  return reconnect_error_;
}

void Session::describe(v1::SessionStatus& status, bool live) const {
  status.set_started_unix_ms(record_.started_unix_ms);
  status.set_runner_address(record_.endpoint.address);
  std::lock_guard lock(mu_);
  *status.mutable_session() = info_;
  status.set_idle_timeout_ms(info_.idle_timeout_ms());
  if (live) {
    *status.mutable_lifecycle() = lifecycle_;
    if (wiring_.ports)
      for (auto& p : wiring_.ports->ports()) *status.add_ports() = p;
  }
}

}  // namespace offload::daemon
