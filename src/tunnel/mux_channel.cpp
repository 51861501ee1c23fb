#include "offload/tunnel/mux_channel.h"

#include <nghttp2/nghttp2.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <charconv>
#include <limits>
#include <stdexcept>
#include <string_view>

namespace offload::tunnel::mux {
namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);
// Encrypted output waiting for the socket, at most: the writer sends, then frames more. One
// full DATA frame fits, so a bulk stream is one record run and one send() per chunk.
constexpr std::size_t kWriteBatch = 256 * 1024;
// A DATA payload at least this large is encrypted where it lies instead of being copied into
// the batch of small frames first.
constexpr std::size_t kEncryptInPlace = 4 * 1024;
// One read takes what a whole batch of the peer's records holds.
constexpr std::size_t kReadBytes = 256 * 1024 + 64 * 1024;
// A stream's HEADERS: a few short fields. More is not ours, and resets the stream.
constexpr int kMaxHeaderFields = 8;
constexpr std::size_t kMaxHeaderValue = 1024;

nghttp2_nv field(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

// nghttp2's errors are protocol violations or broken invariants: the connection is unusable
// either way, and the code itself goes to no user.
const boost::system::error_code kHttp2Error = asio::error::connection_aborted;

}  // namespace

// nghttp2's callbacks, with access to both classes.
struct Callbacks {
  static Connection& of(void* user) { return *static_cast<Connection*>(user); }
  static Stream* stream(nghttp2_session* session, std::int32_t id) {
    return static_cast<Stream*>(nghttp2_session_get_stream_user_data(session, id));
  }
  static bool batch_full(Connection& c) {
    return c.socket_->pending_bytes() + c.batch_.size() >= kWriteBatch;
  }

  static ssize_t send(nghttp2_session*, const std::uint8_t* data, std::size_t length, int,
                      void* user) {
    auto& c = of(user);
    if (batch_full(c)) return NGHTTP2_ERR_WOULDBLOCK;
    c.batch_.append(reinterpret_cast<const char*>(data), length);
    return static_cast<ssize_t>(length);
  }

  // A DATA frame whose payload we did not copy (NGHTTP2_DATA_FLAG_NO_COPY): its header, then
  // the bytes straight from the stream's read buffer.
  static int send_data(nghttp2_session*, nghttp2_frame* frame, const std::uint8_t* header,
                       std::size_t length, nghttp2_data_source* source, void* user) {
    auto& c = of(user);
    auto& s = *static_cast<Stream*>(source->ptr);
    if (frame->data.padlen != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;  // we never pad
    if (batch_full(c)) return NGHTTP2_ERR_WOULDBLOCK;
    c.batch_.append(reinterpret_cast<const char*>(header), 9);
    const char* payload = s.out_.data() + s.out_begin_;
    if (length >= kEncryptInPlace) {
      if (c.socket_->encrypt(asio::buffer(c.batch_)) ||
          c.socket_->encrypt(asio::buffer(payload, length)))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      c.batch_.clear();
    } else {
      c.batch_.append(payload, length);
    }
    s.out_begin_ += length;
    if (s.out_begin_ == s.out_end_) s.up_wake_.cancel();  // the pump may read again
    return 0;
  }

  static ssize_t read_data(nghttp2_session*, std::int32_t, std::uint8_t*, std::size_t length,
                           std::uint32_t* flags, nghttp2_data_source* source, void*) {
    auto& s = *static_cast<Stream*>(source->ptr);
    const std::size_t available = s.out_end_ - s.out_begin_;
    if (available == 0 && !s.out_eof_) {
      s.out_deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    const std::size_t n = std::min(available, length);
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (n == available && s.out_eof_) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  // DATA frames as large as the windows and our chunk allow (nghttp2's default is 16 KiB).
  static ssize_t read_length(nghttp2_session*, std::uint8_t, std::int32_t, std::int32_t connection,
                             std::int32_t stream, std::uint32_t peer_max_frame, void* user) {
    const auto& c = of(user);
    const std::int64_t n = std::min<std::int64_t>(
        {connection, stream, peer_max_frame, static_cast<std::int64_t>(c.settings_.max_frame)});
    return static_cast<ssize_t>(std::max<std::int64_t>(n, 1));
  }

  static int begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto& c = of(user);
    if (c.role_ != Connection::Role::server || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST)
      return 0;
    auto s = std::make_shared<Stream>(c.shared_from_this(), c.executor_);
    s->id_ = frame->hd.stream_id;
    nghttp2_session_set_stream_user_data(session, s->id_, s.get());
    c.streams_.emplace(s->id_, std::move(s));
    ++c.active_;
    return 0;
  }

  static int header(nghttp2_session* session, const nghttp2_frame* frame, const std::uint8_t* name,
                    std::size_t name_length, const std::uint8_t* value, std::size_t value_length,
                    std::uint8_t, void* user) {
    auto& c = of(user);
    Stream* s = stream(session, frame->hd.stream_id);
    if (!s || s->answered_) return 0;  // trailers: ignored
    if (++s->header_fields_ > kMaxHeaderFields || value_length > kMaxHeaderValue)
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
    const std::string_view n(reinterpret_cast<const char*>(name), name_length);
    const std::string_view v(reinterpret_cast<const char*>(value), value_length);
    if (c.role_ == Connection::Role::server) {
      if (n == "target") s->request_.target = v;
      if (n == "protocol") s->request_.protocol = v;
      if (n == "port") s->request_.port = v;
    } else {
      if (n == "status") {
        int code = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), code);
        if (ec != std::errc{} || end != v.data() + v.size() || code < 0) code = 2;  // UNKNOWN
        s->answer_.code = code;
      }
      if (n == "message") s->answer_.message = v;
    }
    return 0;
  }

