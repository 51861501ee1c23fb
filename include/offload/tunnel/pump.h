// Moving bytes between an Asio byte stream (unix or TCP socket) and a FrameStream.
//
// Each direction is one coroutine. Both overlap the next read with the previous write (two
// frames, swapped), so the socket and the gRPC transport work at the same time; each chunk is
// read straight into the frame that gRPC serialises, with no copy of our own.
// Half-close is per direction: end-of-file on the socket becomes an eof frame, an eof frame
// becomes shutdown(send) on the socket, and the other direction keeps flowing.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "offload/tunnel/frame_stream.h"

namespace offload::tunnel {

namespace asio = boost::asio;

// The largest chunk one frame carries: large enough that per-message costs (protobuf, HTTP/2,
// gRPC's threads) vanish at line rate. Measured on the benchmark: 512 KiB instead of 128 KiB cut
// offloadd's CPU per byte by about a fifth but nearly doubled the runner's peak memory with 16
// bulk streams; 256 KiB sits between.
inline constexpr std::size_t kChunkSize = 256 * 1024;
// Where each direction starts: most connections are API calls and request/response traffic, and
// a stream holds two frames per direction, so hundreds of idle or chatty connections stay cheap.
inline constexpr std::size_t kFirstChunkSize = 16 * 1024;

// How much the next socket read asks for: it doubles, up to kChunkSize, each time a read fills
// the buffer (the sender is ahead of us: a bulk transfer), and never shrinks.
class ChunkSizer {
 public:
  std::size_t next() const { return size_; }
  void filled(std::size_t n) {
    if (n == size_ && size_ < kChunkSize) size_ *= 2;
  }

 private:
  std::size_t size_ = kFirstChunkSize;
};

enum class PumpEnd {
  eof,          // the direction ended cleanly with a half-close
  local_error,  // the socket failed (reset, ...): the stream was cancelled
  stream_error, // the stream broke or ended without eof
};

// Reads the next chunk from `socket` straight into `frame` (sized by `sizer`); end-of-file
// becomes frame.eof(). A read error cancels the stream and is returned.
template <class Socket>
asio::awaitable<std::error_code> read_chunk(Socket& socket, FrameStream& stream, ChunkSizer& sizer,
                                            TunnelFrame& frame) {
  std::string* data = frame.mutable_data();
  data->resize(sizer.next());
  auto [ec, n] = co_await socket.async_read_some(asio::buffer(data->data(), data->size()),
                                                 asio::as_tuple(asio::use_awaitable));
  sizer.filled(n);
  data->resize(n);
  if (ec == asio::error::eof) {
    frame.set_eof(true);
    co_return std::error_code{};
  }
  if (ec) stream.cancel("local read failed: " + ec.message());
  co_return std::error_code(ec);
}

// Sees each chunk before it is sent (e.g. to parse HTTP request heads or count activity).
using ChunkObserver = std::function<void(std::string_view)>;

// socket → stream, until end-of-file (sends an eof frame) or an error (cancels the stream).
template <class Socket>
asio::awaitable<PumpEnd> pump_socket_to_stream(Socket& socket, FrameStream& stream,
                                               ChunkObserver observe = {}) {
  using namespace asio::experimental::awaitable_operators;
  constexpr auto token = asio::as_tuple(asio::use_awaitable);
  TunnelFrame frames[2];
  TunnelFrame* current = &frames[0];
  TunnelFrame* next = &frames[1];

  // Each half cancels the other's side on failure, so the pair never waits on a dead peer.
  ChunkSizer sizer;
  auto read_into = [&socket, &stream, &sizer](TunnelFrame* f) {
    return read_chunk(socket, stream, sizer, *f);
  };
  auto send = [&stream, &socket, token](TunnelFrame* f) -> asio::awaitable<bool> {
    auto [ok] = co_await stream.async_write(*f, token);
    if (!ok) {
      boost::system::error_code ignored;
      socket.cancel(ignored);
    }
    co_return ok;
  };

  if (auto ec = co_await read_into(current)) co_return PumpEnd::local_error;
  for (;;) {
    if (observe && !current->data().empty()) observe(current->data());
    stream.count_out(current->data().size());
    if (current->eof()) {
      co_return (co_await send(current)) ? PumpEnd::eof : PumpEnd::stream_error;
    }
    auto [ok, ec] = co_await (send(current) && read_into(next));
    if (!ok) co_return PumpEnd::stream_error;
    if (ec) co_return PumpEnd::local_error;
    std::swap(current, next);
  }
}

// stream → socket, until an eof frame (then shutdown(send)) or an error.
template <class Socket>
asio::awaitable<PumpEnd> pump_stream_to_socket(FrameStream& stream, Socket& socket) {
  using namespace asio::experimental::awaitable_operators;
  constexpr auto token = asio::as_tuple(asio::use_awaitable);
  TunnelFrame frames[2];
  TunnelFrame* current = &frames[0];
  TunnelFrame* next = &frames[1];

  auto receive = [&stream, token](TunnelFrame* f) -> asio::awaitable<bool> {
    f->Clear();
    auto [ok] = co_await stream.async_read(*f, token);
    co_return ok;
  };
  auto write_out = [&socket, &stream, token](TunnelFrame* f) -> asio::awaitable<std::error_code> {
    if (f->data().empty()) co_return std::error_code{};
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(f->data()), token);
    if (ec) stream.cancel("local write failed: " + ec.message());
    co_return std::error_code(ec);
  };

