#include "offload/runner/port_watcher.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <tuple>

#include "offload/runner/inventory.h"

namespace offload::runner {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using stream_protocol = asio::local::stream_protocol;
using namespace std::chrono_literals;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr const char* kListTarget = "/containers/json";
// filters={"type":["container","network"]}, percent-encoded. Network events for `docker network
// connect/disconnect`, which change a running container's networks (and so its address).
constexpr const char* kEventsTarget =
    "/events?filters=%7B%22type%22%3A%5B%22container%22%2C%22network%22%5D%7D";
// An I/O deadline against an engine that accepts but never answers, not a schedule: real time.
constexpr std::chrono::milliseconds kListTimeout = 10s;
constexpr std::uint64_t kMaxListBytes = 64ull << 20;

// The address is part of a port: a container that comes back with another address must reach
// the session, or its tunnels would dial the old one.
auto sort_key(const v1::PublishedPort& p) {
  return std::tuple<const std::string&, const std::string&, std::uint32_t, const std::string&,
                    std::uint32_t, const std::string&, const std::string&>(
      p.container_id(), p.protocol(), p.container_port(), p.host_ip(), p.host_port(),
      p.container_name(), p.container_address());
}

bool same_port(const v1::PublishedPort& a, const v1::PublishedPort& b) {
  return sort_key(a) == sort_key(b);
}

http::request<http::empty_body> get_request(const char* target) {
  http::request<http::empty_body> request{http::verb::get, target, 11};
  request.set(http::field::host, "docker");
  request.set(http::field::user_agent, "offload-runner");
  return request;
}

std::optional<stream_protocol::endpoint> endpoint_of(const std::filesystem::path& socket) {
  try {
    return stream_protocol::endpoint(socket.string());
  } catch (const boost::system::system_error&) {
    return std::nullopt;  // longer than sun_path
  }
}

asio::awaitable<std::error_code> get_whole(stream_protocol::socket& socket,
                                           stream_protocol::endpoint endpoint, const char* target,
                                           http::response<http::string_body>& response) {
  auto [connect_ec] = co_await socket.async_connect(endpoint, kAwait);
  if (connect_ec) co_return connect_ec;
  const auto request = get_request(target);
  auto [write_ec, written] = co_await http::async_write(socket, request, kAwait);
  if (write_ec) co_return write_ec;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxListBytes);
  auto [read_ec, read] = co_await http::async_read(socket, buffer, parser, kAwait);
  if (read_ec) co_return read_ec;
  response = parser.release();
  co_return std::error_code{};
}

// Follows a streaming GET: `on_open` once the 200 head is in, then `on_bytes` with the de-chunked
// body as it arrives. Returns when the stream ends or breaks; end_of_stream for a clean end.
asio::awaitable<std::error_code> follow_stream(stream_protocol::socket& socket,
                                               stream_protocol::endpoint endpoint,
                                               const char* target,
                                               // By value: the frame outlives the caller's
                                               // temporaries.
                                               std::function<void()> on_open,
                                               std::function<std::error_code(std::string_view)>
                                                   on_bytes) {
  auto [connect_ec] = co_await socket.async_connect(endpoint, kAwait);
  if (connect_ec) co_return connect_ec;
  const auto request = get_request(target);
  auto [write_ec, written] = co_await http::async_write(socket, request, kAwait);
  if (write_ec) co_return write_ec;
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);  // the stream has no end
  auto [head_ec, head] = co_await http::async_read_header(socket, buffer, parser, kAwait);
  if (head_ec) co_return head_ec;
  if (parser.get().result() != http::status::ok)
    co_return std::make_error_code(std::errc::protocol_error);
  on_open();
  std::array<char, 16384> chunk;
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    // read_some, not read: an event must be handled when it arrives, not when the buffer fills.
    auto [read_ec, read] = co_await http::async_read_some(socket, buffer, parser, kAwait);
    if (read_ec == http::error::need_buffer) read_ec = {};
    if (read_ec) co_return read_ec;
    const std::size_t got = chunk.size() - parser.get().body().size;
    if (got == 0) continue;
    if (auto bad = on_bytes(std::string_view(chunk.data(), got))) co_return bad;
  }
  co_return make_error_code(http::error::end_of_stream);
}

