#include "offload/daemon/api_proxy.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <utility>

#include "offload/daemon/bind_sync_await.h"
#include "offload/http/request_framer.h"

namespace offload::daemon {
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using asio::local::stream_protocol;
using tunnel::Outgoing;
using tunnel::PumpEnd;
using tunnel::TunnelFrame;
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

namespace {

enum class Route { other, create, start, wait, shows_sources };

// GET requests whose answers show bind sources: container inspect and list, events, disk usage.
bool shows_sources(std::string_view path) {
  if (path == "/containers/json" || path == "/events" || path == "/system/df") return true;
  constexpr std::string_view prefix = "/containers/";
  return path.starts_with(prefix) && path.ends_with("/json") &&
         path.size() > prefix.size() + 5;
}

Route route_of(const http::RequestHead& head) {
  if (head.method == "GET") return shows_sources(head.path()) ? Route::shows_sources : Route::other;
  if (head.method != "POST") return Route::other;
  const std::string path = head.path();
  if (path == "/containers/create") return Route::create;
  constexpr std::string_view prefix = "/containers/";
  std::string_view rest(path);
  if (!rest.starts_with(prefix)) return Route::other;
  rest.remove_prefix(prefix.size());
  const auto slash = rest.find('/');
  if (slash == 0 || slash == std::string_view::npos) return Route::other;
  const auto action = rest.substr(slash + 1);
  if (action == "start") return Route::start;
  if (action == "wait") return Route::wait;
  return Route::other;
}

// Finds the end of a response head ("\r\n\r\n") however the reads split it.
class HeadEndScanner {
 public:
  // The offset just past the head's end within `data`, or npos if it does not end there.
  std::size_t feed(std::string_view data) {
    static constexpr std::string_view kEnd = "\r\n\r\n";
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (data[i] == kEnd[matched_]) {
        if (++matched_ == kEnd.size()) return i + 1;
      } else {
        matched_ = data[i] == '\r' ? 1 : 0;
      }
    }
    return std::string_view::npos;
  }

 private:
  std::size_t matched_ = 0;
};

}  // namespace

std::string head_with_content_length(std::string_view raw_head, std::size_t body_size) {
  return http::head_with_content_length(raw_head, body_size);
}

struct ApiProxy::Impl {
  Impl(stream_protocol::socket& c, tunnel::FrameStream& s, BindSync* b, std::uint64_t i)
      : client(c), stream(s), bind_sync(b), id(i), client_free(c.get_executor()) {
    client_free.expires_at(asio::steady_timer::time_point::max());
  }

  // --- client → stream: tunnel::splice's upstream filter ----------------------------------
  asio::awaitable<Outgoing> filter(const TunnelFrame& read);
  Outgoing failed() const { return Outgoing::end(*up_failed); }
  asio::awaitable<bool> send(TunnelFrame& frame);
  void forward_to(std::size_t end);
  void materialize();
  asio::awaitable<bool> send_now(std::string_view extra = {});
  asio::awaitable<bool> finish_create();
  std::string release_create();
  void request_forwarded(Route route);

  // --- stream → client: tunnel::splice's downstream writer -------------------------------
  asio::awaitable<std::error_code> deliver(std::string_view data);
  asio::awaitable<std::error_code> write_to_client(std::string_view bytes);
  asio::awaitable<void> flush_if_mounted(const char* why);

  stream_protocol::socket& client;
  tunnel::FrameStream& stream;
  BindSync* bind_sync;
  std::uint64_t id;
  std::uint64_t requests = 0;

  // Upstream state. The framer sees every byte until an Upgrade or a malformed request;
  // `unparsed` keeps what it has not consumed yet across reads (usually nothing), of which the
  // first `unparsed_sent` bytes were already forwarded (body bytes around a chunk boundary).
  http::RequestFramer framer;
  bool raw = false;
  bool between_requests = true;  // the framer's next bytes are a request head
  std::string unparsed;
  std::size_t unparsed_sent = 0;
  // The read being processed: `input` is the bytes the framer parses (unparsed + read),
  // bytes before `sent` are dealt with, and [pending_begin, pending_end) of input are to be
  // forwarded but not yet copied (kept uncopied so that a whole read can go out as it is).
  std::string_view input;
  std::size_t sent = 0;
  std::size_t pending_begin = 0, pending_end = 0;
  bool touched = false;  // something other than one pending range happened during this read
  TunnelFrame out;       // bytes to forward that are not one whole read; the pump sends it
  // A create request held for the synchroniser: its raw head and body as received.
  bool holding_create = false;
  http::RequestHead create_head;
  std::string create_raw;
  std::optional<PumpEnd> up_failed;  // why the filter ended the upstream

