#include "offload/daemon/port_forwarder.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <deque>

#include "offload/tunnel/pump.h"

namespace offload::daemon {
namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;
using Strand = asio::strand<asio::io_context::executor_type>;
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

asio::ip::address local_bind_address(const std::string& host_ip, const PortPolicy& policy) {
  boost::system::error_code ec;
  auto address = host_ip.empty() ? asio::ip::address(asio::ip::address_v4::any())
                                 : asio::ip::make_address(host_ip, ec);
  if (ec) address = asio::ip::address_v4::any();
  if (address.is_v6() && address.to_v6().is_v4_mapped())
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  const bool v4 = address.is_v4();
  if (address.is_unspecified() && policy.bind_all_interfaces) return address;
  if (address.is_loopback() && !address.is_unspecified()) return address;
  // Unspecified, or an interface of the remote host that means nothing here.
  if (v4) return asio::ip::address_v4::loopback();
  return asio::ip::address_v6::loopback();
}

std::string format_local_address(const asio::ip::address& address, std::uint32_t port) {
  if (address.is_v6()) return "[" + address.to_string() + "]:" + std::to_string(port);
  return address.to_string() + ":" + std::to_string(port);
}

ListenerPlan plan_listeners(const std::vector<v1::PublishedPort>& snapshot,
                            const PortPolicy& policy) {
  ListenerPlan plan;
  for (const auto& entry : snapshot) {
    if (entry.protocol() != "tcp" && entry.protocol() != "udp") {
      plan.unforwardable.emplace_back(
          entry, (entry.protocol().empty() ? std::string("ports without a protocol")
                                           : entry.protocol() + " ports") +
                     " are not forwarded (only tcp and udp)");
      continue;
    }
    if (entry.host_port() == 0 || entry.host_port() > 65535) {
      plan.unforwardable.emplace_back(
          entry, "the engine reported no valid host port (" + std::to_string(entry.host_port()) +
                     ")");
      continue;
    }
    ListenerKey key{entry.protocol(), local_bind_address(entry.host_ip(), policy),
                    entry.host_port()};
    plan.listeners.emplace(std::move(key), entry);  // the first entry names the listener
  }
  return plan;
}

std::string bind_error_message(const ListenerKey& key, const boost::system::error_code& ec) {
  const std::string where = format_local_address(key.address, key.port);
  if (ec == asio::error::address_in_use) return where + " already in use by another program";
  if (ec == asio::error::access_denied) {
    if (key.port < 1024) return where + " needs root (port below 1024)";
    return where + " cannot be bound: permission denied";
  }
  if (ec == asio::error::address_family_not_supported ||
      (ec == boost::system::errc::address_not_available && key.address.is_v6()))
    return where + " cannot be bound: IPv6 is not available on this machine";
  if (ec == boost::system::errc::address_not_available)
    return where + " cannot be bound: not an address of this machine";
  return where + " cannot be bound: " + ec.message();
}

// What listeners and their connections share with the forwarder, and may outlive it.
struct PortForwarder::Shared {
  Shared(ActivitySink& sink, UdpFlowSettings udp) : activity(&sink), udp(std::move(udp)) {}

  std::shared_ptr<tunnel::ClientTunnelStream> open(std::uint32_t port, const std::string& protocol) {
    TunnelOpener copy;
    {
      std::lock_guard lock(mu);
      copy = opener;
    }
    return copy ? copy(port, protocol) : nullptr;
  }
  void opened() {
    std::lock_guard lock(activity_mu);
    if (activity) activity->connection_opened();
  }
  void closed() {
    std::lock_guard lock(activity_mu);
    if (activity) activity->connection_closed();
  }