std::string log_prefix(const std::filesystem::path& api_socket) {
  // The engine's run directory is named after the session: /run/offload-runner/<id8>/docker.sock.
  return "[ports " + api_socket.parent_path().filename().string() + "]";
}

}  // namespace

// --- pure parts ---

bool same_ports(const PortSnapshot& a, const PortSnapshot& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), same_port);
}

PortSnapshot published_ports_from_containers_json(std::string_view engine_json) {
  PortSnapshot ports;
  for (const auto& container : parse_containers(engine_json)) {
    for (const auto& binding : container.ports()) {
      if (binding.host_port() == 0) continue;  // exposed, not published
      v1::PublishedPort port;
      port.set_container_id(container.id());
      if (container.names_size() > 0) port.set_container_name(container.names(0));
      port.set_container_port(binding.container_port());
      port.set_protocol(binding.protocol());
      port.set_host_ip(binding.host_ip());
      port.set_host_port(binding.host_port());
      port.set_container_address(container.address());
      ports.push_back(std::move(port));
    }
  }
  std::sort(ports.begin(), ports.end(),
            [](const auto& a, const auto& b) { return sort_key(a) < sort_key(b); });
  ports.erase(std::unique(ports.begin(), ports.end(), same_port), ports.end());
  return ports;
}

EngineEventSplitter::EngineEventSplitter(std::size_t max_event_bytes)
    : max_event_bytes_(max_event_bytes) {}

void EngineEventSplitter::reset() {
  partial_.clear();
  open_.clear();
  in_string_ = false;
  escaped_ = false;
  failed_.clear();
}

std::error_code EngineEventSplitter::feed(std::string_view bytes,
                                          std::vector<std::string>& events) {
  if (failed_) return failed_;
  for (const char c : bytes) {
    if (open_.empty()) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
      if (c != '{') return failed_ = std::make_error_code(std::errc::bad_message);
      partial_.push_back(c);
      open_.push_back('}');
      continue;
    }
    if (partial_.size() >= max_event_bytes_)
      return failed_ = std::make_error_code(std::errc::message_size);
    partial_.push_back(c);
    if (in_string_) {
      if (escaped_) {
        escaped_ = false;
      } else if (c == '\\') {
        escaped_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string_ = true; break;
      case '{': open_.push_back('}'); break;
      case '[': open_.push_back(']'); break;
      case '}':
      case ']':
        // A closer that does not match would make the object boundary a guess.
        if (c != open_.back()) return failed_ = std::make_error_code(std::errc::bad_message);
        open_.pop_back();
        if (open_.empty()) {
          events.push_back(std::move(partial_));
          partial_.clear();
        }
        break;
      default: break;
    }
  }
  return {};
}

bool event_may_change_ports(std::string_view event_json) {
  const auto event = nlohmann::json::parse(event_json.begin(), event_json.end(), nullptr, false);
  if (event.is_discarded() || !event.is_object()) return true;
  auto text = [&](const char* key) -> std::string {
    auto it = event.find(key);
    return it != event.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const std::string type = text("Type");
  if (type == "network") {
    const std::string action = text("Action");
    return action == "connect" || action == "disconnect";
  }
  if (!type.empty() && type != "container") return false;
  // API < 1.22 had no Action, only status.
  std::string action = text("Action");
  if (action.empty()) action = text("status");
  static constexpr std::array<std::string_view, 9> kPortActions = {
      "start", "restart", "die", "stop", "kill", "destroy", "pause", "unpause", "rename"};
  return std::find(kPortActions.begin(), kPortActions.end(), action) != kPortActions.end();
}

// --- ManualWaitClock ---

ManualWaitClock::ManualWaitClock(time_point start) : now_(start) {}

ManualWaitClock::time_point ManualWaitClock::now() const {
  std::lock_guard lock(mutex_);
  return now_;
}

void ManualWaitClock::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                             time_point deadline) {
  Waiter self{lock.mutex(), &cv, deadline};
  {
    std::lock_guard guard(mutex_);
    if (now_ >= deadline) return;
    waiters_.push_back(&self);
  }
  // advance() takes the caller's mutex before notifying, so between the check above and this
  // wait (the caller's mutex held all along) no wake-up can be lost.
  cv.wait(lock);
  std::lock_guard guard(mutex_);
  std::erase(waiters_, &self);
}

