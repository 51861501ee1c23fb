#include "offload/runner/data_channel_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <charconv>
#include <condition_variable>
#include <variant>

#include "offload/common/text.h"
#include "offload/runner/metrics.h"
#include "offload/runner/runner_service.h"
#include "offload/runner/session.h"
#include "offload/runner/tunnel_targets.h"
#include "offload/tunnel/data_channel.h"
#include "offload/tunnel/event_loops.h"
#include "offload/tunnel/mux_channel.h"

namespace offload::runner {
namespace asio = boost::asio;
using asio::ip::tcp;
using tunnel::data_channel::TlsStream;
namespace dc = tunnel::data_channel;

namespace {
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
// Idle warm channels one session may hold (offloadd keeps Dialer::kWarmChannels).
constexpr std::size_t kMaxWarmPerSession = 16;
// ODC2 connections one session may hold (offloadd opens Dialer::kMultiplexedConnections).
constexpr std::size_t kMaxMultiplexedPerSession = 8;

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

  // Warm (idle, authenticated) ODC1 channels and ODC2 connections, per session id.
  std::map<std::string, std::size_t> warm_counts;         // guarded by mu
  std::map<std::string, std::size_t> multiplexed_counts;  // guarded by mu
  std::shared_ptr<void> hold_place(std::map<std::string, std::size_t> Shared::*counts,
                                   const std::string& session_id, std::size_t limit) {
    std::lock_guard lock(mu);
    auto& n = (this->*counts)[session_id];
    if (n >= limit) return nullptr;
    ++n;
    // Non-null (it is tested as a bool); the deleter gives the place back.
    return std::shared_ptr<void>(static_cast<void*>(this), [self = shared_from_this(), counts,
                                                            session_id](void*) {
      std::lock_guard lock(self->mu);
      auto& map = (*self).*counts;
      if (--map[session_id] == 0) map.erase(session_id);
    });
  }
  std::shared_ptr<void> hold_warm(const std::string& session_id) {
    return hold_place(&Shared::warm_counts, session_id, kMaxWarmPerSession);
  }

  // Open channels, to close them at stop(): each removes itself when it ends.
  std::mutex mu;
  std::condition_variable all_ended;  // `running` reached 0
  std::size_t running = 0;            // guarded by mu: connection and stream coroutines
  bool stopped = false;  // guarded by mu
  std::uint64_t next_id = 0;
  std::map<std::uint64_t, std::function<void()>> closers;  // guarded by mu

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      // Each connection on a data plane loop of its own thread (tunnel/event_loops.h), with the
      // sockets it dials.
      auto [ec, socket] =
          co_await acceptor.async_accept(tunnel::EventLoops::data_plane().next(), kToken);
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

  struct Refusal {
    grpc::StatusCode code;
    std::string message;
  };
  struct Grant {
    std::shared_ptr<void> hold;  // a place under --max-tunnels-per-session
    PortTarget target;
  };
  // What the session may reach, decided as for the gRPC Tunnel call: published TCP ports only,
  // within the tunnel limit. Nothing is dialled before this says yes.
  static std::variant<Grant, Refusal> grant(Shared& self, const std::shared_ptr<Session>& session,
                                            const v1::TunnelOpen& want) {
    if (want.target() != v1::TunnelOpen::TARGET_PUBLISHED_PORT || want.protocol() != "tcp") {
      spdlog::warn("session {}: refused a data channel to target {} ({}): only published tcp "
                   "ports",
                   short_session_id(session->id()), static_cast<int>(want.target()),
                   want.protocol());
      return Refusal{grpc::StatusCode::PERMISSION_DENIED,
                     "the data channel carries published TCP ports only"};
    }
    auto hold = session->try_hold_tunnel(self.service.max_tunnels_per_session());
    if (!hold) {
      return Refusal{grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "this session already has " +
                         std::to_string(self.service.max_tunnels_per_session()) +
                         " tunnels open, the most the runner allows per session; close some "
                         "connections, or ask the operator to raise --max-tunnels-per-session"};
    }
    auto resolved = resolve_port_target(
        session->published_ports(), want.host_port(), want.protocol(),
        {session->engine().published_address(), session->engine().network_namespace()});
    if (auto* refusal = std::get_if<grpc::Status>(&resolved)) {
      spdlog::warn("session {}: refused a data channel to {}/tcp: no container publishes it",
                   short_session_id(session->id()), want.host_port());
      return Refusal{refusal->error_code(), refusal->error_message()};
    }
    return Grant{std::move(hold), std::get<PortTarget>(resolved)};
  }

  static std::string unreachable(std::uint32_t port, bool timed_out,
                                 const boost::system::error_code& ec) {
    return "port " + std::to_string(port) + " of the session refused: " +
           (timed_out ? std::string("no answer in time") : ec.message());
  }