  // What the engine's next response answers, for the downstream. Requests are counted as they
  // are forwarded and responses as downstream bytes arrive; the wait response is only held
  // when nothing else was outstanding (HTTP/1.1 clients do not pipeline; if one does, no hold).
  std::uint64_t requests_forwarded = 0;
  std::uint64_t responses_started = 0;
  bool next_response_is_wait = false;
  bool next_response_shows_sources = false;

  // Downstream state for a wait response.
  enum class Hold { none, head, body } hold = Hold::none;
  HeadEndScanner head_end;
  std::string status_line;  // the first bytes of the held response, to check for 200
  std::size_t head_bytes = 0;
  // The response being rewritten to show local bind sources (path_restore.h).
  std::optional<ResponseRewriter> sources;

  // Writes to the client are serialised: the upstream answers a refused create itself.
  bool client_busy = false;
  asio::steady_timer client_free;
};

// ---------------------------------------------------------------------------------------------
// client → stream

asio::awaitable<bool> ApiProxy::Impl::send(TunnelFrame& frame) {
  const bool ok = co_await tunnel::send_frame(client, stream, frame);
  if (!ok) up_failed = PumpEnd::stream_error;
  co_return ok;
}

void ApiProxy::Impl::materialize() {
  if (pending_end > pending_begin)
    out.mutable_data()->append(input.substr(pending_begin, pending_end - pending_begin));
  pending_begin = pending_end = sent;
  touched = true;
}

// Everything of `input` before `end` is decided: into the held create, or out.
void ApiProxy::Impl::forward_to(std::size_t end) {
  if (end <= sent) return;
  if (holding_create) {
    create_raw.append(input.substr(sent, end - sent));
    touched = true;
  } else {
    if (pending_end != sent) materialize();  // not contiguous with the pending range
    if (pending_end == pending_begin) pending_begin = sent;
    pending_end = end;
  }
  sent = end;
}

// Sends what is decided so far, then `extra`, in frames of at most kChunkSize (plus what one
// read brought), before the proxy waits for the synchroniser.
asio::awaitable<bool> ApiProxy::Impl::send_now(std::string_view extra) {
  materialize();
  for (;;) {
    const std::size_t size = out.data().size();
    const std::size_t room = size < tunnel::kChunkSize ? tunnel::kChunkSize - size : 0;
    const std::size_t take = std::min(room, extra.size());
    out.mutable_data()->append(extra.substr(0, take));
    extra.remove_prefix(take);
    if (out.data().empty()) co_return true;
    if (!co_await send(out)) co_return false;
    out.Clear();
    if (extra.empty()) co_return true;
  }
}

void ApiProxy::Impl::request_forwarded(Route route) {
  const bool nothing_outstanding = responses_started == requests_forwarded;
  ++requests_forwarded;
  next_response_is_wait = route == Route::wait && nothing_outstanding;
  next_response_shows_sources = route == Route::shows_sources && nothing_outstanding;
}

// The held create's bytes, as received; the proxy holds nothing from here on.
std::string ApiProxy::Impl::release_create() {
  holding_create = false;
  return std::exchange(create_raw, {});
}

asio::awaitable<bool> ApiProxy::Impl::finish_create() {
  std::string held = release_create();
  auto body = http::request_body(held);
  if (!body) {
    // The framer accepted it, so this does not happen; the engine judges it.
    spdlog::warn("[C{}] cannot read the body of a create request; forwarded unchanged", id);
    request_forwarded(Route::create);
    co_return co_await send_now(held);
  }
  // Whatever was decided before the create goes first; then nothing moves until it is ready.
  if (!co_await send_now()) co_return false;
  auto prepared = co_await async_prepare_create(*bind_sync, std::move(*body));
  if (!prepared.ok) {
    spdlog::info("[C{}] container create refused ({}): {}", id, prepared.status,
                 prepared.message);
    // HTTP/1.1 clients wait for this answer before they send anything else, and the engine got
    // nothing to answer, so the client connection has no other writer now but a stray one.
    auto response = http::json_error_response(prepared.status, prepared.message, false,
                                              create_head.keep_alive);
    if (auto ec = co_await write_to_client(response)) {
      stream.cancel("local write failed: " + ec.message());
      up_failed = PumpEnd::local_error;
      co_return false;
    }
    co_return true;
  }
  request_forwarded(Route::create);
  if (!prepared.rewritten) co_return co_await send_now(held);
  spdlog::debug("[C{}] create body rewritten for synchronised bind mounts", id);
  std::string message = head_with_content_length(
      std::string_view(held).substr(0, create_head.head_size), prepared.body.size());
  message += prepared.body;
  co_return co_await send_now(message);
}

