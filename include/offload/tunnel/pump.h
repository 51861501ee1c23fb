// Moving bytes between an Asio byte stream (unix or TCP socket) and a FrameStream.
//
// Each direction is one coroutine. Both overlap the next read with the previous write (two
// frames, swapped), so the socket and the gRPC transport work at the same time; each chunk is
// read straight into the frame that gRPC serialises, with no copy of our own.
// Half-close is per direction: end-of-file on the socket becomes an eof frame, an eof frame
// becomes shutdown(send) on the socket, and the other direction keeps flowing.
// The Docker API proxy runs these same loops with two hooks: an upstream filter that decides
// what of each read goes out, and a downstream writer that delivers each frame's bytes. The
// plain tunnel's defaults are resolved at compile time, so they cost nothing per chunk.
#pragma once

#include <sys/socket.h>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <cerrno>
#include <concepts>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
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

// Sends `frame`, counted as outgoing bytes. If the stream broke, the socket's pending read is
// cancelled: the direction ends instead of waiting on an idle client.
template <class Socket>
asio::awaitable<bool> send_frame(Socket& socket, FrameStream& stream, const TunnelFrame& frame) {
  stream.count_out(frame.data().size());
  auto [ok] = co_await stream.async_write(frame, asio::as_tuple(asio::use_awaitable));
  if (!ok) {
    boost::system::error_code ignored;
    socket.cancel(ignored);
  }
  co_return ok;
}

// What an upstream filter makes of one read from the socket.
class Outgoing {
 public:
  // The read goes out as it is: the common case, with no copy.
  static Outgoing as_read() { return Outgoing(nullptr, std::nullopt); }
  // `frame` goes out instead (the filter's own; it may have sent other frames already). An
  // empty one sends nothing, unless the read was end-of-file: the pump marks it eof and sends it.
  static Outgoing instead(TunnelFrame& frame) { return Outgoing(&frame, std::nullopt); }
  // The direction is over: the filter failed to send or to answer, and already cancelled the
  // socket or the stream as the pumps do.
  static Outgoing end(PumpEnd end) { return Outgoing(nullptr, end); }

  TunnelFrame* frame() const { return frame_; }
  const std::optional<PumpEnd>& ended() const { return end_; }

 private:
  Outgoing(TunnelFrame* frame, std::optional<PumpEnd> end) : frame_(frame), end_(end) {}
  TunnelFrame* frame_;
  std::optional<PumpEnd> end_;
};

// Sees each read before it goes out (the API proxy parses request heads and holds some
// requests). Called with the read frame once the previous frame has been sent, so it may send
// frames of its own in between (with send_frame). Returns its decision at once, or as an
// awaitable when it may have to wait.
template <class F>
concept UpstreamFilter =
    std::invocable<F&, const TunnelFrame&> &&
    (std::same_as<std::invoke_result_t<F&, const TunnelFrame&>, Outgoing> ||
     std::same_as<std::invoke_result_t<F&, const TunnelFrame&>, asio::awaitable<Outgoing>>);

// The plain tunnel's filter: every read goes out as it is, decided without a coroutine.
struct SendAsRead {
  Outgoing operator()(const TunnelFrame&) const { return Outgoing::as_read(); }
};

// The plain tunnel's writer: each frame's bytes to the socket as they are. The pump writes them
// itself, so the plain path has no coroutine per chunk beyond the write's own.
struct WriteAsIs {};

// Writes the bytes of each frame from the stream to the socket (the API proxy holds some
// response bodies back); the pump cancels the stream if it fails. Only called with data.
template <class W>
concept DownstreamWriter =
    std::same_as<W, WriteAsIs> || requires(W& writer, std::string_view data) {
      { writer(data) } -> std::same_as<asio::awaitable<std::error_code>>;
    };

