#include "offload/runner/tunnel_targets.h"

#include "offload/runner/api_gate.h"
#include "offload/runner/gated_api_socket.h"
#include "offload/runner/inventory.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/strand.hpp>
#include <optional>

#include "offload/common/text.h"
#include "offload/runner/metrics.h"
#include "offload/runner/netns_socket.h"
#include "offload/runner/session.h"
#include "offload/tunnel/grpc_streams.h"
#include "offload/tunnel/pump.h"

namespace offload::runner {
namespace asio = boost::asio;
using grpc::Status;
using grpc::StatusCode;

namespace {

using StreamPtr = std::shared_ptr<tunnel::ServerTunnelStream>;
using SessionPtr = std::shared_ptr<Session>;
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

// The binding a tunnel to the port uses: one on an address the engine's own network answers on.
// Loopback only when no container publishes it more widely.
const v1::PublishedPort* published_binding(const std::vector<v1::PublishedPort>& published,
                                           std::uint32_t host_port, const std::string& protocol) {
  const v1::PublishedPort* found = nullptr;
  for (const auto& p : published) {
    if (p.host_port() != host_port || p.protocol() != protocol) continue;
    boost::system::error_code ec;
    auto ip = asio::ip::make_address(p.host_ip(), ec);
    if (ec || !ip.is_loopback()) return &p;
    found = &p;
  }
  return found;
}

// A tunnel that reached its target: open while this lives; what it moved is counted as it ends
// (the runner's metrics and the session's own traffic, for `offload-runner sessions inspect`).
class TunnelCount {
 public:
  TunnelCount(tunnel::ServerTunnelStream& stream, Session& session)
      : stream_(stream), session_(session) {
    RunnerMetrics::global().tunnel_opened();
    session_.traffic().tunnels_total.fetch_add(1, std::memory_order_relaxed);
  }
  ~TunnelCount() {
    const std::uint64_t in = stream_.bytes_in(), out = stream_.bytes_out();
    RunnerMetrics::global().tunnel_closed(in, out);
    session_.traffic().tunnel_bytes_in.fetch_add(in, std::memory_order_relaxed);
    session_.traffic().tunnel_bytes_out.fetch_add(out, std::memory_order_relaxed);
  }
  TunnelCount(const TunnelCount&) = delete;
  TunnelCount& operator=(const TunnelCount&) = delete;