  // Guards `opener` and every listener's `wanted`; taken after PortForwarder::mu_, never before.
  std::mutex mu;
  TunnelOpener opener;
  std::mutex activity_mu;
  ActivitySink* activity;
  const UdpFlowSettings udp;
  std::atomic<std::uint64_t> next_id{1};
};

struct PortForwarder::Listener : std::enable_shared_from_this<Listener> {
  Listener(asio::io_context& io, ListenerKey key, std::shared_ptr<Shared> shared)
      : io(io), key(std::move(key)), shared(std::move(shared)), strand(asio::make_strand(io)),
        tag(std::to_string(this->key.port) + "/" + this->key.protocol) {}
  virtual ~Listener() = default;

  // Before start(), from any thread: the socket is not shared with a coroutine yet.
  virtual boost::system::error_code bind() = 0;
  virtual void start() = 0;
  // On the strand, with shared->mu held (so it must not take it).
  virtual void close_on_strand() = 0;

  asio::io_context& io;
  const ListenerKey key;
  const std::shared_ptr<Shared> shared;
  Strand strand;
  const std::string tag;  // "8081/tcp", for log lines
  bool wanted = true;     // guarded by shared->mu
  // Set on the strand once the socket is closed or its loop gave up; never cleared.
  std::atomic<bool> closed{false};
  std::atomic<std::int64_t> open_connections{0};
};

namespace {

using Listener = PortForwarder::Listener;

template <class Socket>
boost::system::error_code open_and_bind(Socket& socket, const ListenerKey& key, bool reuse) {
  boost::system::error_code ec;
  typename Socket::endpoint_type endpoint(key.address, static_cast<unsigned short>(key.port));
  socket.open(endpoint.protocol(), ec);
  if (ec) return ec;
  // IPv4 and IPv6 listeners on one port are separate entries: "::" must not also take 0.0.0.0.
  if (key.address.is_v6()) socket.set_option(asio::ip::v6_only(true), ec);
  // TCP only: lets a listener come back while old connections linger in TIME_WAIT. (For UDP it
  // would let two sockets share the port, the opposite of what we want.)
  if (!ec && reuse) socket.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) socket.bind(endpoint, ec);
  if (ec) {
    boost::system::error_code ignored;
    socket.close(ignored);
  }
  return ec;
}

class TcpListener final : public Listener {
 public:
  using Listener::Listener;

  boost::system::error_code bind() override {
    auto ec = open_and_bind(acceptor_, key, true);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    return ec;
  }

  void start() override {
    auto self = std::static_pointer_cast<TcpListener>(shared_from_this());
    asio::co_spawn(strand, accept_loop(self), asio::detached);
  }

  void close_on_strand() override {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    closed = true;
  }

 private:
  static asio::awaitable<void> accept_loop(std::shared_ptr<TcpListener> self) {
    for (;;) {
      // Each connection on its own strand: connections never wait on each other.
      auto [ec, socket] = co_await self->acceptor_.async_accept(asio::make_strand(self->io), kToken);
      if (ec) {
        if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) break;
        // Out of descriptors and the like: breathe and keep serving.
        spdlog::error("[P{}] accept failed: {}", self->tag, ec.message());
        asio::steady_timer pause(self->strand, std::chrono::milliseconds(100));
        co_await pause.async_wait(kToken);
        continue;
      }
      auto ex = socket.get_executor();
      asio::co_spawn(ex, serve(self, tcp::socket(std::move(socket)), self->shared->next_id++),
                     asio::detached);
    }
    self->closed = true;
  }