// Decides what of one read goes out, waiting for the synchroniser where a request needs it:
// the read as it is (the common case, no copy) or `out` (perhaps nothing). Frames that must
// go before the wait are sent from here; the pump has sent the previous decision already.
asio::awaitable<Outgoing> ApiProxy::Impl::filter(const TunnelFrame& read) {
  out.Clear();
  std::string_view chunk = read.data();
  if (raw) co_return Outgoing::as_read();
  const bool whole_possible = unparsed.empty() && !holding_create;
  if (unparsed.empty()) {
    input = chunk;
    sent = 0;
  } else {
    unparsed.append(chunk);
    input = unparsed;
    sent = unparsed_sent;
  }
  pending_begin = pending_end = sent;
  touched = false;

  std::size_t offset = 0;
  bool parsing = true;
  // Bounded: every event but need_more either consumes bytes or ends a message.
  for (int step = 0; parsing && step < 1'000'000; ++step) {
    auto r = framer.next(input.substr(offset));
    switch (r.event) {
      case http::RequestFramer::Event::need_more:
        parsing = false;
        break;
      case http::RequestFramer::Event::head: {
        const auto& head = framer.head();
        ++requests;
        spdlog::debug("[C{}] {} {}", id, head.method, head.target);
        between_requests = false;
        forward_to(offset);
        const Route route = route_of(head);
        if (route == Route::create && bind_sync && !head.upgrade &&
            head.content_length.value_or(0) <= kMaxCreateBodyBytes) {
          holding_create = true;
          create_head = head;
          create_raw.clear();
        } else {
          if (route == Route::start && bind_sync && bind_sync->has_mounts()) {
            if (!co_await send_now()) co_return failed();
            spdlog::debug("[C{}] start waits for the bind mounts to be in sync", id);
            co_await async_flush(*bind_sync);
          }
          request_forwarded(route);
        }
        offset += r.consumed;
        if (holding_create) forward_to(offset);
        break;
      }
      case http::RequestFramer::Event::body:
        offset += r.consumed;
        if (holding_create) {
          forward_to(offset);
          if (create_raw.size() - create_head.head_size > kMaxCreateBodyBytes) {
            spdlog::info("[C{}] create body over {} bytes: forwarded unchanged", id,
                         kMaxCreateBodyBytes);
            request_forwarded(Route::create);
            if (!co_await send_now(release_create())) co_return failed();
          }
        }
        break;
      case http::RequestFramer::Event::message_end:
        between_requests = true;
        if (holding_create) {
          forward_to(offset);
          if (!co_await finish_create()) co_return failed();
        }
        break;
      case http::RequestFramer::Event::upgraded:
        spdlog::debug("[C{}] upgraded to {}", id, framer.head().upgrade_protocol);
        raw = true;
        parsing = false;
        break;
      case http::RequestFramer::Event::error:
        // The engine answers the malformed request itself; from here on bytes only pass.
        spdlog::debug("[C{}] unparseable request: {}", id, framer.error_message());
        raw = true;
        parsing = false;
        break;
    }
  }
  if (parsing) {
    spdlog::warn("[C{}] request framing made no progress; passing bytes through", id);
    raw = true;
  }

  if (raw) {
    if (holding_create) {  // a malformed create body: the engine gets it as it came
      request_forwarded(Route::create);
      materialize();
      out.mutable_data()->append(release_create());
    }
    forward_to(input.size());
  } else if (!between_requests || holding_create) {
    forward_to(input.size());  // body bytes the framer will see again with the next read
  } else {
    forward_to(offset);  // an incomplete head waits for the rest before it is judged
  }

  const bool whole = whole_possible && !touched && !holding_create && pending_begin == 0 &&
                     pending_end == chunk.size();
  if (!whole) materialize();

  // Keep what the framer has not consumed yet for the next read.
  if (raw) {
    unparsed.clear();
    unparsed_sent = 0;
  } else {
    std::string rest(input.substr(offset));
    unparsed_sent = std::max(sent, offset) - offset;
    unparsed = std::move(rest);
  }
  input = {};
  if (whole) co_return Outgoing::as_read();
  if (read.eof()) {
    // The client is gone mid-request: the engine gets what there is and judges it.
    out.mutable_data()->append(create_raw);
    out.mutable_data()->append(std::string_view(unparsed).substr(unparsed_sent));
  }
  co_return Outgoing::instead(out);
}