void ManualWaitClock::advance(std::chrono::nanoseconds by) {
  std::vector<Waiter> due;
  {
    std::lock_guard guard(mutex_);
    now_ += std::chrono::duration_cast<time_point::duration>(by);
    for (const Waiter* w : waiters_)
      if (w->deadline <= now_) due.push_back(*w);
  }
  for (const Waiter& w : due) {
    { std::lock_guard sync(*w.mutex); }
    w.cv->notify_all();
  }
}

std::vector<ManualWaitClock::time_point> ManualWaitClock::deadlines() const {
  std::lock_guard guard(mutex_);
  std::vector<time_point> out;
  for (const Waiter* w : waiters_) out.push_back(w->deadline);
  std::sort(out.begin(), out.end());
  return out;
}

// --- PortWatcher ---

// One exchange with the engine on an io_context of its own, which the destructor can stop().
struct PortWatcher::Exchange {
  asio::io_context io;
  stream_protocol::socket socket{io};
  std::optional<std::error_code> outcome;

  void spawn(asio::awaitable<std::error_code> work) {
    asio::co_spawn(io, std::move(work), [this](std::exception_ptr failure, std::error_code ec) {
      outcome = failure ? std::make_error_code(std::errc::io_error) : ec;
    });
  }
};

PortWatcher::PortWatcher(std::filesystem::path api_socket, Callback on_change, WaitClock& clock,
                         std::chrono::milliseconds reconcile_interval,
                         std::chrono::milliseconds settle_delay, RunningCallback on_running)
    : api_socket_(std::move(api_socket)),
      on_change_(std::move(on_change)),
      on_running_(std::move(on_running)),
      clock_(clock),
      reconcile_interval_(reconcile_interval),
      settle_delay_(settle_delay) {
  if (!endpoint_of(api_socket_))
    throw std::invalid_argument("engine socket path too long: " + api_socket_.string());
  list_thread_ = std::thread([this] { list_loop(); });
  follow_thread_ = std::thread([this] { follow_loop(); });
}

PortWatcher::~PortWatcher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    // stop() sticks until restart(), so an exchange registered but not yet running is covered.
    for (Exchange* exchange : exchanges_) exchange->io.stop();
  }
  wake_.notify_all();
  list_thread_.join();
  follow_thread_.join();
}

PortSnapshot PortWatcher::current() const {
  std::lock_guard lock(mutex_);
  return snapshot_;
}

PortWatcher::Stats PortWatcher::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void PortWatcher::request_listing(bool from_event) {
  {
    std::lock_guard lock(mutex_);
    listing_wanted_ = true;
    if (from_event) {
      ++stats_.events;
      last_event_at_ = clock_.now();
      settle_at_ = last_event_at_ + settle_delay_;
      settle_step_ = 0;
    }
  }
  wake_.notify_all();
}

std::error_code PortWatcher::run_exchange(const std::function<void(Exchange&)>& start,
                                          std::chrono::milliseconds timeout) {
  Exchange exchange;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return std::make_error_code(std::errc::operation_canceled);
    exchanges_.push_back(&exchange);
  }
  start(exchange);
  if (timeout.count() > 0) {
    exchange.io.run_for(timeout);
  } else {
    exchange.io.run();
  }
  {
    std::lock_guard lock(mutex_);
    std::erase(exchanges_, &exchange);
    if (stopping_) return std::make_error_code(std::errc::operation_canceled);
  }
  // Whatever is still pending is destroyed with the io_context: nothing of it runs after this.
  if (!exchange.outcome) return std::make_error_code(std::errc::timed_out);
  return *exchange.outcome;
}

std::error_code PortWatcher::list_ports(PortSnapshot& out, std::size_t& running) {
  const auto endpoint = *endpoint_of(api_socket_);
  http::response<http::string_body> response;
  const auto ec = run_exchange(
      [&](Exchange& ex) { ex.spawn(get_whole(ex.socket, endpoint, kListTarget, response)); },
      kListTimeout);
  if (ec) return ec;
  if (response.result() != http::status::ok) {
    spdlog::warn("{} GET {} answered {}", log_prefix(api_socket_), kListTarget,
                 response.result_int());
    return std::make_error_code(std::errc::protocol_error);
  }
  try {
    out = published_ports_from_containers_json(response.body());
    running = parse_containers(response.body()).size();  // the listing shows running ones only
  } catch (const std::runtime_error& e) {
    spdlog::warn("{} {}", log_prefix(api_socket_), e.what());
    return std::make_error_code(std::errc::bad_message);
  }
  return {};
}