  static asio::awaitable<void> serve(std::shared_ptr<TcpListener> self, tcp::socket socket,
                                     std::uint64_t id) {
    auto stream = self->shared->open(self->key.port, "tcp");
    if (!stream) {
      spdlog::info("[P{} C{}] refused: no session to forward to", self->tag, id);
      co_return;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    ++self->open_connections;
    self->shared->opened();
    auto result = co_await tunnel::splice(socket, *stream);
    stream->release();
    grpc::Status status = co_await stream->async_wait_done(asio::use_awaitable);
    --self->open_connections;
    self->shared->closed();
    if (!result.clean() || !status.ok()) {
      spdlog::info("[P{} C{}] closed: up {}, down {}, {} B out, {} B in: {}", self->tag, id,
                   tunnel::to_string(result.up), tunnel::to_string(result.down),
                   stream->bytes_out(), stream->bytes_in(),
                   status.ok() ? "ok" : status.error_message());
    } else {
      spdlog::debug("[P{} C{}] closed: {} B out, {} B in", self->tag, id, stream->bytes_out(),
                    stream->bytes_in());
    }
  }

  tcp::acceptor acceptor_{strand};
};

class UdpListener;

// One client endpoint's datagrams through one tunnel. Lives on its listener's strand. The flow
// ends when it has been idle for the idle timeout, when the runner ends it, or when the listener
// closes; ending means an eof frame to the runner, then the call completes.
class UdpFlow final : public std::enable_shared_from_this<UdpFlow> {
 public:
  UdpFlow(std::shared_ptr<UdpListener> listener, udp::endpoint client,
          std::shared_ptr<tunnel::ClientTunnelStream> stream, std::uint64_t id);

  void start();
  void deliver(const char* data, std::size_t size);
  void shutdown(const char* why);

 private:
  const UdpFlowSettings& settings() const;
  void touch() { last_activity_ = settings().clock.now(); }
  void kick_writer();
  void maybe_release();
  static asio::awaitable<void> write_loop(std::shared_ptr<UdpFlow> self);
  static asio::awaitable<void> read_loop(std::shared_ptr<UdpFlow> self);
  static asio::awaitable<void> watchdog(std::shared_ptr<UdpFlow> self);
  static asio::awaitable<void> finish(std::shared_ptr<UdpFlow> self);

  std::shared_ptr<UdpListener> listener_;
  const udp::endpoint client_;
  const std::shared_ptr<tunnel::ClientTunnelStream> stream_;
  const std::uint64_t id_;
  // Frames stay put in a deque while others are appended: the one being written is safe.
  std::deque<v1::TunnelFrame> queue_;
  bool writing_ = false;
  bool write_finished_ = false;  // eof written, or the stream broke: nothing more to write
  bool ending_ = false;          // no more datagrams are taken
  bool reading_done_ = false;
  bool released_ = false;
  std::uint64_t dropped_ = 0;
  std::chrono::steady_clock::time_point last_activity_;
  std::chrono::steady_clock::time_point ending_since_;
  asio::steady_timer timer_;
};

class UdpListener final : public Listener {
 public:
  using Listener::Listener;

  boost::system::error_code bind() override { return open_and_bind(socket_, key, false); }

  void start() override {
    auto self = std::static_pointer_cast<UdpListener>(shared_from_this());
    asio::co_spawn(strand, receive_loop(self), asio::detached);
  }

  void close_on_strand() override {
    boost::system::error_code ignored;
    socket_.close(ignored);
    closed = true;
    end_flows("listener closed");
  }

  // The flow no longer takes datagrams; a later one from the same client starts a new flow.
  void forget(const udp::endpoint& client, const UdpFlow* flow) {
    auto it = flows_.find(client);
    if (it != flows_.end() && it->second.get() == flow) flows_.erase(it);
  }

  udp::socket& socket() { return socket_; }

 private:
  void end_flows(const char* why) {
    auto flows = std::move(flows_);
    flows_.clear();
    for (auto& [client, flow] : flows) flow->shutdown(why);
  }

