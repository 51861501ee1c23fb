#include "offload/http/request_framer.h"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

namespace offload::http {
namespace bhttp = boost::beast::http;
using boost::beast::error_code;
using boost::beast::iequals;

namespace {

// Beast does the request-line, field and chunk grammar; this subclass only records the head and
// counts body bytes, so body bytes are never copied.
class CountingParser final : public bhttp::basic_parser<true> {
 public:
  CountingParser(RequestHead& head, std::size_t max_head_bytes) : head_(head) {
    header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(max_head_bytes, std::numeric_limits<std::uint32_t>::max())));
    // Bodies are streamed through, so their size is the engine's business, not ours.
    body_limit(boost::none);
  }

  // Bytes left in the chunk being read; 0 while Beast is between chunks (reading a chunk-size
  // line, the last chunk or trailers).
  std::uint64_t chunk_remaining() const { return chunk_remaining_; }

 private:
  void on_request_impl(bhttp::verb, boost::beast::string_view method,
                       boost::beast::string_view target, int version, error_code&) override {
    head_.method.assign(method.data(), method.size());
    head_.target.assign(target.data(), target.size());
    head_.version = static_cast<unsigned>(version);
  }
  void on_response_impl(int, boost::beast::string_view, int, error_code&) override {}
  void on_field_impl(bhttp::field, boost::beast::string_view name,
                     boost::beast::string_view value, error_code&) override {
    head_.fields.emplace_back(std::string(name.data(), name.size()),
                              std::string(value.data(), value.size()));
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(boost::beast::string_view body, error_code&) override {
    return body.size();
  }
  void on_chunk_header_impl(std::uint64_t size, boost::beast::string_view,
                            error_code&) override {
    chunk_remaining_ = size;
  }
  std::size_t on_chunk_body_impl(std::uint64_t remain, boost::beast::string_view body,
                                 error_code&) override {
    chunk_remaining_ = remain - body.size();
    return body.size();
  }
  void on_finish_impl(error_code&) override {}

  RequestHead& head_;
  std::uint64_t chunk_remaining_ = 0;
};

// The shortest possible rest of a chunked body seen from a chunk boundary is "0\r\n\r\n".
// Beast asserts it is never resumed at the last chunk with less than that, so wait for it.
constexpr std::size_t min_chunk_boundary_bytes = 5;

// A folded field line cannot be forwarded as received and unfolded at the same time, and
// Beast quietly unfolds it; RFC 9112 §5.2 lets us reject it instead.
bool has_obs_fold(std::string_view head) {
  for (std::size_t pos = head.find('\n'); pos != std::string_view::npos && pos + 1 < head.size();
       pos = head.find('\n', pos + 1)) {
    if (head[pos + 1] == ' ' || head[pos + 1] == '\t') return true;
  }
  return false;
}

int status_for(const error_code& ec) {
  if (ec == bhttp::error::header_limit) return 431;
  if (ec == bhttp::error::body_limit) return 413;
  return 400;
}

}  // namespace

std::string_view RequestHead::field(std::string_view name) const {
  for (const auto& [n, v] : fields)
    if (iequals(n, name)) return v;
  return {};
}

std::string RequestHead::path() const {
  std::string_view p = target;
  if (auto q = p.find_first_of("?#"); q != std::string_view::npos) p = p.substr(0, q);
  // Absolute-form: drop "scheme://authority".
  if (auto scheme = p.find("://"); scheme != std::string_view::npos && p.front() != '/') {
    auto slash = p.find('/', scheme + 3);
    p = slash == std::string_view::npos ? std::string_view("/") : p.substr(slash);
  }
  // Docker's router accepts an optional /v{version:[0-9.]+} in front of every route.
  if (p.size() > 2 && p[0] == '/' && p[1] == 'v') {
    std::size_t i = 2;
    while (i < p.size() && ((p[i] >= '0' && p[i] <= '9') || p[i] == '.')) ++i;
    if (i > 2 && i < p.size() && p[i] == '/') p = p.substr(i);
  }
  return std::string(p);
}

struct RequestFramer::Impl {
  enum class Phase { head, body, upgrade_pending, upgraded, failed };

  explicit Impl(std::size_t max) : max_head_bytes(max == 0 ? 1 : max) { start_request(); }

  void start_request() {
    building = RequestHead{};
    parser.emplace(building, max_head_bytes);
    head_offset = 0;
    phase = Phase::head;
  }

  Result fail(int code, std::string message) {
    phase = Phase::failed;
    status = code;
    error_message = std::move(message);
    return {Event::error, 0};
  }

  Result next_head(std::string_view input);
  Result next_body(std::string_view input);
  Result finish_message();