 private:
  tunnel::ServerTunnelStream& stream_;
  Session& session_;
};

void finish_splice(tunnel::ServerTunnelStream& stream, const tunnel::SpliceResult& result,
                   const char* what) {
  if (result.clean())
    stream.finish(Status::OK);
  else
    stream.finish(Status(StatusCode::UNAVAILABLE, std::string(what) + " connection failed"));
}

asio::awaitable<void> tunnel_engine_api(StreamPtr stream, SessionPtr session, std::string label,
                                        asio::io_context& io) {
  asio::local::stream_protocol::socket engine(co_await asio::this_coro::executor);
  auto [ec] = co_await engine.async_connect(session->engine().api_socket().string(), kToken);
  if (ec) {
    stream->finish(Status(StatusCode::UNAVAILABLE,
                          "the session engine is not answering: " + ec.message()));
    co_return;
  }
  session->stream_opened();
  // The runner is the trust boundary: every request is judged here, whoever the client is.
  ApiGate gate(engine, session_api_policy(session, io), "session " + short_session_id(session->id()));
  TunnelCount counted(*stream, *session);
  auto result = co_await tunnel::splice(engine, *stream, gate.responses(), gate.requests());
  session->stream_closed();
  spdlog::debug("session {}: tunnel {} closed: up {} ({} B), down {} ({} B)",
                short_session_id(session->id()), label, tunnel::to_string(result.up),
                stream->bytes_out(), tunnel::to_string(result.down), stream->bytes_in());
  finish_splice(*stream, result, "the session engine");
}

// Opens `socket` for `target`, inside the target's network namespace when it has one.
template <class Socket>
boost::system::error_code open_for(Socket& socket, const PortTarget& target, int type) {
  boost::system::error_code ec;
  auto protocol =
      target.address.is_v4() ? Socket::protocol_type::v4() : Socket::protocol_type::v6();
  if (target.netns.empty()) {
    socket.open(protocol, ec);
    return ec;
  }
  std::error_code sec;
  int fd = socket_in_network_namespace(target.netns, target.address.is_v4() ? AF_INET : AF_INET6,
                                       type, sec);
  if (fd < 0) return boost::system::error_code(sec.value(), boost::system::generic_category());
  socket.assign(protocol, fd, ec);
  return ec;
}

asio::awaitable<void> tunnel_tcp_port(StreamPtr stream, SessionPtr session, PortTarget where) {
  asio::ip::tcp::endpoint target(where.address, where.port);
  asio::ip::tcp::socket socket(co_await asio::this_coro::executor);
  if (auto oec = open_for(socket, where, SOCK_STREAM)) {
    stream->finish(Status(StatusCode::UNAVAILABLE, "cannot open a socket for port " +
                                                       std::to_string(where.port) + ": " +
                                                       oec.message()));
    co_return;
  }
  // A port that drops SYNs keeps a connect pending for minutes (the kernel's retries). The
  // call's end must abort it: the client gave up, or the runner is shutting down and gRPC waits
  // for every call to finish. The same guard as splice's: the socket is touched only on this
  // strand, and not once the connect is over.
  auto executor = co_await asio::this_coro::executor;
  auto connecting = std::make_shared<bool>(true);
  stream->set_interrupt([executor, connecting, &socket] {
    asio::post(executor, [connecting, &socket] {
      if (!*connecting) return;
      boost::system::error_code ignored;
      socket.cancel(ignored);
    });
  });
  auto [ec] = co_await socket.async_connect(target, kToken);
  stream->set_interrupt({});
  *connecting = false;
  if (ec == asio::error::operation_aborted) {
    stream->finish(Status(StatusCode::CANCELLED, "the tunnel ended while connecting to port " +
                                                     std::to_string(target.port())));
    co_return;
  }
  if (ec) {
    stream->finish(Status(StatusCode::UNAVAILABLE, "port " + std::to_string(target.port()) +
                                                       " of the session refused: " + ec.message()));
    co_return;
  }
  socket.set_option(asio::ip::tcp::no_delay(true));
  session->stream_opened();
  TunnelCount counted(*stream, *session);
  auto result = co_await tunnel::splice(socket, *stream);
  session->stream_closed();
  finish_splice(*stream, result, "the published port");
}

// One UDP flow: each frame from the client is one datagram to the container's port, each
// datagram back is one frame. The client ends the flow with eof (it owns the idle expiry).
asio::awaitable<void> tunnel_udp_port(StreamPtr stream, SessionPtr session, PortTarget where) {
  using namespace asio::experimental::awaitable_operators;
  asio::ip::udp::endpoint target(where.address, where.port);
  asio::ip::udp::socket socket(co_await asio::this_coro::executor);
  boost::system::error_code ec = open_for(socket, where, SOCK_DGRAM);
  if (!ec) socket.connect(target, ec);
  if (ec) {
    stream->finish(Status(StatusCode::UNAVAILABLE, "cannot reach udp port " +
                                                       std::to_string(target.port()) + ": " +
                                                       ec.message()));
    co_return;
  }
  session->stream_opened();
  TunnelCount counted(*stream, *session);
  auto to_port = [&]() -> asio::awaitable<bool> {
    v1::TunnelFrame frame;
    for (;;) {
      frame.Clear();
      auto [ok] = co_await stream->async_read(frame, kToken);
      if (!ok || frame.eof()) {
        boost::system::error_code ignored;
        socket.close(ignored);  // wakes the receiving half
        co_return ok;
      }
      stream->count_in(frame.data().size());
      // A datagram the container's port does not take (ICMP unreachable) is lost, as in UDP.
      co_await socket.async_send(asio::buffer(frame.data()), kToken);
    }
  };
  auto from_port = [&]() -> asio::awaitable<void> {
    v1::TunnelFrame frame;
    for (;;) {
      std::string* data = frame.mutable_data();
      data->resize(65536);
      auto [rec, n] =
          co_await socket.async_receive(asio::buffer(data->data(), data->size()), kToken);
      if (rec == asio::error::connection_refused) continue;  // nobody listens (yet): keep the flow
      if (rec) co_return;
      data->resize(n);
      stream->count_out(n);
      auto [ok] = co_await stream->async_write(frame, kToken);
      if (!ok) {
        boost::system::error_code ignored;
        socket.close(ignored);
        co_return;
      }
    }
  };
  bool clean = co_await (to_port() && from_port());
  session->stream_closed();
  if (clean) {
    v1::TunnelFrame eof;
    eof.set_eof(true);
    auto [ok] = co_await stream->async_write(eof, kToken);
    stream->finish(ok ? Status::OK : Status(StatusCode::UNAVAILABLE, "udp flow broken"));
  } else {
    stream->finish(Status(StatusCode::UNAVAILABLE, "udp flow broken"));
  }
}

}  // namespace

asio::awaitable<boost::system::error_code> connect_tcp_target(asio::ip::tcp::socket& socket,
                                                              const PortTarget& target) {
  if (auto ec = open_for(socket, target, SOCK_STREAM)) co_return ec;
  auto [ec] = co_await socket.async_connect({target.address, target.port}, kToken);
  if (!ec) socket.set_option(asio::ip::tcp::no_delay(true), ec);
  co_return ec;
}

std::variant<PortTarget, Status> resolve_port_target(
    const std::vector<v1::PublishedPort>& published, std::uint32_t host_port,
    const std::string& protocol, const EngineAddresses& engine) {
  // Only a port one of the session's containers publishes now, on the engine's own address.
  const v1::PublishedPort* binding = published_binding(published, host_port, protocol);
  if (host_port == 0 || host_port > 65535 || (protocol != "tcp" && protocol != "udp") || !binding)
    return Status(StatusCode::PERMISSION_DENIED, "no container of the session publishes " +
                                                     std::to_string(host_port) + "/" + protocol);
  PortTarget target;
  // Straight to the container, from inside the engine's network namespace: what the engine's
  // NAT (or, for loopback bindings, its userland proxy) would do, without the extra veth hop,
  // NAT lookups and proxy copy per packet (docs/benchmarks.md). Only inside a namespace of the
  // session's own: every address there is the session's, so even a stale one (a container that
  // just went away) can reach nothing else.
  boost::system::error_code bad_address;
  const auto container = asio::ip::make_address_v4(binding->container_address(), bad_address);
  if (!bad_address && !engine.network_namespace.empty() && is_container_address(container) &&
      binding->container_port() > 0 &&
      binding->container_port() <= 65535) {
    target.address = container;
    target.port = static_cast<unsigned short>(binding->container_port());
    target.netns = engine.network_namespace;
    return target;
  }
  // Otherwise through the engine: a port published on its loopback only is dialled on that
  // loopback from inside its network namespace, any other on the engine's end of its veth.
  target.port = static_cast<unsigned short>(host_port);
  boost::system::error_code ec;
  auto host_ip = asio::ip::make_address(binding->host_ip(), ec);
  if (!ec && host_ip.is_loopback() && !engine.network_namespace.empty()) {
    target.address = host_ip;
    target.netns = engine.network_namespace;
  } else {
    target.address = engine.published_address;
  }
  return target;
}

void start_tunnel(asio::io_context& io, StreamPtr stream, SessionPtr session,
                  const v1::TunnelOpen& open) {
  auto strand = asio::make_strand(io);
  switch (open.target()) {
    case v1::TunnelOpen::TARGET_ENGINE_API:
      asio::co_spawn(strand, tunnel_engine_api(stream, session, open.label(), io), asio::detached);
      return;
    case v1::TunnelOpen::TARGET_PUBLISHED_PORT: {
      const std::string& protocol = open.protocol();
      auto resolved = resolve_port_target(
          session->published_ports(), open.host_port(), protocol,
          {session->engine().published_address(), session->engine().network_namespace()});
      if (auto* refusal = std::get_if<Status>(&resolved)) {
        spdlog::warn("session {}: refused a tunnel to {}/{}: no container publishes it",
                     short_session_id(session->id()), open.host_port(), protocol);
        stream->finish(*refusal);
        return;
      }
      const auto& target = std::get<PortTarget>(resolved);
      if (protocol == "tcp")
        asio::co_spawn(strand, tunnel_tcp_port(stream, session, target), asio::detached);
      else
        asio::co_spawn(strand, tunnel_udp_port(stream, session, target), asio::detached);
      return;
    }
    default:
      spdlog::warn("session {}: refused a tunnel to unknown target {}",
                   short_session_id(session->id()), static_cast<int>(open.target()));
      stream->finish(Status(StatusCode::PERMISSION_DENIED, "tunnel target not allowed"));
  }
}

}  // namespace offload::runner