  // The accounting every forwarded connection gets, whichever wire format carried it.
  static void count_closed(Session& session, std::uint32_t port,
                           const tunnel::ChannelSpliceResult& result) {
    session.stream_closed();
    // bytes_up is what the target sent (target → channel): the client's "in".
    RunnerMetrics::global().tunnel_closed(result.bytes_down, result.bytes_up);
    session.traffic().tunnel_bytes_in.fetch_add(result.bytes_down, std::memory_order_relaxed);
    session.traffic().tunnel_bytes_out.fetch_add(result.bytes_up, std::memory_order_relaxed);
    spdlog::debug("session {}: data channel to {}/tcp closed: up {} ({} B), down {} ({} B)",
                  short_session_id(session.id()), port, tunnel::to_string(result.down),
                  result.bytes_down, tunnel::to_string(result.up), result.bytes_up);
  }
  static void count_opened(Session& session) {
    RunnerMetrics::global().tunnel_opened();
    session.traffic().tunnels_total.fetch_add(1, std::memory_order_relaxed);
    session.stream_opened();
  }

  // ODC2: the connection is authenticated; from here on it carries streams, each checked and
  // dialled as an ODC1 channel is.
  template <class SetUpDone>
  static asio::awaitable<void> serve_multiplexed(Shared& self, std::shared_ptr<Connection> conn,
                                                 const v1::DataChannelOpen& open,
                                                 unsigned version, const std::string& peer,
                                                 SetUpDone set_up_done) {
    auto& channel = conn->channel;
    if (open.has_open()) {
      co_await refuse(self, channel, grpc::StatusCode::INVALID_ARGUMENT,
                      "an ODC2 connection names its targets per stream, not in its open");
      co_return;
    }
    auto place =
        self.hold_place(&Shared::multiplexed_counts, open.session_id(), kMaxMultiplexedPerSession);
    if (!place) {
      co_await refuse(self, channel, grpc::StatusCode::RESOURCE_EXHAUSTED,
                      "this session already has " + std::to_string(kMaxMultiplexedPerSession) +
                          " multiplexed data channels");
      co_return;
    }
    if (auto ec = co_await dc::write_accept(channel, {})) co_return;
    // ODC3: everything after the accept is sealed records, both ways.
    if (version >= 3) {
      if (auto ec = channel.seal_records()) {
        spdlog::warn("data channel from {}: cannot seal records: {}", peer, ec.message());
        co_return;
      }
    }
    set_up_done();
    spdlog::debug("data channel from {}: multiplexed connection (ODC{}) for session {}", peer,
                  version, short_session_id(open.session_id()));
    auto shared = self.shared_from_this();
    auto mux = std::make_shared<tunnel::mux::Connection>(
        channel.get_executor(), tunnel::mux::Connection::Role::server, tunnel::mux::Settings{},
        [shared, id = open.session_id(), token = open.session_token()](
            std::shared_ptr<tunnel::mux::Stream> stream) {
          // Counted from now, not from when the coroutine first runs: the destructor waits.
          auto counted = Running::unless_stopped(shared);
          if (!counted) {
            stream->respond({grpc::StatusCode::UNAVAILABLE, "the runner is stopping"});
            return;
          }
          auto executor = stream->get_executor();
          asio::co_spawn(executor,
                         serve_stream(shared, std::move(stream), id, token, std::move(counted)),
                         asio::detached);
        });
    // The connection's socket lives in `conn`, which the aliasing pointer keeps. Whichever ends
    // first cancels the other; both have ended when this returns.
    using namespace asio::experimental::awaitable_operators;
    co_await (mux->run(std::shared_ptr<tunnel::TlsSocket>(conn, &conn->channel)) ||
              watch_session(self, mux, open.session_id(), open.session_token()));
  }

  // Closes `mux` once its session is gone (ended, or its token no longer valid).
  static asio::awaitable<void> watch_session(Shared& self,
                                             std::shared_ptr<tunnel::mux::Connection> mux,
                                             std::string session_id, std::string token) {
    asio::steady_timer timer(mux->get_executor());
    for (;;) {
      timer.expires_after(self.settings.session_check);
      auto [ec] = co_await timer.async_wait(kToken);
      if (ec) co_return;  // the connection ended first
      if (!self.service.authenticated_session(session_id, token)) {
        spdlog::debug("session {}: its multiplexed data channel closes: the session ended",
                      short_session_id(session_id));
        mux->close();
        co_return;
      }
    }
  }

  // Counts a coroutine in `running` while it lives.
  struct Running {
    // Null once the server stopped: nothing new may start then.
    static std::unique_ptr<Running> unless_stopped(std::shared_ptr<Shared> s) {
      std::lock_guard lock(s->mu);
      if (s->stopped) return nullptr;
      ++s->running;
      return std::unique_ptr<Running>(new Running(std::move(s)));
    }
    ~Running() {
      std::lock_guard lock(self->mu);
      if (--self->running == 0) self->all_ended.notify_all();
    }
    std::shared_ptr<Shared> self;