// ---------------------------------------------------------------------------------------------
// stream → client

asio::awaitable<std::error_code> ApiProxy::Impl::write_to_client(std::string_view bytes) {
  if (bytes.empty()) co_return std::error_code{};
  while (client_busy) co_await client_free.async_wait(kToken);
  client_busy = true;
  auto [ec, n] = co_await asio::async_write(client, asio::buffer(bytes), kToken);
  client_busy = false;
  client_free.expires_at(asio::steady_timer::time_point::max());  // wakes a waiting writer
  co_return std::error_code(ec);
}

asio::awaitable<void> ApiProxy::Impl::flush_if_mounted(const char* why) {
  if (!bind_sync || !bind_sync->has_mounts()) co_return;
  spdlog::debug("[C{}] {} waits for the bind mounts to be in sync", id, why);
  co_await async_flush(*bind_sync);
}

asio::awaitable<std::error_code> ApiProxy::Impl::deliver(std::string_view data) {
  if (data.empty()) co_return std::error_code{};
  if (responses_started != requests_forwarded) {
    // The first bytes after a request went out: the start of its response.
    responses_started = requests_forwarded;
    hold = next_response_is_wait && bind_sync ? Hold::head : Hold::none;
    next_response_is_wait = false;
    head_end = HeadEndScanner{};
    status_line.clear();
    head_bytes = 0;
    sources.reset();
    if (next_response_shows_sources && bind_sync) {
      auto mappings = bind_sync->path_mappings();
      if (!mappings.empty()) sources.emplace(mappings, kMaxRewrittenBodyBytes);
    }
    next_response_shows_sources = false;
  }
  if (sources) {
    auto fed = sources->feed(data);
    if (sources->done() || sources->passing_through()) sources.reset();
    if (auto ec = co_await write_to_client(fed.out)) co_return ec;
    // What follows the rewritten response (nothing, unless the client pipelines) goes as it is.
    data.remove_prefix(fed.consumed);
    if (data.empty()) co_return std::error_code{};
  }
  if (hold == Hold::none) co_return co_await write_to_client(data);

  if (hold == Hold::head) {
    // Only a 200 means the container ran; an error answer has nothing to wait for.
    constexpr std::size_t kStatusLine = 13;  // "HTTP/1.1 200 "
    if (status_line.size() < kStatusLine)
      status_line.append(data.substr(0, kStatusLine - status_line.size()));
    if (status_line.size() >= kStatusLine &&
        !(status_line.starts_with("HTTP/1.") && status_line.substr(8, 5) == " 200 ")) {
      hold = Hold::none;
      co_return co_await write_to_client(data);
    }
    const std::size_t end = head_end.feed(data);
    if (end == std::string_view::npos) {
      head_bytes += data.size();
      if (head_bytes > 64 * 1024) hold = Hold::none;  // not a response head we understand
      co_return co_await write_to_client(data);
    }
    if (auto ec = co_await write_to_client(data.substr(0, end))) co_return ec;
    data.remove_prefix(end);
    hold = Hold::body;
    if (data.empty()) co_return std::error_code{};
  }
  // The first byte of the body: the container has exited.
  hold = Hold::none;
  co_await flush_if_mounted("wait response");
  co_return co_await write_to_client(data);
}

ApiProxy::ApiProxy(stream_protocol::socket& client, tunnel::FrameStream& stream,
                   BindSync* bind_sync, std::uint64_t id)
    : impl_(std::make_unique<Impl>(client, stream, bind_sync, id)) {}
ApiProxy::~ApiProxy() = default;

asio::awaitable<tunnel::SpliceResult> ApiProxy::run() {
  return tunnel::splice(
      impl_->client, impl_->stream,
      [impl = impl_.get()](const TunnelFrame& read) { return impl->filter(read); },
      [impl = impl_.get()](std::string_view data) { return impl->deliver(data); });
}
std::uint64_t ApiProxy::requests() const { return impl_->requests; }

}  // namespace offload::daemon
