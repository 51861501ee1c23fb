// The multiplexed data channel ("ODC2"): many forwarded TCP connections as the streams of one
// TLS connection, framed by HTTP/2 (nghttp2, used directly, without HTTP semantics).
//
// One TLS connection per forwarded connection ("ODC1", data_channel.h) pays a TCP and a TLS
// handshake for every new connection, and every small message of every connection is a record,
// a send() and a wake-up of its own. Here a new connection is one HEADERS frame each way, and
// whatever many streams have ready leaves in one batch of records and one send(). HTTP/2 gives
// each stream its own flow control: a receiver returns window only for the bytes its
// destination socket took, so one stalled reader stops its own sender after one window and
// never the other streams, and memory stays bounded by the windows.
//
// Each connection lives on one strand: its reader, its writer and all of its streams' pumps run
// there, so nghttp2 (not thread-safe) is only ever entered from that strand.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "offload/tunnel/pump.h"
#include "offload/tunnel/tls_socket.h"

struct nghttp2_session;

namespace offload::tunnel {

// How the two directions of a forwarded connection ended.
struct ChannelSpliceResult {
  PumpEnd up = PumpEnd::eof;    // plain socket → channel
  PumpEnd down = PumpEnd::eof;  // channel → plain socket
  std::uint64_t bytes_up = 0;
  std::uint64_t bytes_down = 0;
  // ODC2: the runner refused the stream after its bytes were on their way; why.
  std::string refusal;
  bool clean() const { return up == PumpEnd::eof && down == PumpEnd::eof && refusal.empty(); }
};

namespace mux {

namespace asio = boost::asio;

struct Settings {
  // What one stream may have in flight: what a stalled reader makes the other side hold. A
  // stream starts with `stream_window` and, each time it delivered a window's worth, doubles
  // it up to `max_stream_window`: 4 MiB covers 800 Mbit/s at 40 ms round trip, and a stream
  // whose reader never reads stays at the first window.
  std::uint32_t stream_window = 512u << 10;
  std::uint32_t max_stream_window = 4u << 20;
  // What all streams of a connection may have in flight together. It is returned as soon as
  // bytes arrive (memory is bounded by the streams' windows), so streams whose readers stalled
  // never hold up the others on the connection.
  std::uint32_t connection_window = 16u << 20;
  // The largest DATA frame we accept: one read of the plain socket (pump.h kChunkSize).
  std::uint32_t max_frame = 256u << 10;
  // Streams open at once on one connection (the runner's limit per session applies as well).
  std::uint32_t max_streams = 4096;
};

// The request of a stream, as its HEADERS say (text: the runner validates it).
struct Request {
  std::string target, protocol, port;
};

// The runner's answer: a grpc::StatusCode (0: connected to the target) and why not.
struct Answer {
  int code = 0;
  std::string message;
};

class Connection;

// One forwarded connection. All member functions run on the connection's strand.
class Stream : public std::enable_shared_from_this<Stream> {
 public:
  Stream(std::shared_ptr<Connection> connection, const asio::any_io_executor& executor);
  ~Stream();

  const Request& request() const { return request_; }
  asio::any_io_executor get_executor() const;

  // Runner: answers the request. A non-zero code ends the stream.
  void respond(const Answer& answer);
  // Moves bytes both ways between `plain` and the stream until both directions ended, each
  // with its half-close passed on. An error in either direction resets the stream and closes
  // `plain` (its peer sees a reset). On the connection's strand (co_spawn it there).
  asio::awaitable<ChannelSpliceResult> splice(asio::ip::tcp::socket& plain);
  // The caller has no socket for splice() after all: resets the stream. From any thread.
  void splice_failed();

 private:
  friend class Connection;
  friend struct Callbacks;

  asio::awaitable<void> pump_up(asio::ip::tcp::socket& plain);
  asio::awaitable<void> pump_down(asio::ip::tcp::socket& plain);
  // Resets the stream (unless it is closed already) and wakes both pumps.
  void abort(std::uint32_t http2_error);
  void wake();
  bool reset() const;  // closed by a reset, or by the connection's end
  // Received bytes that will never be written: give their window back to the connection.
  void discard_incoming();

  std::shared_ptr<Connection> connection_;
  std::int32_t id_ = -1;
  Request request_;
  int header_fields_ = 0;
  Answer answer_;
  bool answered_ = false;
  bool refused_ = false;  // refused (runner: reset once the answer is out)