  static asio::awaitable<void> receive_loop(std::shared_ptr<UdpListener> self) {
    // Large enough for any datagram; each one is copied into its own frame at its own size.
    std::vector<char> buffer(65536);
    for (;;) {
      udp::endpoint from;
      auto [ec, n] =
          co_await self->socket_.async_receive_from(asio::buffer(buffer), from, kToken);
      if (ec) {
        if (ec == asio::error::operation_aborted || !self->socket_.is_open()) break;
        // Errors queued by ICMP for an earlier reply say nothing about this socket.
        if (ec == asio::error::connection_refused || ec == asio::error::host_unreachable ||
            ec == asio::error::network_unreachable)
          continue;
        spdlog::error("[P{}] receive failed, closing the listener: {}", self->tag, ec.message());
        boost::system::error_code ignored;
        self->socket_.close(ignored);
        break;
      }
      auto it = self->flows_.find(from);
      if (it == self->flows_.end()) {
        if (self->flows_.size() >= self->shared->udp.max_flows) {
          spdlog::debug("[P{}] dropped a datagram from {}: too many flows", self->tag,
                        from.address().to_string());
          continue;
        }
        auto stream = self->shared->open(self->key.port, "udp");
        if (!stream) {
          spdlog::debug("[P{}] dropped a datagram: no session to forward to", self->tag);
          continue;
        }
        auto flow = std::make_shared<UdpFlow>(self, from, std::move(stream),
                                              self->shared->next_id++);
        it = self->flows_.emplace(from, flow).first;
        flow->start();
      }
      it->second->deliver(buffer.data(), n);
    }
    self->closed = true;
    self->end_flows("listener closed");
  }