  static int frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto& c = of(user);
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    Stream* s = stream(session, frame->hd.stream_id);
    if (!s) return 0;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) s->in_eof_ = true;
    if (frame->hd.type == NGHTTP2_HEADERS && !s->answered_) {
      if (c.role_ == Connection::Role::server && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        if (c.on_request_)
          c.on_request_(s->shared_from_this());
        else
          s->respond({14, "the runner takes no connections here"});  // UNAVAILABLE
        return 0;
      }
      if (c.role_ == Connection::Role::client && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        s->answered_ = true;
        if (s->answer_.code != 0) {
          // Refused: what was sent ahead is dropped there, the connection closes here.
          s->result_.refusal = s->answer_.message.empty() ? "refused" : s->answer_.message;
          s->refused_ = true;
          s->abort(NGHTTP2_CANCEL);
          return 0;
        }
      }
    }
    s->wake();
    return 0;
  }

  static int frame_sent(nghttp2_session* session, const nghttp2_frame* frame, void*) {
    // A refusal's HEADERS are out: now the reset, which nghttp2 would otherwise send first.
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* s = stream(session, frame->hd.stream_id);
    if (s && s->refused_ && !s->closed_)
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id_, NGHTTP2_NO_ERROR);
    return 0;
  }

  static int data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t id,
                        const std::uint8_t* data, std::size_t length, void* user) {
    auto& c = of(user);
    // The connection's window comes back at once: only the stream's waits for delivery.
    c.pending_consumes_.push_back({0, length});
    Stream* s = stream(session, id);
    if (!s || s->aborted_) return 0;  // dropped: the stream's window no longer matters
    const char* bytes = reinterpret_cast<const char*>(data);
    std::size_t written = 0;
    // Straight to the socket when it takes it: no copy, no wake-up of the pump.
    if (s->plain_ && s->plain_->is_open() && !s->down_done_ && !s->down_writing_ &&
        s->in_.empty()) {
      const ssize_t n =
          ::send(s->plain_->native_handle(), bytes, length, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        written = static_cast<std::size_t>(n);
        s->result_.bytes_down += written;
        c.consume(*s, written);
      }
    }
    if (written < length) {
      s->in_.append(bytes + written, length - written);
      s->down_wake_.cancel();
    }
    return 0;
  }

  static int stream_close(nghttp2_session*, std::int32_t id, std::uint32_t error, void* user) {
    auto& c = of(user);
    auto it = c.streams_.find(id);
    if (it == c.streams_.end()) return 0;
    auto s = it->second;  // alive until this returns, whoever else holds it
    s->closed_ = true;
    s->close_error_ = error;
    // Bytes that will never be written give their window back (a refused stream's too: its
    // data arrived ahead of the answer).
    if (error != NGHTTP2_NO_ERROR || s->refused_) s->discard_incoming();
    s->wake();
    c.forget(id);
    return 0;
  }
};

// ---- Stream ---------------------------------------------------------------------------------

Stream::Stream(std::shared_ptr<Connection> connection, const asio::any_io_executor& executor)
    : connection_(std::move(connection)),
      window_(connection_->settings_.stream_window),
      up_wake_(executor),
      down_wake_(executor) {
  up_wake_.expires_at(asio::steady_timer::time_point::max());
  down_wake_.expires_at(asio::steady_timer::time_point::max());
}

Stream::~Stream() = default;