  // plain → peer: what the last read brought, until the writer framed all of it.
  std::vector<char> out_;
  std::size_t out_begin_ = 0, out_end_ = 0;
  bool out_eof_ = false;
  bool out_deferred_ = false;  // nghttp2 waits for resume_data
  bool has_data_provider_ = false;

  // peer → plain: received, not yet written (`in_sending_` is being written).
  std::string in_, in_sending_;
  std::uint32_t window_ = 0;             // our receive window for this stream, now
  std::size_t delivered_since_grow_ = 0;
  bool in_eof_ = false;
  bool down_writing_ = false;
  bool down_done_ = false;
  asio::ip::tcp::socket* plain_ = nullptr;

  bool closed_ = false;  // nghttp2 closed the stream
  std::uint32_t close_error_ = 0;
  bool aborted_ = false;
  asio::steady_timer up_wake_, down_wake_;
  ChannelSpliceResult result_;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  enum class Role { client, server };
  // Runner: a stream whose request HEADERS are complete; on the strand. It must respond().
  using RequestHandler = std::function<void(std::shared_ptr<Stream>)>;

  // `executor` is a strand; the socket, given to start(), must use it.
  Connection(asio::any_io_executor executor, Role role, Settings settings = {},
             RequestHandler on_request = {});
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  const asio::any_io_executor& get_executor() const { return executor_; }

  // Runs the connection over `socket` (TLS done, ODC2 open accepted) until it ends: the peer
  // closed it, it broke, or close(). On the strand.
  asio::awaitable<void> run(std::shared_ptr<TlsSocket> socket);
  // The client's connection could not be set up: opens waiting for it fail with `error`, or
  // with the runner's `answer` when it refused (`refused`). On the strand.
  void setup_failed(boost::system::error_code error, bool refused, Answer answer);

  struct Opened {
    boost::system::error_code error;  // the connection failed (not the runner's refusal)
    bool refused = false;             // the runner said no: `answer` says why
    Answer answer;
    std::shared_ptr<Stream> stream;  // connected, ready for splice()
  };
  // Client: a new stream to `request`, once the connection is up; on the strand. It returns
  // without waiting for the runner's answer: a refusal ends the stream later, with
  // ChannelSpliceResult::refusal set. `refused` is only set when the connection itself was.
  asio::awaitable<Opened> open(const Request& request);

  // For the fuzz target (tests/fuzz/mux_channel): the connection as run() sets it up, but
  // without a socket; receive() then takes bytes as the reader would, and what the connection
  // would send stays queued in nghttp2. On the strand.
  void start_unconnected();
  // Bytes as read from the socket; false when they broke the connection (a protocol error).
  bool receive(const char* data, std::size_t size);

  // Ends the connection and every stream; from any thread.
  void close();
  // Still usable for new streams (not closed, broken, refused or out of stream ids).
  bool usable() const { return usable_.load(); }
  std::size_t active_streams() const { return active_.load(); }

 private:
  friend class Stream;
  friend struct Callbacks;

  bool begin();  // SETTINGS and our connection window; the state becomes running
  asio::awaitable<void> read_loop();
  asio::awaitable<void> write_loop();
  void kick();  // the writer has something to send
  void fail(boost::system::error_code ec);
  void consume(Stream& stream, std::size_t bytes);
  void apply_consumes();
  void forget(std::int32_t id);

  asio::any_io_executor executor_;
  Role role_;
  Settings settings_;
  RequestHandler on_request_;
  nghttp2_session* session_ = nullptr;
  std::shared_ptr<TlsSocket> socket_;
  std::map<std::int32_t, std::shared_ptr<Stream>> streams_;
  std::string batch_;  // small frames, gathered into one run of records
  // Window owed: for bytes a stream delivered (or dropped), for bytes the connection received
  // (stream 0), and a stream window grown. nghttp2 hears of them outside its callbacks.
  struct WindowChange {
    std::int32_t stream = 0;
    std::size_t consumed = 0;
    std::uint32_t grow_to = 0;
  };
  std::vector<WindowChange> pending_consumes_;
  enum class State { connecting, running, failed } state_ = State::connecting;
  boost::system::error_code failure_;
  bool refused_ = false;
  Answer refusal_;
  asio::steady_timer writer_wake_, ready_wake_;
  std::atomic<bool> usable_{true};
  std::atomic<std::size_t> active_{0};
};

}  // namespace mux
}  // namespace offload::tunnel