// socket → stream, until end-of-file (sends an eof frame) or an error (cancels the stream).
template <class Socket, UpstreamFilter Filter = SendAsRead>
asio::awaitable<PumpEnd> pump_socket_to_stream(Socket& socket, FrameStream& stream,
                                               Filter filter = {}) {
  using namespace asio::experimental::awaitable_operators;
  TunnelFrame frames[2];
  TunnelFrame* current = &frames[0];
  TunnelFrame* next = &frames[1];

  // Each half cancels the other's side on failure, so the pair never waits on a dead peer.
  ChunkSizer sizer;
  auto read_into = [&socket, &stream, &sizer](TunnelFrame* f) {
    return read_chunk(socket, stream, sizer, *f);
  };
  auto send = [&socket, &stream](TunnelFrame* f) { return send_frame(socket, stream, *f); };

  if (auto ec = co_await read_into(current)) co_return PumpEnd::local_error;
  for (;;) {
    Outgoing decision = Outgoing::as_read();
    if constexpr (std::same_as<std::invoke_result_t<Filter&, const TunnelFrame&>, Outgoing>)
      decision = filter(std::as_const(*current));
    else
      decision = co_await filter(std::as_const(*current));
    if (decision.ended()) co_return *decision.ended();
    TunnelFrame* outgoing = decision.frame() ? decision.frame() : current;
    if (current->eof()) {
      outgoing->set_eof(true);
      co_return (co_await send(outgoing)) ? PumpEnd::eof : PumpEnd::stream_error;
    }
    if (outgoing->data().empty()) {
      // The filter keeps this read for now (a request it holds): only read on.
      if (auto ec = co_await read_into(next)) co_return PumpEnd::local_error;
    } else {
      auto [ok, ec] = co_await (send(outgoing) && read_into(next));
      if (!ok) co_return PumpEnd::stream_error;
      if (ec) co_return PumpEnd::local_error;
    }
    std::swap(current, next);
  }
}