asio::any_io_executor Stream::get_executor() const { return connection_->executor_; }

void Stream::wake() {
  up_wake_.cancel();
  down_wake_.cancel();
}

bool Stream::reset() const { return aborted_ || (closed_ && close_error_ != NGHTTP2_NO_ERROR); }

void Stream::discard_incoming() {
  if (in_.empty()) return;
  connection_->consume(*this, in_.size());
  in_.clear();
}

void Stream::abort(std::uint32_t http2_error) {
  if (!closed_ && !aborted_ && connection_->state_ == Connection::State::running)
    nghttp2_submit_rst_stream(connection_->session_, NGHTTP2_FLAG_NONE, id_, http2_error);
  aborted_ = true;
  discard_incoming();
  wake();
  connection_->kick();
}

void Stream::respond(const Answer& answer) {
  if (answered_ || closed_ || connection_->state_ != Connection::State::running) return;
  answered_ = true;
  const std::string code = std::to_string(answer.code);
  const std::string message = answer.message.substr(0, kMaxHeaderValue);
  const nghttp2_nv fields[] = {field("status", code), field("message", message)};
  int rv;
  if (answer.code == 0) {
    nghttp2_data_provider provider{};
    provider.source.ptr = this;
    provider.read_callback = &Callbacks::read_data;
    rv = nghttp2_submit_response(connection_->session_, id_, fields, 2, &provider);
  } else {
    refused_ = true;
    rv = nghttp2_submit_response(connection_->session_, id_, fields, 2, nullptr);
  }
  if (rv != 0) abort(NGHTTP2_INTERNAL_ERROR);
  connection_->kick();
}

asio::awaitable<ChannelSpliceResult> Stream::splice(asio::ip::tcp::socket& plain) {
  using namespace asio::experimental::awaitable_operators;
  auto self = shared_from_this();
  plain_ = &plain;
  co_await (pump_up(plain) && pump_down(plain));
  plain_ = nullptr;
  co_return result_;
}

void Stream::splice_failed() {
  asio::post(connection_->executor_, [self = shared_from_this()] { self->abort(NGHTTP2_CANCEL); });
}

namespace {
// After a failure both ends close: the other direction's pending operation ends, and the
// socket's peer sees a reset instead of waiting for bytes that will not come.
void close_plain(asio::ip::tcp::socket& plain) {
  boost::system::error_code ignored;
  plain.close(ignored);
}
}  // namespace

asio::awaitable<void> Stream::pump_up(asio::ip::tcp::socket& plain) {
  auto& c = *connection_;
  ChunkSizer sizer;
  for (;;) {
    // The last read is framed before the next one: the stream's flow control reaches the
    // socket, so a peer that stops reading stops this read.
    while (!reset() && !closed_ && out_begin_ != out_end_) co_await up_wake_.async_wait(kToken);
    if (reset() || closed_) {
      result_.up = PumpEnd::stream_error;
      break;
    }
    out_begin_ = out_end_ = 0;
    if (out_.size() < sizer.next()) out_.resize(sizer.next());
    auto [ec, n] = co_await plain.async_read_some(asio::buffer(out_.data(), sizer.next()), kToken);
    if (reset() || closed_) {
      result_.up = PumpEnd::stream_error;
      break;
    }
    if (ec == asio::error::eof) {
      out_eof_ = true;  // END_STREAM once what is left is framed
      result_.up = PumpEnd::eof;
    } else if (ec) {
      result_.up = PumpEnd::local_error;
      abort(NGHTTP2_CANCEL);
      break;
    } else {
      sizer.filled(n);
      out_end_ = n;
      result_.bytes_up += n;
    }
    if (out_deferred_) {
      out_deferred_ = false;
      nghttp2_session_resume_data(c.session_, id_);
    }
    c.kick();
    if (out_eof_) break;
  }
  if (result_.up != PumpEnd::eof) close_plain(plain);
}

asio::awaitable<void> Stream::pump_down(asio::ip::tcp::socket& plain) {
  auto& c = *connection_;
  for (;;) {
    while (in_.empty() && !in_eof_ && !closed_ && !aborted_)
      co_await down_wake_.async_wait(kToken);
    if (reset()) {
      discard_incoming();
      result_.down = PumpEnd::stream_error;
      break;
    }
    if (!in_.empty()) {
      in_sending_.clear();
      std::swap(in_, in_sending_);
      down_writing_ = true;
      auto [ec, n] = co_await asio::async_write(plain, asio::buffer(in_sending_), kToken);
      down_writing_ = false;
      c.consume(*this, in_sending_.size());
      if (ec) {
        result_.down = PumpEnd::local_error;
        abort(NGHTTP2_CANCEL);
        break;
      }
      result_.bytes_down += n;
      continue;
    }
    if (in_eof_) {
      boost::system::error_code ec;
      plain.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
      result_.down = ec ? PumpEnd::local_error : PumpEnd::eof;
      break;
    }
    result_.down = PumpEnd::stream_error;  // closed without END_STREAM
    break;
  }
  down_done_ = true;
  if (result_.down != PumpEnd::eof) {
    if (!closed_) abort(NGHTTP2_CANCEL);
    close_plain(plain);
  }
}

