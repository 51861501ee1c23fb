#include "offload/tunnel/data_channel.h"

#include "offload/tunnel/event_loops.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <vector>

namespace offload::tunnel::data_channel {
namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

void put_length(char* out, std::uint32_t n) {
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
}

std::uint32_t get_length(const char* in) {
  auto b = [in](int i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

std::string length_prefixed(const google::protobuf::MessageLite& message) {
  std::string out(4, '\0');
  message.AppendToString(&out);
  put_length(out.data(), static_cast<std::uint32_t>(out.size() - 4));
  return out;
}

// Parses "len32 message" at the start of `bytes` into `message`.
template <class Parsed>
Parsed parse_prefixed(std::string_view bytes, std::size_t offset) {
  Parsed parsed;
  parsed.needed = offset + 4;
  if (bytes.size() < parsed.needed) return parsed;
  const std::uint32_t length = get_length(bytes.data() + offset);
  if (length > kMaxMessageBytes) {
    parsed.status = ParseStatus::too_long;
    return parsed;
  }
  parsed.needed += length;
  if (bytes.size() < parsed.needed) return parsed;
  if (!parsed.message.ParseFromArray(bytes.data() + offset + 4, static_cast<int>(length))) {
    parsed.status = ParseStatus::bad_message;
    return parsed;
  }
  parsed.status = ParseStatus::complete;
  parsed.consumed = parsed.needed;
  return parsed;
}

// Reads one "len32 message" (after `prefix`, already read) into a buffer and parses it.
template <class Parsed>
asio::awaitable<std::pair<boost::system::error_code, Parsed>> read_prefixed(
    TlsStream& channel, std::string bytes, Parsed (*parse)(std::string_view)) {
  for (;;) {
    Parsed parsed = parse(bytes);
    if (parsed.status != ParseStatus::need_more)
      co_return std::pair{boost::system::error_code{}, std::move(parsed)};
    const std::size_t have = bytes.size();
    bytes.resize(parsed.needed);
    auto ec =
        co_await channel.read_exactly(asio::buffer(bytes.data() + have, bytes.size() - have));
    if (ec) co_return std::pair{ec, Parsed{}};
  }
}

// Closes both ends after a failure: the other direction's pending operation ends with
// operation_aborted, and the peers see a reset instead of waiting for bytes that will not come.
void close_both(asio::ip::tcp::socket& plain, TlsStream& channel) {
  boost::system::error_code ignored;
  plain.close(ignored);
  channel.next_layer().close(ignored);
}

asio::awaitable<void> pump_up(asio::ip::tcp::socket& plain, TlsStream& channel,
                              DataSpliceResult& result) {
  // The chunk's length goes in front of its bytes in the same buffer: one SSL_write, so no
  // 4-byte record of its own.
  ChunkSizer sizer;
  std::vector<char> buffer(4 + sizer.next());
  for (;;) {
    if (buffer.size() < 4 + sizer.next()) buffer.resize(4 + sizer.next());
    auto [rec, n] =
        co_await plain.async_read_some(asio::buffer(buffer.data() + 4, sizer.next()), kToken);
    if (rec == asio::error::eof) {
      put_length(buffer.data(), 0);
      auto wec = co_await channel.write(asio::buffer(buffer.data(), 4));
      result.up = wec ? PumpEnd::stream_error : PumpEnd::eof;
      break;
    }
    if (rec) {
      result.up = PumpEnd::local_error;
      break;
    }
    sizer.filled(n);
    put_length(buffer.data(), static_cast<std::uint32_t>(n));
    auto wec = co_await channel.write(asio::buffer(buffer.data(), 4 + n));
    if (wec) {
      result.up = PumpEnd::stream_error;
      break;
    }
    result.bytes_up += n;
  }
  if (result.up != PumpEnd::eof) close_both(plain, channel);
}

asio::awaitable<void> pump_down(asio::ip::tcp::socket& plain, TlsStream& channel,
                                DataSpliceResult& result) {
  std::vector<char> buffer(kFirstChunkSize);
  char length_bytes[4];
  for (;;) {
    auto lec = co_await channel.read_exactly(asio::buffer(length_bytes));
    const std::uint32_t length = lec ? 0 : get_length(length_bytes);
    if (lec || length > kMaxChunkBytes) {
      result.down = PumpEnd::stream_error;
      break;
    }
    if (length == 0) {
      boost::system::error_code ec;
      plain.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
      result.down = ec ? PumpEnd::local_error : PumpEnd::eof;
      break;
    }
    if (buffer.size() < length) buffer.resize(length);
    auto rec = co_await channel.read_exactly(asio::buffer(buffer.data(), length));
    if (rec) {
      result.down = PumpEnd::stream_error;
      break;
    }
    auto [wec, w] = co_await asio::async_write(plain, asio::buffer(buffer.data(), length), kToken);
    if (wec) {
      result.down = PumpEnd::local_error;
      break;
    }
    result.bytes_down += length;
  }
  if (result.down != PumpEnd::eof) close_both(plain, channel);
}

}  // namespace

const char* to_string(ParseStatus status) {
  switch (status) {
    case ParseStatus::complete: return "complete";
    case ParseStatus::need_more: return "incomplete";
    case ParseStatus::bad_magic: return "not a data channel (bad magic)";
    case ParseStatus::too_long: return "header too long";
    case ParseStatus::bad_message: return "header does not parse";
  }
  return "?";
}

std::string encode_open(const v1::DataChannelOpen& open, unsigned version) {
  const std::string_view magic =
      version >= 3 ? kSealedMagic : version == 2 ? kMultiplexedMagic : kMagic;
  return std::string(magic) + length_prefixed(open);
}

std::string encode_accept(const v1::DataChannelAccept& accept) { return length_prefixed(accept); }

ParsedOpen parse_open(std::string_view bytes) {
  // "ODC" and the version digit, which picks the wire format.
  const std::size_t check = std::min(bytes.size(), kMagic.size());
  const bool ours = bytes.substr(0, check) == kMagic.substr(0, check) ||
                    bytes.substr(0, check) == kMultiplexedMagic.substr(0, check) ||
                    bytes.substr(0, check) == kSealedMagic.substr(0, check);
  if (!ours) {
    ParsedOpen bad;
    bad.status = ParseStatus::bad_magic;
    return bad;
  }
  auto parsed = parse_prefixed<ParsedOpen>(bytes, kMagic.size());
  if (bytes.size() >= kMagic.size()) parsed.version = bytes[kMagic.size() - 1] - '0';
  return parsed;
}

ParsedAccept parse_accept(std::string_view bytes) {
  return parse_prefixed<ParsedAccept>(bytes, 0);
}

std::string encode_target(const v1::TunnelOpen& target) { return length_prefixed(target); }

ParsedTarget parse_target(std::string_view bytes) {
  return parse_prefixed<ParsedTarget>(bytes, 0);
}

namespace {
// Reads one whole message with `parse`; `why` says what was wrong when it was not one.
template <class Parsed, class Message>
asio::awaitable<boost::system::error_code> read_message(TlsStream& channel, Message& message,
                                                        std::string& why,
                                                        Parsed (*parse)(std::string_view),
                                                        unsigned* version = nullptr) {
  auto [ec, parsed] = co_await read_prefixed<Parsed>(channel, {}, parse);
  if (ec) {
    why = ec.message();
    co_return ec;
  }
  if (parsed.status != ParseStatus::complete) {
    why = to_string(parsed.status);
    co_return asio::error::invalid_argument;
  }
  message = std::move(parsed.message);
  if constexpr (requires(const Parsed& p) { p.version; })
    if (version) *version = parsed.version;
  co_return boost::system::error_code{};
}
}  // namespace

asio::awaitable<boost::system::error_code> read_target(TlsStream& channel, v1::TunnelOpen& target,
                                                       std::string& why) {
  return read_message(channel, target, why, &parse_target);
}

asio::awaitable<boost::system::error_code> read_open(TlsStream& channel, v1::DataChannelOpen& open,
                                                     std::string& why, unsigned* version) {
  return read_message(channel, open, why, &parse_open, version);
}

asio::awaitable<boost::system::error_code> write_accept(TlsStream& channel,
                                                        const v1::DataChannelAccept& accept) {
  auto bytes = encode_accept(accept);
  co_return co_await channel.write(asio::buffer(bytes));
}

namespace {
asio::awaitable<boost::system::error_code> exchange_open(TlsStream& channel,
                                                         const v1::DataChannelOpen& open,
                                                         v1::DataChannelAccept& accept,
                                                         unsigned version) {
  auto bytes = encode_open(open, version);
  if (auto wec = co_await channel.write(asio::buffer(bytes))) co_return wec;
  auto [ec, parsed] = co_await read_prefixed<ParsedAccept>(channel, {}, &parse_accept);
  if (ec) co_return ec;
  if (parsed.status != ParseStatus::complete) co_return asio::error::invalid_argument;
  accept = std::move(parsed.message);
  co_return boost::system::error_code{};
}
}  // namespace

asio::awaitable<boost::system::error_code> exchange_open(TlsStream& channel,
                                                         const v1::DataChannelOpen& open,
                                                         v1::DataChannelAccept& accept) {
  return exchange_open(channel, open, accept, 1);
}

Dialer::Dialer(std::string host, unsigned short port, std::shared_ptr<asio::ssl::context> tls,
               std::string session_id, std::string session_token,
               std::chrono::milliseconds setup_timeout, unsigned version)
    : host_(std::move(host)),
      port_(port),
      tls_(std::move(tls)),
      session_id_(std::move(session_id)),
      session_token_(std::move(session_token)),
      setup_timeout_(setup_timeout),
      version_(version) {}

namespace {
// A warm channel the runner closed (it restarted, or stopped) is readable at end-of-file; one
// that is fine has nothing to read.
bool still_open(TlsStream& channel) {
  char c;
  const ssize_t n = ::recv(channel.next_layer().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}
}  // namespace

std::size_t Dialer::warm_channels() const {
  std::lock_guard lock(mu_);
  return warm_.size();
}

std::shared_ptr<TlsStream> Dialer::take_warm() {
  std::lock_guard lock(mu_);
  if (warm_.empty()) return nullptr;
  auto channel = std::move(warm_.front());
  warm_.pop_front();
  return channel;
}

void Dialer::refill(const asio::any_io_executor& executor) {
  std::size_t wanted;
  {
    std::lock_guard lock(mu_);
    if (warm_.size() + warming_ >= kWarmChannels) return;
    wanted = kWarmChannels - warm_.size() - warming_;
    warming_ += wanted;
  }
  for (std::size_t i = 0; i < wanted; ++i) {
    asio::co_spawn(
        asio::make_strand(executor),
        [self = shared_from_this()]() -> asio::awaitable<void> {
          auto opened = co_await self->connect(nullptr);
          std::lock_guard lock(self->mu_);
          --self->warming_;
          // A warm channel that fails is not retried here: the next connection dials its own
          // and asks for more.
          if (opened.channel) self->warm_.push_back(std::move(opened.channel));
        },
        asio::detached);
  }
}

Dialer::~Dialer() {
  for (auto& connection : multiplexed_) connection->close();
}

std::size_t Dialer::multiplexed_connections() const {
  std::lock_guard lock(mu_);
  return multiplexed_.size();
}

std::shared_ptr<mux::Connection> Dialer::pick_connection(const asio::any_io_executor& here) {
  std::shared_ptr<mux::Connection> chosen;
  {
    std::lock_guard lock(mu_);
    std::erase_if(multiplexed_, [](const auto& c) { return !c->usable(); });
    // The connection on the caller's own loop, when there is one: the forwarded connection then
    // lives on one thread end to end, with no hand-off at all (event_loops.h).
    for (auto& c : multiplexed_)
      if (c->get_executor() == here) return c;
    if (multiplexed_.size() >= kMultiplexedConnections) {
      // The least busy one: bulk streams spread over both cores.
      for (auto& c : multiplexed_)
        if (!chosen || c->active_streams() < chosen->active_streams()) chosen = c;
      return chosen;
    }
    // On the caller's loop if it runs on one of the data plane's (the port forwarder accepts
    // there), else on the next loop.
    auto& loops = EventLoops::data_plane();
    chosen = std::make_shared<mux::Connection>(loops.owns(here) ? here : loops.next(),
                                               mux::Connection::Role::client);
    multiplexed_.push_back(chosen);
  }
  // It comes up on its own strand; opens meanwhile wait for it there.
  asio::co_spawn(
      chosen->get_executor(),
      [weak = weak_from_this(), chosen]() -> asio::awaitable<void> {
        auto self = weak.lock();
        if (!self) co_return;
        auto opened = co_await self->connect(nullptr, self->version_);
        self.reset();  // the connection does not keep the dialer alive: ~Dialer closes it
        if (!opened.channel) {
          chosen->setup_failed(opened.error, opened.refused,
                               {opened.answer.code(), opened.answer.message()});
          co_return;
        }
        co_await chosen->run(std::move(opened.channel));
      },
      asio::detached);
  return chosen;
}

asio::awaitable<Dialer::Opened> Dialer::open_multiplexed(std::uint32_t host_port) {
  auto here = co_await asio::this_coro::executor;
  const mux::Request request{"published-port", "tcp", std::to_string(host_port)};
  Opened out;
  // A connection that ran out of stream ids is replaced; twice is enough.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto connection = pick_connection(here);
    // Not `?:` between two co_awaits: GCC 12 miscompiles that (a free of a bad pointer).
    mux::Connection::Opened opened;
    if (connection->get_executor() == here)
      opened = co_await connection->open(request);
    else
      opened = co_await asio::co_spawn(connection->get_executor(), connection->open(request),
                                       asio::use_awaitable);
    out = Opened{};
    out.error = opened.error;
    out.refused = opened.refused;
    out.answer.set_code(opened.answer.code);
    out.answer.set_message(opened.answer.message);
    out.stream = std::move(opened.stream);
    if (out.error != asio::error::try_again) break;
  }
  co_return out;
}

asio::awaitable<Dialer::Opened> Dialer::open_port(std::uint32_t host_port) {
  if (version_ >= 2) co_return co_await open_multiplexed(host_port);
  auto executor = co_await asio::this_coro::executor;
  v1::TunnelOpen target;
  target.set_target(v1::TunnelOpen::TARGET_PUBLISHED_PORT);
  target.set_host_port(host_port);
  target.set_protocol("tcp");
  while (auto warm = take_warm()) {
    if (!still_open(*warm)) continue;
    refill(executor);
    Opened out;
    auto bytes = encode_target(target);
    if (auto ec = co_await warm->write(asio::buffer(bytes))) continue;  // it died: the next
    auto [ec, parsed] = co_await read_prefixed<ParsedAccept>(*warm, {}, &parse_accept);
    if (ec || parsed.status != ParseStatus::complete) continue;
    out.answer = std::move(parsed.message);
    if (out.answer.code() != 0) {
      out.refused = true;
      out.error = asio::error::connection_refused;
      co_return out;
    }
    out.channel = std::move(warm);
    co_return out;
  }
  refill(executor);
  co_return co_await connect(&target);
}

asio::awaitable<Dialer::Opened> Dialer::connect(const v1::TunnelOpen* target, unsigned version) {
  auto executor = co_await asio::this_coro::executor;
  Opened out;
  auto channel =
      std::make_shared<TlsStream>(asio::ip::tcp::socket(executor), *tls_, TlsSocket::Side::client);
  // One deadline over connect, handshake and answer: when it fires first, the socket is closed
  // and whatever is pending fails. `settled` stops a firing that is already queued from closing
  // a channel that made it.
  struct Race {
    std::atomic<bool> expired{false};
    std::atomic<bool> settled{false};
  };
  auto race = std::make_shared<Race>();
  asio::steady_timer deadline(executor, setup_timeout_);
  deadline.async_wait([race, weak = std::weak_ptr<TlsStream>(channel)](
                          const boost::system::error_code& ec) {
    if (ec || race->settled) return;
    race->expired = true;
    if (auto c = weak.lock()) {
      boost::system::error_code ignored;
      c->next_layer().close(ignored);
    }
  });
  auto fail = [&](boost::system::error_code ec) {
    race->settled = true;
    out.error = race->expired ? asio::error::timed_out : ec;
    return std::move(out);
  };

  // A runner named by its address (the usual case: the gRPC endpoint's host) is dialled at
  // once. Asio resolves on a private thread of its own, a hop there and back per channel.
  std::vector<asio::ip::tcp::endpoint> endpoints;
  boost::system::error_code not_literal;
  const auto literal = asio::ip::make_address(host_, not_literal);
  if (!not_literal) {
    endpoints.emplace_back(literal, port_);
  } else {
    asio::ip::tcp::resolver resolver(executor);
    auto [rec, resolved] = co_await resolver.async_resolve(host_, std::to_string(port_), kToken);
    if (rec) co_return fail(rec);
    endpoints.assign(resolved.begin(), resolved.end());
  }
  auto [cec, endpoint] = co_await asio::async_connect(channel->next_layer(), endpoints, kToken);
  if (cec) co_return fail(cec);
  boost::system::error_code ignored;
  channel->next_layer().set_option(asio::ip::tcp::no_delay(true), ignored);
  if (auto hec = co_await channel->handshake()) co_return fail(hec);

  v1::DataChannelOpen open;
  open.set_session_id(session_id_);
  open.set_session_token(session_token_);
  if (target) *open.mutable_open() = *target;
  if (auto ec = co_await exchange_open(*channel, open, out.answer, version)) co_return fail(ec);
  if (race->expired) co_return fail(asio::error::timed_out);
  race->settled = true;
  deadline.cancel();
  if (out.answer.code() != 0) {
    out.refused = true;
    out.error = asio::error::connection_refused;
    co_return out;
  }
  // ODC3: the accept was the runner's last TLS record; sealed records from here on.
  if (version >= 3 && !target)
    if (auto ec = channel->seal_records()) co_return fail(ec);
  out.channel = std::move(channel);
  co_return out;
}

asio::awaitable<DataSpliceResult> splice(asio::ip::tcp::socket& plain, TlsStream& channel) {
  using namespace asio::experimental::awaitable_operators;
  DataSpliceResult result;
  co_await (pump_up(plain, channel, result) && pump_down(plain, channel, result));
  co_return result;
}

namespace {
asio::awaitable<DataSpliceResult> splice_owned(std::shared_ptr<mux::Stream> stream,
                                               asio::ip::tcp::socket socket) {
  co_return co_await stream->splice(socket);
}
}  // namespace

asio::awaitable<DataSpliceResult> splice(asio::ip::tcp::socket& plain, Dialer::Opened& opened) {
  if (!opened.stream) co_return co_await splice(plain, *opened.channel);
  auto executor = opened.stream->get_executor();
  if (plain.get_executor() == executor) co_return co_await opened.stream->splice(plain);
  // The socket moves to the stream's loop, so that its completions run on the thread that
  // polls it (event_loops.h); the coroutine there owns it.
  boost::system::error_code ec;
  const auto protocol = plain.local_endpoint(ec).protocol();
  if (ec) {
    opened.stream->splice_failed();
    DataSpliceResult failed;
    failed.up = failed.down = PumpEnd::local_error;
    co_return failed;
  }
  asio::ip::tcp::socket moved(executor, protocol, plain.release(ec));
  // A coroutine function, not a capturing lambda: GCC 12 destroys a lambda temporary of a
  // co_await expression twice.
  co_return co_await asio::co_spawn(executor, splice_owned(opened.stream, std::move(moved)),
                                    asio::use_awaitable);
}

}  // namespace offload::tunnel::data_channel