   private:
    explicit Running(std::shared_ptr<Shared> s) : self(std::move(s)) {}
  };

  static asio::awaitable<void> serve_stream(std::shared_ptr<Shared> self,
                                            std::shared_ptr<tunnel::mux::Stream> stream,
                                            std::string session_id, std::string token,
                                            std::unique_ptr<Running> counted) {
    (void)counted;  // held until the stream ends
    auto refuse_stream = [&](grpc::StatusCode code, std::string message) {
      ++self->refused;
      stream->respond({code, std::move(message)});
    };
    // The session may have ended since the connection was opened.
    auto session = self->service.authenticated_session(session_id, token);
    if (!session) {
      refuse_stream(grpc::StatusCode::UNAUTHENTICATED,
                    "the runner does not know this session any more (it ended)");
      co_return;
    }
    const auto& request = stream->request();
    v1::TunnelOpen want;
    if (request.target == "published-port")
      want.set_target(v1::TunnelOpen::TARGET_PUBLISHED_PORT);  // anything else: refused below
    want.set_protocol(request.protocol);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(request.port.data(), request.port.data() + request.port.size(), port);
    if (request.port.empty() || ec != std::errc{} || end != request.port.data() + request.port.size() ||
        port > 65535) {
      refuse_stream(grpc::StatusCode::INVALID_ARGUMENT,
                    "the stream's \"port\" is not a port number");
      co_return;
    }
    want.set_host_port(port);
    auto granted = grant(*self, session, want);
    if (auto* refusal = std::get_if<Refusal>(&granted)) {
      refuse_stream(refusal->code, std::move(refusal->message));
      co_return;
    }
    auto& grant = std::get<Grant>(granted);
    auto executor = stream->get_executor();
    auto target = std::make_shared<tcp::socket>(executor);
    asio::steady_timer deadline(executor, self->settings.setup_deadline);
    deadline.async_wait([weak = std::weak_ptr<tcp::socket>(target)](const boost::system::error_code& e) {
      if (e) return;
      if (auto t = weak.lock()) {
        boost::system::error_code ignored;
        t->close(ignored);
      }
    });
    auto cec = co_await connect_tcp_target(*target, grant.target);
    const bool timed_out = !target->is_open();
    deadline.cancel();
    if (cec) {
      refuse_stream(grpc::StatusCode::UNAVAILABLE, unreachable(port, timed_out, cec));
      co_return;
    }
    // Counted before the client hears of it: whoever saw the answer sees the count.
    ++self->opened;
    stream->respond({});
    count_opened(*session);
    auto result = co_await stream->splice(*target);
    count_closed(*session, port, result);
  }

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
      ++self->running;
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
    if (--self->running == 0) self->all_ended.notify_all();
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
    unsigned version = 1;
    if (auto ec = co_await dc::read_open(channel, open, why, &version)) {
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
    if (version >= 2) {
      co_await serve_multiplexed(self, conn, open, version, peer, [&] {
        conn->setting_up = false;
        deadline.cancel();
      });
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
    auto granted = grant(self, session, want);
    if (auto* refusal = std::get_if<Refusal>(&granted)) {
      co_await refuse(self, channel, refusal->code, std::move(refusal->message));
      co_return;
    }
    auto& grant = std::get<Grant>(granted);
    if (auto ec = co_await connect_tcp_target(target, grant.target)) {
      const bool timed_out = !channel.next_layer().is_open();
      co_await refuse(self, channel, grpc::StatusCode::UNAVAILABLE,
                      unreachable(want.host_port(), timed_out, ec));
      co_return;
    }
    // Counted before the client hears of it: whoever saw the accept sees the count.
    ++self.opened;
    v1::DataChannelAccept accepted;
    if (auto ec = co_await dc::write_accept(channel, accepted)) co_return;
    conn->setting_up = false;
    deadline.cancel();

    count_opened(*session);
    auto result = co_await dc::splice(target, channel);
    count_closed(*session, want.host_port(), result);
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

std::size_t DataChannelServer::connections_open() const {
  std::lock_guard lock(shared_->mu);
  return shared_->closers.size();
}

DataChannelServer::~DataChannelServer() {
  stop();
  // The loops outlive this server: what still runs there refers to the service, so it must end
  // first. Closed sockets make it end at once; the bound only guards against a bug here.
  std::unique_lock lock(shared_->mu);
  if (!shared_->all_ended.wait_for(lock, std::chrono::seconds(10),
                                   [&] { return shared_->running == 0; }))
    spdlog::error("data channel: {} connections still running at shutdown",
                  shared_->running);
}

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
