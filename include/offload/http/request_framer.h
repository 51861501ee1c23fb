// The request direction of HTTP/1.1 as a proxy needs it: where each request head starts and
// ends, how many bytes of body follow, and when the connection turns into a raw byte stream.
// The framer never copies or alters the bytes; the caller forwards exactly what it consumed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace offload::http {

struct RequestHead {
  std::string method;            // "GET"
  std::string target;            // "/v1.41/containers/json?all=1"
  unsigned version = 11;         // 10 or 11
  std::vector<std::pair<std::string, std::string>> fields;  // in order, as sent (values trimmed)
  bool keep_alive = true;
  bool upgrade = false;          // Connection: Upgrade + Upgrade: <proto>
  std::string upgrade_protocol;  // "tcp", "h2c"
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  std::size_t head_size = 0;     // bytes of the raw head incl. the final CRLFCRLF

  // First field with this name (case-insensitive); "" if absent.
  std::string_view field(std::string_view name) const;
  // The target without query and without a /vX.Y version prefix: "/containers/json".
  // Absolute-form targets lose their scheme and authority. Not percent-decoded.
  std::string path() const;
};

// Splits a client's byte stream into HTTP/1.1 requests. Feed it what you read; it says how many
// bytes belong to what, and the caller forwards exactly those bytes unchanged.
//
// Contract: pass the bytes not yet consumed, starting right after the last consumed prefix.
// After need_more, call again with the same bytes plus whatever arrived since. Event order per
// request: head, body*, message_end; an Upgrade request ends with upgraded instead (directly
// after head when it has no body, after message_end when it has one). message_end and upgraded
// always consume 0 bytes; body bytes of a Content-Length body are counted, never copied.
class RequestFramer {
 public:
  enum class Event {
    need_more,    // consumed == 0: append more input to the same buffer and call again
    head,         // consumed == head size; head() is valid
    body,         // consumed bytes are request body (raw, incl. chunk framing for chunked bodies)
    message_end,  // the request is complete (consumed 0); the next call starts a new request
    upgraded,     // everything that follows is raw bytes; next() keeps answering upgraded
    error,        // malformed; error_status() and error_message() say why; stop reading
  };
  struct Result {
    Event event;
    std::size_t consumed;
  };

  // max_head_bytes bounds a request head, and also chunk-size lines and trailers (431 beyond).
  explicit RequestFramer(std::size_t max_head_bytes = 64 * 1024);
  ~RequestFramer();
  RequestFramer(RequestFramer&&) noexcept;
  RequestFramer& operator=(RequestFramer&&) noexcept;

  Result next(std::string_view input);

  // The last complete head; stays valid until the next head event.
  const RequestHead& head() const;
  // HTTP status to answer with after an error: 400 malformed, 431 head too large,
  // 501 unsupported Transfer-Encoding. 0 before any error.
  int error_status() const;
  const std::string& error_message() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

const char* to_string(RequestFramer::Event event);

// A complete HTTP/1.1 response carrying a Docker-style JSON error body {"message":"..."} with
// Content-Type, Content-Length and Connection (close or keep-alive). For HEAD requests the body
// is left out but Content-Length still gives its size. 1xx, 204 and 304 never carry a body.
std::string json_error_response(int status, std::string_view message, bool head_request,
                                bool keep_alive);

// The body of a complete, well-framed request `raw_message` (head included), de-chunked when
// chunked; nullopt when it cannot be parsed.
std::optional<std::string> request_body(std::string_view raw_message);

// `raw_head` (a complete request head, as received) with every Content-Length,
// Transfer-Encoding and Trailer field dropped and `Content-Length: body_size` added last: the
// head for a body the proxy or the gate rewrote.
std::string head_with_content_length(std::string_view raw_head, std::size_t body_size);

}  // namespace offload::http
