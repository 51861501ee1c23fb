#include "offload/runner/data_channel_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <variant>

#include "offload/common/text.h"
#include "offload/runner/metrics.h"
#include "offload/runner/runner_service.h"
#include "offload/runner/session.h"
#include "offload/runner/tunnel_targets.h"
#include "offload/tunnel/data_channel.h"

namespace offload::runner {
namespace asio = boost::asio;
using asio::ip::tcp;
using tunnel::data_channel::TlsStream;
namespace dc = tunnel::data_channel;

namespace {
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
// Idle warm channels one session may hold (offloadd keeps Dialer::kWarmChannels).
constexpr std::size_t kMaxWarmPerSession = 16;

std::string peer_of(const tcp::socket& socket) {
  boost::system::error_code ec;
  auto endpoint = socket.remote_endpoint(ec);
  if (ec) return "?";
  return endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
}
}  // namespace

struct DataChannelServer::Shared : std::enable_shared_from_this<DataChannelServer::Shared> {
  Shared(asio::io_context& io, std::shared_ptr<asio::ssl::context> tls, RunnerService& service,
         DataChannelSettings settings)
      : io(io), tls(std::move(tls)), service(service), settings(settings), acceptor(io) {}

  asio::io_context& io;
  std::shared_ptr<asio::ssl::context> tls;
  RunnerService& service;
  DataChannelSettings settings;
  tcp::acceptor acceptor;
  std::atomic<std::uint64_t> opened{0}, refused{0}, warm_used{0};

  // Warm (idle, authenticated) channels per session id.
  std::map<std::string, std::size_t> warm_counts;  // guarded by mu
  std::shared_ptr<void> hold_warm(const std::string& session_id) {
    std::lock_guard lock(mu);
    auto& n = warm_counts[session_id];
    if (n >= kMaxWarmPerSession) return nullptr;
    ++n;
    // Non-null (it is tested as a bool); the deleter gives the place back.
    return std::shared_ptr<void>(static_cast<void*>(this), [self = shared_from_this(), session_id](void*) {
      std::lock_guard lock(self->mu);
      if (--self->warm_counts[session_id] == 0) self->warm_counts.erase(session_id);
    });
  }