  if (!co_await receive(current)) co_return PumpEnd::stream_error;
  for (;;) {
    stream.count_in(current->data().size());
    if (current->eof()) {
      if (auto ec = co_await write_out(current)) co_return PumpEnd::local_error;
      boost::system::error_code ignored;
      socket.shutdown(Socket::shutdown_send, ignored);
      co_return PumpEnd::eof;
    }
    auto [ec, ok] = co_await (write_out(current) && receive(next));
    if (ec) co_return PumpEnd::local_error;
    if (!ok) co_return PumpEnd::stream_error;
    std::swap(current, next);
  }
}

}  // namespace offload::tunnel

namespace offload::tunnel {

struct SpliceResult {
  PumpEnd up = PumpEnd::eof;    // socket → stream
  PumpEnd down = PumpEnd::eof;  // stream → socket
  bool clean() const { return up == PumpEnd::eof && down == PumpEnd::eof; }
};

// Runs both directions until each has ended. A failure in one tears the other down too, so a
// splice never outlives a dead peer; the socket is closed unless both ended cleanly.
template <class Socket>
asio::awaitable<SpliceResult> splice(Socket& socket, FrameStream& stream,
                                     ChunkObserver observe = {}) {
  using namespace asio::experimental::awaitable_operators;
  auto up = [&]() -> asio::awaitable<PumpEnd> {
    co_return co_await pump_socket_to_stream(socket, stream, std::move(observe));
  };
  auto down = [&]() -> asio::awaitable<PumpEnd> {
    PumpEnd end = co_await pump_stream_to_socket(stream, socket);
    if (end != PumpEnd::eof) {
      // The upstream reader may be parked on an idle client: wake it.
      boost::system::error_code ignored;
      socket.close(ignored);
    }
    co_return end;
  };
  auto [u, d] = co_await (up() && down());
  SpliceResult result{u, d};
  if (!result.clean()) {
    boost::system::error_code ignored;
    socket.close(ignored);
  }
  co_return result;
}

inline const char* to_string(PumpEnd end) {
  switch (end) {
    case PumpEnd::eof: return "eof";
    case PumpEnd::local_error: return "local error";
    case PumpEnd::stream_error: return "stream error";
  }
  return "?";
}

}  // namespace offload::tunnel