// ---- Connection -----------------------------------------------------------------------------

Connection::Connection(asio::any_io_executor executor, Role role, Settings settings,
                       RequestHandler on_request)
    : executor_(std::move(executor)),
      role_(role),
      settings_(settings),
      on_request_(std::move(on_request)),
      writer_wake_(executor_),
      ready_wake_(executor_) {
  writer_wake_.expires_at(asio::steady_timer::time_point::max());
  ready_wake_.expires_at(asio::steady_timer::time_point::max());
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_option* option = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&option) != 0) {
    nghttp2_session_callbacks_del(callbacks);
    throw std::runtime_error("cannot create an HTTP/2 session (out of memory?)");
  }
  nghttp2_session_callbacks_set_send_callback(callbacks, &Callbacks::send);
  nghttp2_session_callbacks_set_send_data_callback(callbacks, &Callbacks::send_data);
  nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks,
                                                                 &Callbacks::read_length);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &Callbacks::begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &Callbacks::header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Callbacks::frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, &Callbacks::frame_sent);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Callbacks::data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Callbacks::stream_close);
  // Streams are tunnels, not HTTP messages; window goes back only when bytes were delivered.
  nghttp2_option_set_no_http_messaging(option, 1);
  nghttp2_option_set_no_auto_window_update(option, 1);
  nghttp2_option_set_peer_max_concurrent_streams(option, settings_.max_streams);
  const int rv = role_ == Role::client
                     ? nghttp2_session_client_new2(&session_, callbacks, this, option)
                     : nghttp2_session_server_new2(&session_, callbacks, this, option);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_option_del(option);
  if (rv != 0) throw std::runtime_error("cannot create an HTTP/2 session (out of memory?)");
}

Connection::~Connection() { nghttp2_session_del(session_); }

void Connection::kick() { writer_wake_.cancel(); }

void Connection::forget(std::int32_t id) {
  if (streams_.erase(id) != 0) --active_;
}

void Connection::consume(Stream& stream, std::size_t bytes) {
  if (bytes == 0 || state_ != State::running) return;
  // Told to nghttp2 outside its callbacks (this may run inside one), before the writer's next
  // round.
  WindowChange change{stream.id_, bytes, 0};
  // A stream that delivers its window's worth is not stalled: let it have more in flight.
  stream.delivered_since_grow_ += bytes;
  if (!stream.closed_ && stream.delivered_since_grow_ >= stream.window_ &&
      stream.window_ < settings_.max_stream_window) {
    stream.window_ = std::min<std::uint64_t>(std::uint64_t(stream.window_) * 2,
                                             settings_.max_stream_window);
    stream.delivered_since_grow_ = 0;
    change.grow_to = stream.window_;
  }
  pending_consumes_.push_back(change);
  kick();
}

void Connection::apply_consumes() {
  for (const auto& change : pending_consumes_) {
    if (change.stream == 0) {
      nghttp2_session_consume_connection(session_, change.consumed);
      continue;
    }
    // A closed stream is no longer known: nothing to do for it.
    nghttp2_session_consume_stream(session_, change.stream, change.consumed);
    if (change.grow_to != 0)
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, change.stream,
                                            static_cast<std::int32_t>(change.grow_to));
  }
  pending_consumes_.clear();
}

void Connection::fail(boost::system::error_code ec) {
  if (state_ == State::failed) return;
  state_ = State::failed;
  failure_ = ec ? ec : asio::error::connection_reset;
  usable_ = false;
  auto streams = std::move(streams_);
  streams_.clear();
  active_ = 0;
  for (auto& [id, s] : streams) {
    s->closed_ = true;
    s->close_error_ = NGHTTP2_INTERNAL_ERROR;
    s->wake();
  }
  if (socket_) {
    boost::system::error_code ignored;
    socket_->next_layer().close(ignored);
  }
  writer_wake_.cancel();
  ready_wake_.cancel();
}

