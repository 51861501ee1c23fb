// offloadd's side of the runner channel: one TLS HTTP/2 connection to one runner, carrying the
// session's unary calls, its event stream and every tunnel.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "offload/tls/tls.h"
#include "offload/tunnel/data_channel.h"
#include "offload/tunnel/grpc_streams.h"
#include "offload/v1/runner.grpc.pb.h"

namespace offload::daemon {

// How to reach a runner and prove who we are.
struct RunnerEndpoint {
  std::string address;        // host:port
  std::string fingerprint;    // pinned "sha256:<hex>" of the runner certificate
  std::string account_token;  // secret
};

// A failed runner call, with a message for the user and the gRPC code.
struct RunnerError : std::runtime_error {
  RunnerError(grpc::StatusCode code, const std::string& what)
      : std::runtime_error(what), code(code) {}
  grpc::StatusCode code;
};

class RunnerClient {
 public:
  // Tunnels opened through this client are registered in `streams` (may be null).
  explicit RunnerClient(RunnerEndpoint endpoint, tunnel::StreamRegistry* streams = nullptr);
  // Waits (up to 10 s) until no call started here holds the channel any more: see the .cpp.
  ~RunnerClient();
  RunnerClient(const RunnerClient&) = delete;
  RunnerClient& operator=(const RunnerClient&) = delete;

  const std::string& address() const { return endpoint_.address; }

  // Unary calls; each throws RunnerError with a user-facing message.
  v1::HelloResponse hello(std::chrono::milliseconds timeout);
  v1::CreateSessionResponse create_session(const std::string& label,
                                           std::chrono::milliseconds timeout);
  v1::CreateSessionResponse create_session(const v1::CreateSessionRequest& request,
                                           std::chrono::milliseconds timeout);
  v1::DestroySessionResponse destroy_session(const std::string& reason);
  v1::SessionInfo get_session(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // GetSession without blocking: `done` runs once, on a gRPC thread, with the info or the error.
  // Returns a function that cancels the call (then `done` gets CANCELLED).
  using GetSessionDone = std::function<void(std::optional<RunnerError>, v1::SessionInfo)>;
  std::function<void()> async_get_session(std::chrono::milliseconds timeout, GetSessionDone done);
  v1::ListContainersResponse list_containers(bool all);
  v1::ListImagesResponse list_images();

  // Uses this session for every later call.
  void attach(std::string session_id, std::string session_token);
  const std::string& session_id() const { return session_id_; }
  const std::string& session_token() const { return session_token_; }

  // Opens a tunnel to the session engine's API. Never blocks.
  std::shared_ptr<tunnel::ClientTunnelStream> open_engine_tunnel(const std::string& label);
  // Opens a tunnel to a port a container of the session publishes ("tcp" or "udp"; for UDP
  // each frame is one datagram). Never blocks; a port not published is refused by the runner.
  std::shared_ptr<tunnel::ClientTunnelStream> open_port_tunnel(std::uint32_t host_port,
                                                               const std::string& protocol);

  // The runner's data channel for this session's forwarded TCP ports, or null: the runner has
  // none (Hello said port 0, or Hello was not called), there is no session yet, or the channel
  // failed recently (then forwarded ports use open_port_tunnel for a minute before it is tried
  // again).
  // `max_version` caps the wire format (config ports.multiplexDataChannel: false → 1).
  std::shared_ptr<tunnel::data_channel::Dialer> data_channel(unsigned max_version = 2);
  // A channel could not be opened for a reason other than the runner's refusal: logs it (once
  // per minute at most) and leaves the data channel alone for a minute.
  void data_channel_failed(const std::string& why);

  // Call metadata: the session credentials (or the account token before there is a session).
  void authorize(grpc::ClientContext& ctx, bool account_call = false) const;
  v1::Runner::Stub& stub() { return *stub_; }

 private:
  RunnerError error_from(const grpc::Status& status, const char* what) const;

  RunnerEndpoint endpoint_;
  tunnel::StreamRegistry* streams_ = nullptr;
  std::shared_ptr<tls::PinMismatch> pin_mismatch_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Runner::Stub> stub_;
  std::string session_id_;
  std::string session_token_;
  std::atomic<unsigned short> data_channel_port_{0};  // from Hello
  std::atomic<unsigned> data_channel_version_{1};    // from Hello
  std::mutex data_channel_mu_;
  std::shared_ptr<tunnel::data_channel::Dialer> data_channel_;  // guarded by data_channel_mu_
  std::chrono::steady_clock::time_point data_channel_resting_until_{};  // guarded by the same
};

}  // namespace offload::daemon