  // Open channels, to close them at stop(): each removes itself when it ends.
  std::mutex mu;
  bool stopped = false;  // guarded by mu
  std::uint64_t next_id = 0;
  std::map<std::uint64_t, std::function<void()>> closers;  // guarded by mu

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(io), kToken);
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        // Out of descriptors and the like: breathe and keep serving.
        spdlog::error("data channel: accept failed: {}", ec.message());
        asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
        co_await pause.async_wait(kToken);
        continue;
      }
      auto executor = socket.get_executor();
      asio::co_spawn(executor, serve(self, std::move(socket)), asio::detached);
    }
  }

  static asio::awaitable<void> refuse(Shared& self, TlsStream& channel, grpc::StatusCode code,
                                      std::string message) {
    ++self.refused;
    v1::DataChannelAccept accept;
    accept.set_code(code);
    accept.set_message(std::move(message));
    co_await dc::write_accept(channel, accept);
  }

  // One accepted connection: the TLS channel and, once dialled, the target.
  struct Connection {
    Connection(tcp::socket socket, asio::ssl::context& tls)
        : channel(std::move(socket), tls, tunnel::TlsSocket::Side::server),
          target(channel.get_executor()) {}
    void close() {
      boost::system::error_code ignored;
      channel.next_layer().close(ignored);
      target.close(ignored);
    }
    TlsStream channel;
    tcp::socket target;
    bool setting_up = true;  // until the accept is written; the deadline closes it then
  };

  static asio::awaitable<void> serve(std::shared_ptr<Shared> self, tcp::socket socket) {
    const std::string peer = peer_of(socket);
    // Small records (a request, an answer) leave at once: with Nagle, an answer written while
    // the previous one is unacknowledged waits for the peer's delayed ACK, 40 ms on Linux.
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto conn = std::make_shared<Connection>(std::move(socket), *self->tls);
    auto executor = conn->channel.get_executor();
    std::uint64_t id;
    {
      std::lock_guard lock(self->mu);
      if (self->stopped) co_return;
      id = self->next_id++;
      // stop() closes it on its strand, whatever it is doing.
      self->closers.emplace(id, [executor, weak = std::weak_ptr<Connection>(conn)] {
        asio::post(executor, [weak] {
          if (auto c = weak.lock()) c->close();
        });
      });
    }
    co_await serve_connection(*self, conn, peer);
    conn->close();
    std::lock_guard lock(self->mu);
    self->closers.erase(id);
  }

  static asio::awaitable<void> serve_connection(Shared& self, std::shared_ptr<Connection> conn,
                                                const std::string& peer) {
    auto& channel = conn->channel;
    auto& target = conn->target;
    // Everything up to the accept runs against one deadline (a warm channel's wait for its
    // target excepted).
    asio::steady_timer deadline(channel.get_executor());
    auto arm_deadline = [&deadline, &self, weak = std::weak_ptr<Connection>(conn)] {
      weak.lock()->setting_up = true;
      deadline.expires_after(self.settings.setup_deadline);
      deadline.async_wait([weak](const boost::system::error_code& ec) {
        if (ec) return;
        if (auto c = weak.lock(); c && c->setting_up) c->close();
      });
    };
    arm_deadline();
    if (auto hec = co_await channel.handshake()) {
      ++self.refused;
      spdlog::info("data channel from {}: TLS handshake failed: {}", peer, hec.message());
      co_return;
    }
    v1::DataChannelOpen open;
    std::string why;
    if (auto ec = co_await dc::read_open(channel, open, why)) {
      ++self.refused;
      spdlog::warn("data channel from {}: dropped: {}", peer, why);
      co_return;
    }
    auto session = self.service.authenticated_session(open.session_id(), open.session_token());
    if (!session) {
      spdlog::warn("data channel from {} for session {}: unknown session or invalid token", peer,
                   short_session_id(open.session_id()));
      co_await refuse(self, channel, grpc::StatusCode::UNAUTHENTICATED,
                      "the runner does not know this session or its token (it may have ended)");
      co_return;
    }
    v1::TunnelOpen want = open.open();
    if (!open.has_open()) {
      // A warm channel: authenticated now, its target comes when the client has a connection
      // for it. It waits without a deadline, but a session holds only so many.
      auto warm = self.hold_warm(open.session_id());
      if (!warm) {
        co_await refuse(self, channel, grpc::StatusCode::RESOURCE_EXHAUSTED,
                        "this session already has " + std::to_string(kMaxWarmPerSession) +
                            " idle data channels");
        co_return;
      }
      if (auto ec = co_await dc::write_accept(channel, {})) co_return;
      conn->setting_up = false;
      deadline.cancel();
      session.reset();  // an idle channel keeps nothing of the session alive
      if (auto ec = co_await dc::read_target(channel, want, why)) {
        if (ec != asio::error::eof && ec != asio::ssl::error::stream_truncated &&
            ec != asio::error::operation_aborted)
          spdlog::info("data channel from {}: warm channel dropped: {}", peer, why);
        co_return;
      }
      warm.reset();
      arm_deadline();
      ++self.warm_used;
      // The session may have ended while the channel waited.
      session = self.service.authenticated_session(open.session_id(), open.session_token());
      if (!session) {
        co_await refuse(self, channel, grpc::StatusCode::UNAUTHENTICATED,
                        "the runner does not know this session any more (it ended)");
        co_return;
      }
    }
    if (want.target() != v1::TunnelOpen::TARGET_PUBLISHED_PORT || want.protocol() != "tcp") {
      spdlog::warn("session {}: refused a data channel to target {} ({}): only published tcp "
                   "ports",
                   short_session_id(session->id()), static_cast<int>(want.target()),
                   want.protocol());
      co_await refuse(self, channel, grpc::StatusCode::PERMISSION_DENIED,
                      "the data channel carries published TCP ports only");
      co_return;
    }
    auto hold = session->try_hold_tunnel(self.service.max_tunnels_per_session());
    if (!hold) {
      co_await refuse(self, channel, grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "this session already has " +
                          std::to_string(self.service.max_tunnels_per_session()) +
                          " tunnels open, the most the runner allows per session; close some "
                          "connections, or ask the operator to raise --max-tunnels-per-session");
      co_return;
    }
    auto resolved = resolve_port_target(
        session->published_ports(), want.host_port(), want.protocol(),
        {session->engine().published_address(), session->engine().network_namespace()});
    if (auto* refusal = std::get_if<grpc::Status>(&resolved)) {
      spdlog::warn("session {}: refused a data channel to {}/tcp: no container publishes it",
                   short_session_id(session->id()), want.host_port());
      co_await refuse(self, channel, refusal->error_code(), refusal->error_message());
      co_return;
    }
    if (auto ec = co_await connect_tcp_target(target, std::get<PortTarget>(resolved))) {
      const bool timed_out = !channel.next_layer().is_open();
      co_await refuse(self, channel, grpc::StatusCode::UNAVAILABLE,
                      "port " + std::to_string(want.host_port()) + " of the session refused: " +
                          (timed_out ? std::string("no answer in time") : ec.message()));
      co_return;
    }
    // Counted before the client hears of it: whoever saw the accept sees the count.
    ++self.opened;
    v1::DataChannelAccept accepted;
    if (auto ec = co_await dc::write_accept(channel, accepted)) co_return;
    conn->setting_up = false;
    deadline.cancel();

    RunnerMetrics::global().tunnel_opened();
    session->traffic().tunnels_total.fetch_add(1, std::memory_order_relaxed);
    session->stream_opened();
    auto result = co_await dc::splice(target, channel);
    session->stream_closed();
    // bytes_up is what the target sent (target → channel): the client's "in".
    RunnerMetrics::global().tunnel_closed(result.bytes_down, result.bytes_up);
    session->traffic().tunnel_bytes_in.fetch_add(result.bytes_down, std::memory_order_relaxed);
    session->traffic().tunnel_bytes_out.fetch_add(result.bytes_up, std::memory_order_relaxed);
    spdlog::debug("session {}: data channel to {}/tcp closed: up {} ({} B), down {} ({} B)",
                  short_session_id(session->id()), want.host_port(),
                  tunnel::to_string(result.down), result.bytes_down, tunnel::to_string(result.up),
                  result.bytes_up);
  }
};

DataChannelServer::DataChannelServer(asio::io_context& io, std::shared_ptr<asio::ssl::context> tls,
                                     RunnerService& service, const tcp::endpoint& where,
                                     DataChannelSettings settings)
    : shared_(std::make_shared<Shared>(io, std::move(tls), service, settings)),
      opened_(shared_->opened),
      refused_(shared_->refused),
      warm_used_(shared_->warm_used) {
  auto& acceptor = shared_->acceptor;
  acceptor.open(where.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(where);
  acceptor.listen(asio::socket_base::max_listen_connections);
  port_ = acceptor.local_endpoint().port();
  asio::co_spawn(acceptor.get_executor(), shared_->accept_loop(), asio::detached);
}

DataChannelServer::~DataChannelServer() { stop(); }

void DataChannelServer::stop() {
  std::map<std::uint64_t, std::function<void()>> closers;
  {
    std::lock_guard lock(shared_->mu);
    if (shared_->stopped) return;
    shared_->stopped = true;
    closers = shared_->closers;
  }
  asio::post(shared_->acceptor.get_executor(), [shared = shared_] {
    boost::system::error_code ignored;
    shared->acceptor.close(ignored);
  });
  for (auto& [id, close] : closers) close();
}

}  // namespace offload::runner