  udp::socket socket_{strand};
  std::map<udp::endpoint, std::shared_ptr<UdpFlow>> flows_;
};

UdpFlow::UdpFlow(std::shared_ptr<UdpListener> listener, udp::endpoint client,
                 std::shared_ptr<tunnel::ClientTunnelStream> stream, std::uint64_t id)
    : listener_(std::move(listener)),
      client_(std::move(client)),
      stream_(std::move(stream)),
      id_(id),
      timer_(listener_->strand) {}

const UdpFlowSettings& UdpFlow::settings() const { return listener_->shared->udp; }

void UdpFlow::start() {
  touch();
  ++listener_->open_connections;
  listener_->shared->opened();
  spdlog::debug("[P{} C{}] udp flow from {}:{}", listener_->tag, id_,
                client_.address().to_string(), client_.port());
  asio::co_spawn(listener_->strand, read_loop(shared_from_this()), asio::detached);
  asio::co_spawn(listener_->strand, watchdog(shared_from_this()), asio::detached);
}

void UdpFlow::deliver(const char* data, std::size_t size) {
  if (ending_) return;
  touch();
  if (queue_.size() >= settings().max_queued_datagrams) {
    ++dropped_;
    return;
  }
  queue_.emplace_back().set_data(data, size);
  kick_writer();
}

void UdpFlow::shutdown(const char* why) {
  if (ending_) return;
  ending_ = true;
  ending_since_ = settings().clock.now();
  listener_->forget(client_, this);
  spdlog::debug("[P{} C{}] udp flow ending: {}", listener_->tag, id_, why);
  if (write_finished_) {
    maybe_release();
    return;
  }
  queue_.emplace_back().set_eof(true);
  kick_writer();
  // The watchdog now waits for the end of the call instead of for activity.
  timer_.cancel();
}

void UdpFlow::kick_writer() {
  if (writing_ || write_finished_) return;
  writing_ = true;
  asio::co_spawn(listener_->strand, write_loop(shared_from_this()), asio::detached);
}

asio::awaitable<void> UdpFlow::write_loop(std::shared_ptr<UdpFlow> self) {
  while (!self->queue_.empty()) {
    const v1::TunnelFrame& frame = self->queue_.front();
    auto [ok] = co_await self->stream_->async_write(frame, kToken);
    if (!ok) {
      self->write_finished_ = true;
      self->queue_.clear();
      break;
    }
    self->stream_->count_out(frame.data().size());
    const bool eof = frame.eof();
    self->queue_.pop_front();
    if (eof) {
      self->write_finished_ = true;
      break;
    }
  }
  self->writing_ = false;
  self->maybe_release();
}

asio::awaitable<void> UdpFlow::read_loop(std::shared_ptr<UdpFlow> self) {
  v1::TunnelFrame frame;
  bool ok = false;
  for (;;) {
    frame.Clear();
    std::tie(ok) = co_await self->stream_->async_read(frame, kToken);
    if (!ok) break;
    self->stream_->count_in(frame.data().size());
    if (!frame.eof() || !frame.data().empty()) {
      self->touch();
      // A client that went away loses the datagram, as with UDP anywhere.
      co_await self->listener_->socket().async_send_to(asio::buffer(frame.data()), self->client_,
                                                       kToken);
    }
    if (frame.eof()) break;
  }
  self->reading_done_ = true;
  if (!ok) {
    // The call is over: a write in flight fails by itself (and must keep its frame until
    // then), an idle writer has nothing left to do.
    if (!self->writing_) {
      self->write_finished_ = true;
      self->queue_.clear();
    }
    if (!self->ending_) {
      self->ending_ = true;
      self->ending_since_ = self->settings().clock.now();
      self->listener_->forget(self->client_, self.get());
      spdlog::debug("[P{} C{}] udp flow broken", self->listener_->tag, self->id_);
    }
    self->maybe_release();
    co_return;
  }
  self->shutdown("ended by the runner");
  self->maybe_release();
}

asio::awaitable<void> UdpFlow::watchdog(std::shared_ptr<UdpFlow> self) {
  const auto idle = self->settings().idle_timeout;
  while (!self->released_) {
    auto now = self->settings().clock.now();
    auto deadline = (self->ending_ ? self->ending_since_ : self->last_activity_) + idle;
    if (now >= deadline) {
      if (!self->ending_) {
        self->shutdown("idle");
        continue;
      }
      // The runner never ended the call after our eof: stop waiting for it.
      self->stream_->cancel("udp flow did not end after eof");
      co_return;
    }
    self->timer_.expires_after(std::min(deadline - now, self->settings().clock.max_real_wait));
    co_await self->timer_.async_wait(kToken);
  }
}

void UdpFlow::maybe_release() {
  if (released_ || !reading_done_ || !write_finished_ || writing_) return;
  released_ = true;
  timer_.cancel();
  asio::co_spawn(listener_->strand, finish(shared_from_this()), asio::detached);
}

asio::awaitable<void> UdpFlow::finish(std::shared_ptr<UdpFlow> self) {
  self->stream_->release();
  grpc::Status status = co_await self->stream_->async_wait_done(asio::use_awaitable);
  --self->listener_->open_connections;
  self->listener_->shared->closed();
  auto log_level = status.ok() && self->dropped_ == 0 ? spdlog::level::debug : spdlog::level::info;
  spdlog::log(log_level, "[P{} C{}] udp flow closed: {} B out, {} B in, {} datagrams dropped: {}",
              self->listener_->tag, self->id_, self->stream_->bytes_out(),
              self->stream_->bytes_in(), self->dropped_,
              status.ok() ? "ok" : status.error_message());
}

std::shared_ptr<Listener> make_listener(asio::io_context& io, const ListenerKey& key,
                                        std::shared_ptr<PortForwarder::Shared> shared) {
  if (key.protocol == "udp") return std::make_shared<UdpListener>(io, key, std::move(shared));
  return std::make_shared<TcpListener>(io, key, std::move(shared));
}

// Closes on the listener's strand, unless a later apply() wanted it again before that ran: then
// it just keeps serving, and a port that goes away and comes back at once (a container restart)
// never hits its own closing socket.
void retire(const std::shared_ptr<Listener>& listener) {
  {
    std::lock_guard lock(listener->shared->mu);
    listener->wanted = false;
  }
  asio::post(listener->strand, [listener] {
    std::lock_guard lock(listener->shared->mu);
    if (!listener->wanted && !listener->closed) {
      listener->close_on_strand();
      spdlog::info("[P{}] stopped listening on {}", listener->tag,
                   format_local_address(listener->key.address, listener->key.port));
    }
  });
}

}  // namespace

PortForwarder::PortForwarder(asio::io_context& io, PortPolicy policy, ActivitySink& activity,
                             UdpFlowSettings udp)
    : io_(io), policy_(policy), shared_(std::make_shared<Shared>(activity, std::move(udp))) {}

PortForwarder::~PortForwarder() {
  clear();
  std::lock_guard lock(shared_->activity_mu);
  shared_->activity = nullptr;
}