void Connection::setup_failed(boost::system::error_code error, bool refused, Answer answer) {
  refused_ = refused;
  refusal_ = std::move(answer);
  fail(error);
}

void Connection::close() {
  asio::post(executor_, [self = shared_from_this()] { self->fail(asio::error::operation_aborted); });
}

asio::awaitable<void> Connection::run(std::shared_ptr<TlsSocket> socket) {
  using namespace asio::experimental::awaitable_operators;
  auto self = shared_from_this();
  socket_ = std::move(socket);
  if (state_ != State::connecting) {
    boost::system::error_code ignored;
    socket_->next_layer().close(ignored);  // closed before it came up
    co_return;
  }
  if (!begin()) co_return;
  co_await (read_loop() && write_loop());
}

bool Connection::begin() {
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings_.stream_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, settings_.max_frame},
  };
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 3) != 0 ||
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                            static_cast<std::int32_t>(settings_.connection_window)) != 0) {
    fail(asio::error::no_memory);
    return false;
  }
  state_ = State::running;
  ready_wake_.cancel();
  return true;
}

void Connection::start_unconnected() {
  if (state_ == State::connecting) begin();
}

bool Connection::receive(const char* data, std::size_t size) {
  if (state_ != State::running) return false;
  const auto rv =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(data), size);
  // Window for what the callbacks wrote straight to the sockets, or dropped.
  if (state_ == State::running) apply_consumes();
  if (rv < 0) {
    fail(kHttp2Error);
    return false;
  }
  kick();
  return state_ == State::running;
}

asio::awaitable<void> Connection::read_loop() {
  std::vector<char> buffer(kReadBytes);
  for (;;) {
    auto [ec, n] = co_await socket_->read_some(asio::buffer(buffer));
    if (state_ != State::running) co_return;
    if (ec) {
      fail(ec);
      co_return;
    }
    if (!receive(buffer.data(), n)) co_return;
  }
}

asio::awaitable<void> Connection::write_loop() {
  for (;;) {
    if (state_ == State::running) apply_consumes();
    while (state_ == State::running && !nghttp2_session_want_write(session_)) {
      // Both ways done (a GOAWAY went out after a protocol error, say): the connection ends.
      if (!nghttp2_session_want_read(session_)) {
        fail(asio::error::eof);
        co_return;
      }
      co_await writer_wake_.async_wait(kToken);
      if (state_ == State::running) apply_consumes();
    }
    if (state_ != State::running) co_return;
    int rv = nghttp2_session_send(session_);
    if (rv == 0 && !batch_.empty()) {
      if (socket_->encrypt(asio::buffer(batch_))) rv = NGHTTP2_ERR_CALLBACK_FAILURE;
      batch_.clear();
    }
    if (rv != 0) {
      fail(kHttp2Error);
      co_return;
    }
    if (socket_->pending_bytes() == 0) {
      // nghttp2 wanted to write but had nothing ready after all: wait for news.
      co_await writer_wake_.async_wait(kToken);
      continue;
    }
    if (auto ec = co_await socket_->flush()) {
      fail(ec);
      co_return;
    }
  }
}

asio::awaitable<Connection::Opened> Connection::open(const Request& request) {
  auto self = shared_from_this();
  while (state_ == State::connecting) co_await ready_wake_.async_wait(kToken);
  Opened out;
  if (state_ != State::running) {
    out.error = refused_ ? boost::system::error_code(asio::error::connection_refused) : failure_;
    out.refused = refused_;
    out.answer = refusal_;
    co_return out;
  }
  auto s = std::make_shared<Stream>(self, executor_);
  s->answer_ = {2, "the runner's answer named no status"};
  const nghttp2_nv fields[] = {field("target", request.target),
                               field("protocol", request.protocol), field("port", request.port)};
  nghttp2_data_provider provider{};
  provider.source.ptr = s.get();
  provider.read_callback = &Callbacks::read_data;
  const std::int32_t id = nghttp2_submit_request(session_, nullptr, fields, 3, &provider, s.get());
  if (id < 0) {
    // Out of stream ids (after a billion streams) or memory: the next open takes another.
    usable_ = false;
    out.error = asio::error::try_again;
    co_return out;
  }
  s->id_ = id;
  streams_.emplace(id, s);
  ++active_;
  kick();
  // The answer is not awaited: the first bytes follow the request at once (the runner holds
  // them, within the stream's window, until it has dialled), which saves a round trip on every
  // new connection. A refusal resets the stream and shows in the splice's result.
  out.stream = std::move(s);
  co_return out;
}

}  // namespace offload::tunnel::mux
