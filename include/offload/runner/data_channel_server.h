// The runner's end of the data channel (offload/tunnel/data_channel.h): a TLS listener next to
// the gRPC port. Each connection authenticates with a session's id and token in its first
// message, names a TCP port the session publishes, and becomes that port's tunnel. Nothing is
// dialled before the token is checked and the port is found among the session's published
// ports, exactly as for the gRPC Tunnel call (resolve_port_target decides for both).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

namespace offload::runner {

class RunnerService;

struct DataChannelSettings {
  // From accept to the open being answered (TLS handshake, open header, authentication, the
  // dial): a peer that stalls in between is dropped, so silent connections cannot pile up.
  std::chrono::milliseconds setup_deadline{std::chrono::seconds(10)};
  // How often a multiplexed (ODC2) connection checks that its session still exists: one whose
  // session ended is closed, so idle connections do not outlive their sessions.
  std::chrono::milliseconds session_check{std::chrono::seconds(30)};
};

class DataChannelServer {
 public:
  // Listens on `where` (port 0 picks one) and serves on `io`. Throws boost::system::system_error
  // when it cannot listen.
  DataChannelServer(boost::asio::io_context& io, std::shared_ptr<boost::asio::ssl::context> tls,
                    RunnerService& service, const boost::asio::ip::tcp::endpoint& where,
                    DataChannelSettings settings = {});
  ~DataChannelServer();
  DataChannelServer(const DataChannelServer&) = delete;
  DataChannelServer& operator=(const DataChannelServer&) = delete;

  unsigned short port() const { return port_; }
  // Stops accepting and closes every open channel; returns at once (the channels end on their
  // strands). Also done by the destructor.
  void stop();

  // Channels that reached their target (what tests and metrics ask: is the channel used).
  std::uint64_t channels_opened() const { return opened_.load(); }
  // Connections dropped or refused before a splice started (bad TLS, bad header, bad token,
  // a port the session does not publish, the deadline).
  std::uint64_t channels_refused() const { return refused_.load(); }
  // Warm channels (authenticated ahead of need) that were then given a target.
  std::uint64_t warm_channels_used() const { return warm_used_.load(); }
  // Connections open now, of either wire format (tests).
  std::size_t connections_open() const;

  struct Shared;

 private:
  std::shared_ptr<Shared> shared_;
  unsigned short port_ = 0;
  std::atomic<std::uint64_t>& opened_;
  std::atomic<std::uint64_t>& refused_;
  std::atomic<std::uint64_t>& warm_used_;
};

}  // namespace offload::runner
