// One listener of a PortForwarder (a local socket serving one published port) and what it and its
// connections share with the forwarder, which they may outlive. The forwarder creates, revives
// and retires listeners through this base; the TCP kind lives in port_forwarder.cpp, the UDP kind
// with its client flows in udp_flows.cpp. Private to those two files.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "offload/daemon/port_forwarder.h"
#include "offload/tunnel/data_channel.h"

namespace offload::daemon {
namespace asio = boost::asio;
using Strand = asio::strand<asio::io_context::executor_type>;
using DataChannel = PortForwarder::DataChannel;
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

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
  DataChannel data_channel(unsigned& max_version) {
    std::lock_guard lock(mu);
    max_version = data_version;
    return data;
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
  DataChannel data;  // guarded by mu
  // Guarded by mu: the policy's newest data channel wire format.
  unsigned data_version = tunnel::data_channel::kLatestVersion;
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

// The UDP kind of listener (udp_flows.cpp): one flow, with its own tunnel, per client endpoint.
std::shared_ptr<PortForwarder::Listener> make_udp_listener(
    asio::io_context& io, const ListenerKey& key, std::shared_ptr<PortForwarder::Shared> shared);

}  // namespace offload::daemon