  std::size_t max_head_bytes;
  Phase phase = Phase::head;
  std::optional<CountingParser> parser;
  RequestHead building;  // filled by the parser while the head arrives
  RequestHead current;   // what head() returns
  // Bytes of the current head Beast already consumed (it takes the request line and whole
  // fields as soon as they are complete); the caller still holds them at the front of `input`.
  std::size_t head_offset = 0;
  int status = 0;
  std::string error_message;
  // An error Beast found after some good body bytes; reported on the call after those bytes.
  int deferred_status = 0;
  std::string deferred_message;
};

RequestFramer::Result RequestFramer::Impl::next_head(std::string_view input) {
  if (input.size() < head_offset)
    return fail(500, "request framer fed fewer bytes than before without consuming them");
  if (input.size() == head_offset) return {Event::need_more, 0};

  // Never show Beast more than max_head_bytes of head, so the limit holds however the bytes
  // arrive (Beast's own header_limit restarts after the request line).
  const std::size_t window =
      std::min(input.size(), max_head_bytes) - std::min(head_offset, max_head_bytes);
  error_code ec;
  const std::size_t n =
      parser->put(boost::asio::const_buffer(input.data() + head_offset, window), ec);
  head_offset += n;
  if (ec == bhttp::error::need_more) {
    if (input.size() >= max_head_bytes)
      return fail(431, "request head larger than " + std::to_string(max_head_bytes) + " bytes");
    return {Event::need_more, 0};
  }
  if (ec) return fail(status_for(ec), "malformed HTTP request: " + ec.message());

  RequestHead& h = building;
  h.head_size = head_offset;
  if (has_obs_fold(input.substr(0, h.head_size)))
    return fail(400, "malformed HTTP request: obsolete line folding in a header field");

  // Beast only recognises a final "chunked" and treats any other coding as "no body", which
  // would desynchronise us from the engine; answer like Go's net/http does.
  bool has_transfer_encoding = false;
  std::size_t codings = 0;
  bool chunked_only = true;
  for (const auto& [name, value] : h.fields) {
    if (!iequals(name, "Transfer-Encoding")) continue;
    has_transfer_encoding = true;
    for (auto coding : bhttp::token_list{value}) {
      ++codings;
      if (!iequals(coding, "chunked")) chunked_only = false;
    }
  }
  if (has_transfer_encoding) {
    if (parser->content_length())
      return fail(400, "malformed HTTP request: both Content-Length and Transfer-Encoding");
    if (codings != 1 || !chunked_only)
      return fail(501,
                  "unsupported Transfer-Encoding: " + std::string(h.field("Transfer-Encoding")));
  }

  h.keep_alive = parser->keep_alive();
  if (auto length = parser->content_length()) h.content_length = *length;
  h.chunked = parser->chunked();
  // RFC 9110 §7.8: an Upgrade in an HTTP/1.0 request is ignored.
  h.upgrade_protocol = std::string(h.field("Upgrade"));
  h.upgrade = parser->upgrade() && h.version >= 11 && !h.upgrade_protocol.empty();
  if (!h.upgrade) h.upgrade_protocol.clear();

  current = std::move(building);
  building = RequestHead{};
  phase = Phase::body;
  parser->eager(true);  // from here on, take as many body bytes per call as there are
  return {Event::head, current.head_size};
}

RequestFramer::Result RequestFramer::Impl::next_body(std::string_view input) {
  if (deferred_status != 0) return fail(deferred_status, std::move(deferred_message));
  if (parser->is_done()) return finish_message();
  if (input.empty()) return {Event::need_more, 0};

  std::size_t window = input.size();
  const bool at_chunk_boundary = current.chunked && parser->chunk_remaining() == 0;
  if (at_chunk_boundary) {
    if (input.size() < min_chunk_boundary_bytes) return {Event::need_more, 0};
    // A chunk-size line or the trailer section must fit in max_head_bytes, wherever the reads
    // happen to split the stream; otherwise a client could make the caller buffer without end.
    window = std::min(window, max_head_bytes);
  }

  error_code ec;
  const std::size_t n = parser->put(boost::asio::const_buffer(input.data(), window), ec);
  if (ec == bhttp::error::need_more) {
    if (n > 0) return {Event::body, n};
    if (at_chunk_boundary && window == max_head_bytes)
      return fail(431, "chunk header or trailer section larger than " +
                           std::to_string(max_head_bytes) + " bytes");
    return {Event::need_more, 0};
  }
  if (ec) {
    // Beast may have taken good chunks before the bad one: hand those over first, so the
    // framing does not depend on how the reads split the stream.
    if (n > 0) {
      deferred_status = status_for(ec);
      deferred_message = "malformed HTTP request body: " + ec.message();
      return {Event::body, n};
    }
    return fail(status_for(ec), "malformed HTTP request body: " + ec.message());
  }
  if (n > 0) return {Event::body, n};
  if (parser->is_done()) return finish_message();
  return fail(500, "request framer made no progress");
}