std::error_code PortWatcher::follow_events() {
  const auto endpoint = *endpoint_of(api_socket_);
  EngineEventSplitter splitter;
  std::vector<std::string> events;
  auto on_open = [this] {
    {
      std::lock_guard lock(mutex_);
      stats_.following = true;
      ++stats_.stream_connects;
    }
    // Anything may have changed while we were not subscribed.
    request_listing(false);
  };
  auto on_bytes = [&](std::string_view bytes) -> std::error_code {
    auto ec = splitter.feed(bytes, events);
    bool relevant = false;
    for (const auto& event : events) relevant = relevant || event_may_change_ports(event);
    events.clear();
    if (relevant) request_listing(true);
    return ec;
  };
  return run_exchange(
      [&](Exchange& ex) {
        ex.spawn(follow_stream(ex.socket, endpoint, kEventsTarget, on_open, on_bytes));
      },
      std::chrono::milliseconds::zero());
}

void PortWatcher::list_loop() {
  const std::string prefix = log_prefix(api_socket_);
  auto next_reconcile = clock_.now() + reconcile_interval_;
  bool failing = false;
  for (;;) {
    std::uint64_t covers_events = 0;
    {
      std::unique_lock lock(mutex_);
      for (;;) {
        if (stopping_) return;
        const auto now = clock_.now();
        if (listing_wanted_ || now >= settle_at_ || now >= next_reconcile) break;
        clock_.wait_until(lock, wake_, std::min(settle_at_, next_reconcile));
      }
      listing_wanted_ = false;
      if (clock_.now() >= settle_at_) {
        // Follow-ups at 1× and 4× the settle delay after the last event, then none.
        settle_at_ = ++settle_step_ == 1 ? last_event_at_ + 4 * settle_delay_
                                         : WaitClock::time_point::max();
      }
      covers_events = stats_.events;
    }
    PortSnapshot fresh;
    std::size_t running = 0;
    const auto ec = list_ports(fresh, running);
    next_reconcile = clock_.now() + reconcile_interval_;
    bool report = false;
    bool report_running = false;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      if (ec) {
        ++stats_.failed_listings;
      } else {
        ++stats_.listings;
        if (!reported_ || !same_ports(fresh, snapshot_)) {
          snapshot_ = fresh;
          reported_ = true;
          report = true;
        }
        if (running_ != running) {
          running_ = running;
          report_running = true;
        }
      }
    }
    if (ec) {
      // Keep the last snapshot: a hiccup must not close every forwarded port.
      if (!failing) spdlog::warn("{} listing the engine's ports failed: {}", prefix, ec.message());
      failing = true;
      continue;
    }
    if (failing) spdlog::info("{} listing the engine's ports works again", prefix);
    failing = false;
    if (report_running && on_running_) {
      try {
        on_running_(running);
      } catch (const std::exception& e) {
        spdlog::error("{} running-containers subscriber failed: {}", prefix, e.what());
      }
    }
    if (report) {
      spdlog::debug("{} {} published port(s)", prefix, fresh.size());
      try {
        on_change_(fresh);
      } catch (const std::exception& e) {
        // The watcher must outlive a bad subscriber: the next change is reported again.
        spdlog::error("{} port snapshot subscriber failed: {}", prefix, e.what());
      }
    }
    std::lock_guard lock(mutex_);
    stats_.events_applied = std::max(stats_.events_applied, covers_events);
  }
}

void PortWatcher::follow_loop() {
  const std::string prefix = log_prefix(api_socket_);
  auto backoff = kFirstBackoff;
  std::uint64_t failures = 0;
  for (;;) {
    const auto ec = follow_events();
    bool was_following = false;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      was_following = stats_.following;
      stats_.following = false;
    }
    if (was_following) {
      spdlog::info("{} engine event stream ended ({}); reconnecting", prefix, ec.message());
      backoff = kFirstBackoff;
      failures = 0;
    } else if (failures++ == 0) {
      spdlog::warn("{} cannot follow the engine's events: {}; retrying", prefix, ec.message());
    }
    {
      std::unique_lock lock(mutex_);
      const auto deadline = clock_.now() + backoff;
      while (!stopping_ && clock_.now() < deadline) clock_.wait_until(lock, wake_, deadline);
      if (stopping_) return;
    }
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

}  // namespace offload::runner
