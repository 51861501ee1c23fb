// The data channel: a forwarded TCP connection on a TLS connection of its own, next to gRPC.
//
// Through gRPC every chunk of a forwarded port crosses HTTP/2 framing, protobuf and gRPC's own
// poller→callback thread hand-offs; measured on two cores, that capped one stream at 0.38× the
// direct path (docs/benchmarks.md). Here the kernel's TCP connection is the stream: its flow
// control is the tunnel's (a slow reader stops the sender's reads, nothing queues in between),
// and each side moves bytes socket → TLS → socket on one strand. gRPC keeps the control plane
// and everything that needs a filter (the engine API) or datagrams (UDP).
//
// Wire format (proto/offload/v1/runner.proto, "Data channel"):
//   client: "ODC1" len32 DataChannelOpen        runner: len32 DataChannelAccept
//   then both ways: len32 bytes... ; len32 == 0 ends that direction (a half-close)
// or, when the runner speaks it (Hello's data_channel_version >= 2), "ODC2": one connection
// authenticated once, carrying every forwarded connection as a stream (mux_channel.h);
// or (version >= 3) "ODC3": ODC2 whose bytes after the accept are sealed records with keys
// from the TLS session instead of TLS records (sealed_records.h).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "offload/tunnel/mux_channel.h"
#include "offload/tunnel/pump.h"
#include "offload/tunnel/tls_socket.h"
#include "offload/v1/runner.pb.h"

namespace offload::tunnel::data_channel {

namespace asio = boost::asio;
using TlsStream = TlsSocket;

inline constexpr std::string_view kMagic = "ODC1";
inline constexpr std::string_view kMultiplexedMagic = "ODC2";
inline constexpr std::string_view kSealedMagic = "ODC3";
// The newest wire format: what a runner announces and a client asks for unless told otherwise.
inline constexpr unsigned kLatestVersion = 3;
// An open or accept message larger than this is not one of ours: the connection is dropped
// before anything is allocated for it.
inline constexpr std::size_t kMaxMessageBytes = 16 * 1024;
// The largest chunk payload; the reader refuses more.
inline constexpr std::size_t kMaxChunkBytes = 256 * 1024;

// "ODC1", "ODC2" or "ODC3" (versions 1, 2, 3) + length + the message.
std::string encode_open(const v1::DataChannelOpen& open, unsigned version = 1);
// length + the message.
std::string encode_accept(const v1::DataChannelAccept& accept);

enum class ParseStatus { complete, need_more, bad_magic, too_long, bad_message };
const char* to_string(ParseStatus status);

// Parses an open header from the start of `bytes`. complete: `message` is set and `consumed` is
// the header's size; need_more: `needed` is how many bytes a complete header has, at least.
struct ParsedOpen {
  ParseStatus status = ParseStatus::need_more;
  std::size_t needed = 8;
  std::size_t consumed = 0;
  v1::DataChannelOpen message;
  unsigned version = 0;  // from the magic: 1, 2 or 3
};
ParsedOpen parse_open(std::string_view bytes);

struct ParsedAccept {
  ParseStatus status = ParseStatus::need_more;
  std::size_t needed = 4;
  std::size_t consumed = 0;
  v1::DataChannelAccept message;
};
ParsedAccept parse_accept(std::string_view bytes);

// A warm channel's target: length + TunnelOpen.
std::string encode_target(const v1::TunnelOpen& target);
struct ParsedTarget {
  ParseStatus status = ParseStatus::need_more;
  std::size_t needed = 4;
  std::size_t consumed = 0;
  v1::TunnelOpen message;
};
ParsedTarget parse_target(std::string_view bytes);
asio::awaitable<boost::system::error_code> read_target(TlsStream& channel, v1::TunnelOpen& target,
                                                       std::string& why);

// The runner's side before the splice: reads and parses the open header. An error_code when the
// connection broke or sent something that is not an open header (`why` says what).
asio::awaitable<boost::system::error_code> read_open(TlsStream& channel, v1::DataChannelOpen& open,
                                                     std::string& why, unsigned* version = nullptr);
asio::awaitable<boost::system::error_code> write_accept(TlsStream& channel,
                                                        const v1::DataChannelAccept& accept);

// The client's side: sends `open` on a channel whose handshake is done, and reads the accept.
asio::awaitable<boost::system::error_code> exchange_open(TlsStream& channel,
                                                         const v1::DataChannelOpen& open,
                                                         v1::DataChannelAccept& accept);

// The client's end: dials the runner's data channel for the ports of one session. It keeps a
// few warm channels (connected, TLS done, authenticated) so that a new forwarded connection
// costs one round trip (its target and the runner's answer) instead of three (TCP, TLS, open).
class Dialer : public std::enable_shared_from_this<Dialer> {
 public:
  // `host` is the runner's host as the client reached its gRPC port; `tls` pins its certificate
  // (offload/tls/tls.h asio_pinned_client_context). `setup_timeout` bounds the TCP connect, the
  // handshake and the runner's answer: a firewall that drops the data port's SYNs must not keep
  // a connection waiting for minutes before it falls back to gRPC.
  // `version` is the wire format to speak: 2 (ODC2, multiplexed) when the runner's Hello says
  // it can, else 1.
  Dialer(std::string host, unsigned short port, std::shared_ptr<asio::ssl::context> tls,
         std::string session_id, std::string session_token,
         std::chrono::milliseconds setup_timeout = std::chrono::seconds(5), unsigned version = 1);
  // Closes the ODC2 connections (their streams end with a reset).
  ~Dialer();