RequestFramer::Result RequestFramer::Impl::finish_message() {
  const bool had_body = current.chunked || current.content_length.value_or(0) > 0;
  if (current.upgrade) {
    if (had_body) {
      phase = Phase::upgrade_pending;
      return {Event::message_end, 0};
    }
    phase = Phase::upgraded;
    return {Event::upgraded, 0};
  }
  start_request();
  return {Event::message_end, 0};
}

RequestFramer::RequestFramer(std::size_t max_head_bytes)
    : impl_(std::make_unique<Impl>(max_head_bytes)) {}
RequestFramer::~RequestFramer() = default;
RequestFramer::RequestFramer(RequestFramer&&) noexcept = default;
RequestFramer& RequestFramer::operator=(RequestFramer&&) noexcept = default;

RequestFramer::Result RequestFramer::next(std::string_view input) {
  Impl& s = *impl_;
  switch (s.phase) {
    case Impl::Phase::head:
      return s.next_head(input);
    case Impl::Phase::body:
      return s.next_body(input);
    case Impl::Phase::upgrade_pending:
      s.phase = Impl::Phase::upgraded;
      return {Event::upgraded, 0};
    case Impl::Phase::upgraded:
      return {Event::upgraded, 0};
    case Impl::Phase::failed:
      return {Event::error, 0};
  }
  return {Event::error, 0};
}

const RequestHead& RequestFramer::head() const { return impl_->current; }
int RequestFramer::error_status() const { return impl_->status; }
const std::string& RequestFramer::error_message() const { return impl_->error_message; }

const char* to_string(RequestFramer::Event event) {
  switch (event) {
    case RequestFramer::Event::need_more: return "need_more";
    case RequestFramer::Event::head: return "head";
    case RequestFramer::Event::body: return "body";
    case RequestFramer::Event::message_end: return "message_end";
    case RequestFramer::Event::upgraded: return "upgraded";
    case RequestFramer::Event::error: return "error";
  }
  return "unknown";
}

std::string json_error_response(int status, std::string_view message, bool head_request,
                                bool keep_alive) {
  if (status < 100 || status > 999) status = 500;
  const auto known = bhttp::int_to_status(static_cast<unsigned>(status));
  const auto reason = known == bhttp::status::unknown ? boost::beast::string_view("Error")
                                                      : bhttp::obsolete_reason(known);
  // RFC 9110 §6.4.1: these never carry content, so there is no Content-Length to announce.
  const bool bodiless_status = status < 200 || status == 204 || status == 304;

  std::string out;
  out.reserve(160 + message.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out.append(reason.data(), reason.size());
  out += "\r\n";
  std::string body;
  if (!bodiless_status) {
    // Docker's engine encodes errors with a trailing newline (json.Encoder); match it.
    body = nlohmann::json{{"message", std::string(message)}}.dump(
               -1, ' ', false, nlohmann::json::error_handler_t::replace) +
           "\n";
    out += "Content-Type: application/json\r\n";
    out += "Content-Length: ";
    out += std::to_string(body.size());
    out += "\r\n";
  }
  out += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += "\r\n";
  if (!head_request) out += body;
  return out;
}

std::optional<std::string> request_body(std::string_view raw_message) {
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(raw_message.size(), 1u << 30)));
  parser.body_limit(boost::none);
  parser.eager(true);
  boost::beast::error_code ec;
  std::size_t used = 0;
  while (!parser.is_done()) {
    const std::size_t n =
        parser.put(boost::asio::buffer(raw_message.data() + used, raw_message.size() - used), ec);
    used += n;
    if (ec || n == 0) return std::nullopt;
  }
  return std::move(parser.get().body());
}

std::string head_with_content_length(std::string_view raw_head, std::size_t body_size) {
  std::string out;
  out.reserve(raw_head.size() + 32);
  bool request_line = true;
  for (std::size_t start = 0; start < raw_head.size();) {
    auto end = raw_head.find("\r\n", start);
    if (end == std::string_view::npos) end = raw_head.size();
    const auto line = raw_head.substr(start, end - start);
    start = end + 2;
    if (line.empty()) break;  // the blank line that ends the head
    if (!request_line) {
      auto name = line.substr(0, line.find(':'));
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      using boost::beast::iequals;
      if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") ||
          iequals(name, "Trailer"))
        continue;
    }
    request_line = false;
    out.append(line);
    out += "\r\n";
  }
  out += "Content-Length: ";
  out += std::to_string(body_size);
  out += "\r\n\r\n";
  return out;
}

}  // namespace offload::http