void PortForwarder::apply(const std::vector<v1::PublishedPort>& snapshot, TunnelOpener opener) {
  std::lock_guard lock(mu_);
  {
    std::lock_guard shared_lock(shared_->mu);
    shared_->opener = std::move(opener);
  }
  snapshot_ = snapshot;
  apply_locked();
}

void PortForwarder::reconcile() {
  std::lock_guard lock(mu_);
  apply_locked();
}

void PortForwarder::apply_locked() {
  plan_ = plan_listeners(snapshot_, policy_);
  for (auto it = listeners_.begin(); it != listeners_.end();) {
    if (it->second->closed)
      it = listeners_.erase(it);
    else
      ++it;
  }

  std::map<ListenerKey, std::string> failures;
  for (const auto& [key, entry] : plan_.listeners) {
    if (auto it = listeners_.find(key); it != listeners_.end()) {
      std::lock_guard shared_lock(shared_->mu);
      // Decided under the lock the pending close takes, so the close sees the revival.
      if (!it->second->closed) {
        it->second->wanted = true;
        continue;
      }
      listeners_.erase(it);
    }
    auto listener = make_listener(io_, key, shared_);
    if (auto ec = listener->bind()) {
      auto message = bind_error_message(key, ec);
      // Logged once per failure, not on every retry.
      if (auto old = failures_.find(key); old == failures_.end() || old->second != message)
        spdlog::warn("cannot forward {} of container {}: {}", listener->tag,
                     entry.container_name().empty() ? entry.container_id()
                                                    : entry.container_name(),
                     message);
      failures.emplace(key, std::move(message));
      continue;
    }
    listener->start();
    spdlog::info("[P{}] listening on {} for {}:{}", listener->tag,
                 format_local_address(key.address, key.port),
                 entry.container_name().empty() ? entry.container_id() : entry.container_name(),
                 entry.container_port());
    listeners_.emplace(key, std::move(listener));
  }
  failures_ = std::move(failures);

  for (auto& [key, listener] : listeners_) {
    if (plan_.listeners.count(key)) continue;
    bool wanted;
    {
      std::lock_guard shared_lock(shared_->mu);
      wanted = listener->wanted;
    }
    if (wanted) retire(listener);
  }
}

void PortForwarder::clear() {
  std::lock_guard lock(mu_);
  snapshot_.clear();
  plan_ = {};
  failures_.clear();
  for (auto& [key, listener] : listeners_) retire(listener);
  std::lock_guard shared_lock(shared_->mu);
  // Drops what the opener holds (the runner client); open connections keep their streams.
  shared_->opener = nullptr;
}

std::vector<v1::ForwardedPort> PortForwarder::ports() const {
  std::lock_guard lock(mu_);
  std::vector<v1::ForwardedPort> out;
  auto describe = [&out](const v1::PublishedPort& entry, const std::string& local_address) {
    auto& fp = out.emplace_back();
    fp.set_local_address(local_address);
    fp.set_protocol(entry.protocol());
    fp.set_container_id(entry.container_id());
    fp.set_container_name(entry.container_name());
    fp.set_container_port(entry.container_port());
    fp.set_host_port(entry.host_port());
    return &fp;
  };
  for (const auto& [key, entry] : plan_.listeners) {
    auto* fp = describe(entry, format_local_address(key.address, key.port));
    if (auto f = failures_.find(key); f != failures_.end()) {
      fp->set_error(f->second);
      continue;
    }
    auto l = listeners_.find(key);
    if (l == listeners_.end() || l->second->closed) {
      fp->set_error(format_local_address(key.address, key.port) +
                    " stopped listening; retrying");
      continue;
    }
    fp->set_listening(true);
    fp->set_open_connections(l->second->open_connections.load());
  }
  for (const auto& [entry, reason] : plan_.unforwardable) {
    auto* fp = describe(entry, format_local_address(local_bind_address(entry.host_ip(), policy_),
                                                    entry.host_port()));
    fp->set_error(reason);
  }
  return out;
}

}  // namespace offload::daemon