  struct Opened {
    // Set when the channel could not be used; `refusal` tells whether the runner said no (then
    // gRPC would be refused too) or the channel itself failed (then gRPC may still work).
    boost::system::error_code error;
    bool refused = false;
    v1::DataChannelAccept answer;  // the runner's answer, when it gave one
    std::shared_ptr<TlsStream> channel;  // ODC1: a connection of its own
    std::shared_ptr<mux::Stream> stream;  // ODC2: a stream of a shared connection
    bool usable() const { return channel || stream; }
  };
  static constexpr std::size_t kWarmChannels = 4;
  // ODC2: connections per runner session. Streams are spread over them, so both cores can
  // encrypt; more would only add handshakes.
  static constexpr std::size_t kMultiplexedConnections = 2;

  // A channel to `host_port`/tcp of the session, used from the calling coroutine's strand from
  // then on: a warm one if there is one that is still alive, else a new one. Connected,
  // authenticated and accepted by the runner, ready for splice().
  asio::awaitable<Opened> open_port(std::uint32_t host_port);

  const std::string& host() const { return host_; }
  unsigned short port() const { return port_; }
  unsigned version() const { return version_; }
  // Warm channels ready now (tests).
  std::size_t warm_channels() const;
  // ODC2 connections that are up or coming up (tests).
  std::size_t multiplexed_connections() const;

 private:
  // A new channel: with `target`, opened to it; without, a warm one (authenticated only).
  asio::awaitable<Opened> connect(const v1::TunnelOpen* target, unsigned version = 1);
  asio::awaitable<Opened> open_multiplexed(std::uint32_t host_port);
  std::shared_ptr<mux::Connection> pick_connection(const asio::any_io_executor& here);
  std::shared_ptr<TlsStream> take_warm();
  void refill(const asio::any_io_executor& executor);

  std::string host_;
  unsigned short port_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::string session_id_;
  std::string session_token_;
  std::chrono::milliseconds setup_timeout_;
  unsigned version_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<mux::Connection>> multiplexed_;  // guarded by mu_
  std::deque<std::shared_ptr<TlsStream>> warm_;  // guarded by mu_
  std::size_t warming_ = 0;                      // guarded by mu_: being connected
};

using DataSpliceResult = ChannelSpliceResult;

// Moves bytes both ways until both directions ended, each with its half-close passed on. An
// error in either direction closes both sockets (the peer sees the connection reset). Runs on
// the executor of the calling coroutine, which must be a strand both sockets use.
asio::awaitable<DataSpliceResult> splice(asio::ip::tcp::socket& plain, TlsStream& channel);
// The same for what open_port gave, either kind; from any executor (an ODC2 stream's pumps run
// on its connection's strand).
asio::awaitable<DataSpliceResult> splice(asio::ip::tcp::socket& plain, Dialer::Opened& opened);

}  // namespace offload::tunnel::data_channel