// stream → socket, until an eof frame (then shutdown(send)) or an error.
template <class Socket, DownstreamWriter Writer = WriteAsIs>
asio::awaitable<PumpEnd> pump_stream_to_socket(FrameStream& stream, Socket& socket,
                                               Writer writer = {}) {
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
  auto write_out = [&socket, &stream, &writer,
                    token](TunnelFrame* f) -> asio::awaitable<std::error_code> {
    if (f->data().empty()) co_return std::error_code{};
    std::error_code ec;
    if constexpr (std::same_as<Writer, WriteAsIs>) {
      auto [write_ec, n] = co_await asio::async_write(socket, asio::buffer(f->data()), token);
      ec = write_ec;
    } else {
      ec = co_await writer(std::string_view(f->data()));
    }
    if (ec) stream.cancel("local write failed: " + ec.message());
    co_return ec;
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

// The plain tunnel's splice (no filter, no writer), run on the transport's threads. The
// coroutine pumps above resume on the socket's executor after every frame: each gRPC completion
// is posted from a gRPC thread to an Asio thread, a thread hand-off (a futex wake and a context
// switch) per frame and direction that cost most of the CPU at high frame rates. Here each
// completion continues inline where it arrives: a frame read from the stream is written to the
// socket with a non-blocking send() on the gRPC thread, which then starts the next read; a
// frame written to the stream is followed, on the same thread, by a non-blocking recv() and
// the next write. Only a socket that is not ready yet parks its direction in Asio's reactor
// (async_wait), and the reactor thread that wakes for it carries on the same way.
//
// At most two frames per direction are held (socket → stream double-buffers as the coroutine
// pump does; stream → socket holds one), so a slow reader on either side stalls the other
// within a frame or two (back-pressure as in the pumps). Both directions touch the socket at once, but only
// through the descriptor (send, recv, shutdown) and async_wait, which Asio's reactor serialises
// per descriptor once the socket is non-blocking; nothing closes it before both have ended.
// Failures end a direction as in the pumps; where they close the socket to wake the other
// direction, this shuts it down instead (close() would free the descriptor under a thread that
// still uses it).
template <class Socket>
class DirectSplice final : public FrameStream::DirectHandler,
                           public std::enable_shared_from_this<DirectSplice<Socket>> {
 public:
  using Done = asio::any_completion_handler<void(SpliceResult)>;

  // `socket` is non-blocking already; `socket` and `stream` outlive `done`'s call.
  DirectSplice(Socket& socket, FrameStream& stream, Done done)
      : socket_(socket), stream_(stream), fd_(socket.native_handle()), done_(std::move(done)) {}

  void start() {
    self_ = this->shared_from_this();
    receive();
    read_socket();
  }

  // Wakes whatever waits on the socket, for good: the splice is ending. The upstream direction
  // then ends as a local error, not as the client's end-of-file.
  void shut_down() {
    shut_down_.store(true, std::memory_order_release);
    ::shutdown(fd_, SHUT_RDWR);
  }

 private:
  // --- socket → stream ---
  // Two frames, as in the coroutine pump: while one is with gRPC, the next is read into the
  // other, so the socket and the transport work at the same time. The reader (a recv() loop,
  // or a wait for the socket) and the writer's completion run on different threads; up_mu_
  // guards which frame does what, and stream or socket calls are made outside it (a stream that
  // has ended completes a write inline).
  void read_socket() {
    for (;;) {
      TunnelFrame* frame = nullptr;
      {
        std::unique_lock lock(up_mu_);
        if (up_end_) {  // the writer failed meanwhile: stop reading
          reading_ = false;
          return report_up(lock);
        }
        frame = &up_[filling_];
      }
      std::string* data = frame->mutable_data();
      data->resize(sizer_.next());
      const ssize_t n = ::recv(fd_, data->data(), data->size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return wait(asio::socket_base::wait_read);
        return fail_up(std::error_code(errno, std::system_category()));
      }
      if (n == 0 && shut_down_.load(std::memory_order_acquire)) {
        // Our own shutdown, not the client's end-of-file. A write still out decides how the
        // direction ends (it fails if the stream broke, which is what shut the socket down).
        std::unique_lock lock(up_mu_);
        reading_ = false;
        if (!up_end_ && writing_ < 0) up_end_ = PumpEnd::local_error;
        return report_up(lock);
      }
      sizer_.filled(static_cast<std::size_t>(n));
      data->resize(static_cast<std::size_t>(n));
      frame->set_eof(n == 0);
      stream_.count_out(data->size());
      int write = -1;
      bool stop = false;
      {
        std::lock_guard lock(up_mu_);
        if (writing_ < 0) {
          writing_ = write = filling_;
          filling_ ^= 1;  // free: a ready frame only exists while a write is out
        } else {
          ready_ = filling_;
        }
        // End-of-file, or no free frame. From here on the writer's completion may start the
        // next reader at any moment, so this one decides now and must not look at reading_
        // again (it would see the new reader's flag and read alongside it).
        stop = n == 0 || ready_ >= 0;
        if (stop) reading_ = false;
      }
      if (write >= 0) stream_.write_direct(up_[write], *this);
      if (stop) return;
    }
  }

  void frame_written(bool ok) override {
    int write = -1;
    bool read = false;
    std::unique_lock lock(up_mu_);
    const int written = std::exchange(writing_, -1);
    if (!ok) {
      if (!up_end_) up_end_ = PumpEnd::stream_error;
      ready_ = -1;
      // A reader parked on an idle client would never notice: wake it (the stream is broken,
      // so the other direction ends too).
      if (reading_) {
        lock.unlock();
        shut_down();
        lock.lock();
      }
      return report_up(lock);
    }
    if (up_[written].eof()) {
      if (!up_end_) up_end_ = PumpEnd::eof;
      return report_up(lock);
    }
    if (shut_down_.load(std::memory_order_acquire)) {  // the splice is ending: send no more
      ready_ = -1;
      if (!up_end_) up_end_ = PumpEnd::local_error;
      return report_up(lock);
    }
    if (ready_ >= 0) writing_ = write = std::exchange(ready_, -1);
    const bool at_eof = write >= 0 && up_[write].eof();
    if (!reading_ && !at_eof && !up_end_) {
      reading_ = read = true;
      filling_ = written;
    }
    lock.unlock();
    if (write >= 0) stream_.write_direct(up_[write], *this);
    if (read) read_socket();
  }

  void fail_up(std::error_code ec) {
    stream_.cancel("local read failed: " + ec.message());
    std::unique_lock lock(up_mu_);
    reading_ = false;
    if (!up_end_) up_end_ = PumpEnd::local_error;
    report_up(lock);
  }

  // The direction ends once its end is known and neither the reader nor a write is out.
  template <class Lock>
  void report_up(Lock& lock) {
    if (!up_end_ || reading_ || writing_ >= 0 || up_reported_) return;
    up_reported_ = true;
    const PumpEnd end = *up_end_;
    lock.unlock();
    end_up(end);
  }

  // --- stream → socket ---
  void receive() {
    down_.Clear();
    written_ = 0;
    stream_.read_direct(down_, *this);
  }

  void frame_read(bool ok) override {
    if (!ok) return end_down(PumpEnd::stream_error);
    stream_.count_in(down_.data().size());
    write_socket();
  }

  void write_socket() {
    const std::string& data = down_.data();
    while (written_ < data.size()) {
      const ssize_t n =
          ::send(fd_, data.data() + written_, data.size() - written_, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) {
        written_ += static_cast<std::size_t>(n);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return wait(asio::socket_base::wait_write);
      return fail_down(std::error_code(errno, std::system_category()));
    }
    if (down_.eof()) {
      ::shutdown(fd_, SHUT_WR);
      return end_down(PumpEnd::eof);
    }
    receive();
  }

  void fail_down(std::error_code ec) {
    stream_.cancel("local write failed: " + ec.message());
    end_down(PumpEnd::local_error);
  }

  // --- both ---
  void wait(asio::socket_base::wait_type what) {
    socket_.async_wait(what, [self = this->shared_from_this(), what](boost::system::error_code ec) {
      const bool reading = what == asio::socket_base::wait_read;
      if (ec) return reading ? self->fail_up(ec) : self->fail_down(ec);
      reading ? self->read_socket() : self->write_socket();
    });
  }

  void end_up(PumpEnd end) {
    result_.up = end;
    finish_one();
  }

  void end_down(PumpEnd end) {
    result_.down = end;
    // The upstream direction may be parked on an idle client: wake it (its recv() then sees
    // end-of-file, and its eof frame the broken stream).
    if (end != PumpEnd::eof) shut_down();
    finish_one();
  }

  // The last direction to end hands the result over; callers touch nothing after this.
  void finish_one() {
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    auto self = std::move(self_);
    post_to_handler_executor(std::move(*done_), result_);
  }

  Socket& socket_;
  FrameStream& stream_;
  const int fd_;
  std::optional<Done> done_;
  std::shared_ptr<DirectSplice> self_;  // alive until both directions have ended
  std::atomic<int> pending_{2};
  std::atomic<bool> shut_down_{false};
  SpliceResult result_;  // each direction writes its half before pending_ counts it
  std::mutex up_mu_;
  TunnelFrame up_[2];            // guarded by up_mu_ as to which is filled, ready or written
  int filling_ = 0;              // the frame the reader fills (while reading_)
  int writing_ = -1, ready_ = -1;  // the frame with gRPC; a filled one waiting for it
  bool reading_ = true;          // a recv() loop or a wait for the socket is out
  std::optional<PumpEnd> up_end_;
  bool up_reported_ = false;
  TunnelFrame down_;
  ChunkSizer sizer_;             // the reader's alone
  std::size_t written_ = 0;  // of down_'s data
};

// Runs the plain splice on the transport's threads (DirectSplice) and waits for it here.
template <class Socket>
asio::awaitable<SpliceResult> direct_splice(Socket& socket, FrameStream& stream) {
  boost::system::error_code ec;
  socket.non_blocking(true, ec);  // before two threads may start waits on it (see DirectSplice)
  if (ec) {
    stream.cancel("cannot make the local socket non-blocking: " + ec.message());
    socket.close(ec);
    co_return SpliceResult{PumpEnd::local_error, PumpEnd::local_error};
  }
  SpliceResult result = co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                                      void(SpliceResult)>(
      [&socket, &stream](auto handler) {
        auto splice = std::make_shared<DirectSplice<Socket>>(
            socket, stream, typename DirectSplice<Socket>::Done(std::move(handler)));
        // A call that ends while neither direction waits on the stream must still end the
        // splice: shutting the socket down wakes whatever waits on it. Cleared (set_interrupt
        // returns only once it cannot run any more) before the socket may be closed below.
        stream.set_interrupt([splice] { splice->shut_down(); });
        splice->start();
      },
      asio::use_awaitable);
  stream.set_interrupt({});
  if (!result.clean()) socket.close(ec);
  co_return result;
}

// The two coroutine pumps, for splices with a filter or a writer (see splice below).
template <class Socket, UpstreamFilter Filter, DownstreamWriter Writer>
asio::awaitable<SpliceResult> pumped_splice(Socket& socket, FrameStream& stream, Filter filter,
                                            Writer writer) {
  using namespace asio::experimental::awaitable_operators;
  // A call that ends while neither pump waits on the stream (the client neither reads nor
  // writes) would otherwise go unnoticed: the stream's end cancels the socket's operations.
  // The socket is touched only on this coroutine's executor (a strand), and not after the
  // splice is over.
  auto executor = co_await asio::this_coro::executor;
  auto spliced = std::make_shared<bool>(true);
  stream.set_interrupt([executor, spliced, &socket] {
    asio::post(executor, [spliced, &socket] {
      if (!*spliced) return;
      boost::system::error_code ignored;
      socket.cancel(ignored);
    });
  });
  auto up = [&]() -> asio::awaitable<PumpEnd> {
    PumpEnd end = co_await pump_socket_to_stream(socket, stream, std::ref(filter));
    // A filter that also drives the other direction (the API gate waits there for answers it
    // reads here) must hear that no more will come, whatever ended this direction.
    if constexpr (requires(Filter& f) { f.ended(end); }) filter.ended(end);
    co_return end;
  };
  auto down = [&]() -> asio::awaitable<PumpEnd> {
    PumpEnd end = co_await pump_stream_to_socket(stream, socket, std::move(writer));
    if (end != PumpEnd::eof) {
      // The upstream reader may be parked on an idle client: wake it.
      boost::system::error_code ignored;
      socket.close(ignored);
    }
    co_return end;
  };
  auto [u, d] = co_await (up() && down());
  stream.set_interrupt({});
  *spliced = false;
  SpliceResult result{u, d};
  if (!result.clean()) {
    boost::system::error_code ignored;
    socket.close(ignored);
  }
  co_return result;
}

// Runs both directions until each has ended. A failure in one tears the other down too, so a
// splice never outlives a dead peer; the socket is closed unless both ended cleanly. A plain
// tunnel runs on the transport's threads (DirectSplice); hooks need the coroutine pumps.
template <class Socket, UpstreamFilter Filter = SendAsRead, DownstreamWriter Writer = WriteAsIs>
asio::awaitable<SpliceResult> splice(Socket& socket, FrameStream& stream, Filter filter = {},
                                     Writer writer = {}) {
  if constexpr (std::same_as<Filter, SendAsRead> && std::same_as<Writer, WriteAsIs>)
    co_return co_await direct_splice(socket, stream);
  else
    co_return co_await pumped_splice(socket, stream, std::move(filter), std::move(writer));
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
