// Enforces the API policy (api_policy.h) on one tunnelled connection to a session engine.
//
// Plugged into tunnel::splice between the client's stream and the engine's socket:
//  - requests (client → engine) are framed; the requests the policy judges are held until their
//    body is complete and judged, everything else flows through as it comes. A refused request
//    never reaches the engine: the gate stops forwarding, half-closes the engine socket so the
//    engine finishes what it was asked before and closes, and appends its Docker-style JSON
//    error (403, Connection: close) after the engine's last byte, so responses stay in order;
//  - responses (engine → client) are framed as well, only to learn whether the engine switched
//    protocols: after an `Upgrade` request the gate forwards nothing more until the engine's
//    answer to that request, and only a 101 turns the connection into raw bytes. Otherwise a
//    client could announce an upgrade the engine refuses and slip requests past the judge;
//  - a request the gate cannot frame is refused (400), never passed through unjudged;
//  - a container create that binds the Docker socket is rewritten to bind the session's gated
//    API socket instead (bind_docker_socket, ApiPolicy::serve_api_socket), then judged.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "offload/http/request_framer.h"
#include "offload/runner/api_policy.h"
#include "offload/tunnel/pump.h"

namespace offload::runner {

// Judged request bodies are Docker JSON configs of a few KiB; beyond this the gate refuses (413)
// rather than hold them.
inline constexpr std::size_t kMaxJudgedBodyBytes = 16 * 1024 * 1024;

class ApiGate {
 public:
  // `engine` must outlive the gate; `label` names the session in the log.
  ApiGate(boost::asio::local::stream_protocol::socket& engine, ApiPolicy policy,
          std::string label);
  ~ApiGate();
  ApiGate(const ApiGate&) = delete;
  ApiGate& operator=(const ApiGate&) = delete;

  // The hooks for tunnel::splice(engine, stream, gate.responses(), gate.requests()).
  struct Requests {
    ApiGate* gate;
    boost::asio::awaitable<std::error_code> operator()(std::string_view data) const {
      return gate->to_engine(data);
    }
  };
  struct Responses {
    ApiGate* gate;
    tunnel::Outgoing operator()(const tunnel::TunnelFrame& read) const {
      return gate->from_engine(read);
    }
    // tunnel::splice calls this when the engine → client direction has ended.
    void ended(tunnel::PumpEnd end) const { gate->responses_ended(end); }
  };
  Requests requests() { return Requests{this}; }
  Responses responses() { return Responses{this}; }

  // Requests refused so far (0 or 1: a refusal ends the connection).
  std::uint64_t refused() const { return refusal_ ? 1 : 0; }

 private:
  struct ResponseTracker;
  struct Sent {  // a request forwarded to the engine, for the response tracker
    bool head = false;
    bool upgrade = false;
    std::chrono::steady_clock::time_point began;  // when its head arrived (latency metric)
  };

  boost::asio::awaitable<std::error_code> to_engine(std::string_view data);
  tunnel::Outgoing from_engine(const tunnel::TunnelFrame& read);
  void responses_ended(tunnel::PumpEnd end);

  boost::asio::awaitable<std::error_code> write(std::string_view bytes);
  // The held request is complete: judged, then written to the engine or refused (refusal_).
  boost::asio::awaitable<std::error_code> release_held();
  // Stops forwarding; the error goes out after the engine's last byte.
  void refuse(int status, const std::string& message, bool head_request);
  // From the response tracker.
  void response_head(unsigned status);

  boost::asio::local::stream_protocol::socket& engine_;
  ApiPolicy policy_;
  std::string label_;

  // Requests.
  http::RequestFramer framer_;
  std::string pending_;          // bytes the framer has not consumed yet
  bool raw_ = false;             // after a 101: bytes only pass
  bool holding_ = false;         // the current request is held for the judge
  std::string held_;             // its raw bytes (head + body as received)
  ApiRoute held_route_;
  std::size_t held_head_size_ = 0;
  bool current_head_ = false;    // the current request is a HEAD
  bool current_upgrade_ = false;
  std::chrono::steady_clock::time_point request_began_;
  std::optional<std::string> refusal_;  // the response to send after the engine's last byte
  bool refusal_sent_ = false;

  // Responses.
  std::deque<Sent> sent_;
  std::unique_ptr<ResponseTracker> tracker_;
  // An Upgrade request waits for its response: none yet, switched (101) or not; abandoned when
  // the responses ended without one.
  enum class Upgrade { none, waiting, switched, refused, abandoned } upgrade_ = Upgrade::none;
  boost::asio::steady_timer upgrade_decided_;
  tunnel::TunnelFrame out_;
};

}  // namespace offload::runner
