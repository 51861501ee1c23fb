#include "offload/daemon/port_forwarder.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "offload/tunnel/event_loops.h"
#include "offload/tunnel/pump.h"
#include "port_listener.h"

namespace offload::daemon {
using asio::ip::tcp;

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

namespace {

using Listener = PortForwarder::Listener;

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
      // Each connection on a data plane loop (tunnel/event_loops.h), where the data channel's
      // connection on that loop carries it: one thread end to end, no hand-offs.
      auto [ec, socket] = co_await self->acceptor_.async_accept(
          tunnel::EventLoops::data_plane().next(), kToken);
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
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    // The data channel first: a TLS connection of its own, no gRPC in the way.
    unsigned max_version = 1;
    auto data = self->shared->data_channel(max_version);
    if (auto dialer = data.dialer ? data.dialer(max_version) : nullptr) {
      auto opened = co_await dialer->open_port(self->key.port);
      if (opened.usable()) {
        co_await splice_data_channel(self, std::move(socket), opened, id);
        co_return;
      }
      if (opened.refused) {
        // What the gRPC tunnel would be told too (not published, limits, a dead session).
        spdlog::info("[P{} C{}] refused by the runner: {}", self->tag, id,
                     opened.answer.message());
        co_return;
      }
      if (data.failed) data.failed(opened.error.message());
    }
    auto stream = self->shared->open(self->key.port, "tcp");
    if (!stream) {
      spdlog::info("[P{} C{}] refused: no session to forward to", self->tag, id);
      co_return;
    }
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

  static asio::awaitable<void> splice_data_channel(std::shared_ptr<TcpListener> self,
                                                   tcp::socket socket,
                                                   tunnel::data_channel::Dialer::Opened& opened,
                                                   std::uint64_t id) {
    ++self->open_connections;
    self->shared->opened();
    auto result = co_await tunnel::data_channel::splice(socket, opened);
    if (opened.channel) {
      boost::system::error_code ignored;
      opened.channel->next_layer().close(ignored);
    }
    --self->open_connections;
    self->shared->closed();
    if (!result.refusal.empty()) {
      // ODC2 sends the first bytes ahead of the answer: a refusal comes during the splice.
      spdlog::info("[P{} C{}] refused by the runner: {}", self->tag, id, result.refusal);
    } else if (!result.clean()) {
      spdlog::info("[P{} C{}] closed: up {}, down {}, {} B out, {} B in (data channel)", self->tag,
                   id, tunnel::to_string(result.up), tunnel::to_string(result.down),
                   result.bytes_up, result.bytes_down);
    } else {
      spdlog::debug("[P{} C{}] closed: {} B out, {} B in (data channel)", self->tag, id,
                    result.bytes_up, result.bytes_down);
    }
  }

  tcp::acceptor acceptor_{strand};
};

std::shared_ptr<Listener> make_listener(asio::io_context& io, const ListenerKey& key,
                                        std::shared_ptr<PortForwarder::Shared> shared) {
  if (key.protocol == "udp") return make_udp_listener(io, key, std::move(shared));
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

void PortForwarder::apply(const std::vector<v1::PublishedPort>& snapshot, TunnelOpener opener,
                          DataChannel data) {
  std::lock_guard lock(mu_);
  {
    std::lock_guard shared_lock(shared_->mu);
    shared_->opener = std::move(opener);
    shared_->data = policy_.data_channel ? std::move(data) : DataChannel{};
    shared_->data_version =
        policy_.multiplex_data_channel ? tunnel::data_channel::kLatestVersion : 1;
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
  shared_->data = {};
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
