// What a session's tunnels may dial, and the dialling: the engine's API socket, and the ports the
// session's containers publish. The runner dials only what the session owns, however the client
// asks, so the policy is a pure function (resolve_port_target) that is tested on its own.
#pragma once

#include <grpcpp/grpcpp.h>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/address.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "offload/v1/runner.pb.h"

namespace offload::tunnel {
class ServerTunnelStream;
}

namespace offload::runner {

class Session;

// A published port to dial: an address, and the network namespace to dial it from ("" = ours).
struct PortTarget {
  boost::asio::ip::address address;
  unsigned short port = 0;
  std::string netns;
};

// Where a session's engine answers for the ports its containers publish (see SessionEngine).
struct EngineAddresses {
  boost::asio::ip::address published_address;  // the engine's end of its veth pair
  std::string network_namespace;                // "" when the engine shares the runner's
};

// Where a TARGET_PUBLISHED_PORT tunnel to `host_port`/`protocol` goes, given the ports the
// session publishes now. When the engine has a network namespace of its own and the binding
// names the container's address (PublishedPort.container_address): that address and the
// container's port, dialled from inside the namespace. Otherwise through the engine: its
// published address, or, for a port published on the engine's loopback only
// (-p 127.0.0.1:...), that loopback dialled from inside the engine's network namespace. A port
// published both on loopback and more widely goes to the wide binding.
// Anything the session does not publish (or that is no port or protocol at all) is refused with
// PERMISSION_DENIED naming the port and protocol.
std::variant<PortTarget, grpc::Status> resolve_port_target(
    const std::vector<v1::PublishedPort>& published, std::uint32_t host_port,
    const std::string& protocol, const EngineAddresses& engine);

// Opens `socket` for `target` (inside the target's network namespace when it has one) and
// connects it. Cancelling or closing the socket aborts a connect in progress.
boost::asio::awaitable<boost::system::error_code> connect_tcp_target(
    boost::asio::ip::tcp::socket& socket, const PortTarget& target);

// Serves the tunnel `open` asks for: starts its coroutine on a new strand of `io`, or finishes
// `stream` with the refusal. Does not block: it runs on the gRPC thread that read the first
// frame.
void start_tunnel(boost::asio::io_context& io, std::shared_ptr<tunnel::ServerTunnelStream> stream,
                  std::shared_ptr<Session> session, const v1::TunnelOpen& open);

}  // namespace offload::runner
