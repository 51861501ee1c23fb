#include "offload/daemon/runner_client.h"

#include <algorithm>
#include <spdlog/spdlog.h>

#include <thread>

#include <grpcpp/create_channel.h>

#include "offload/tls/tls.h"

namespace offload::daemon {

namespace {
void set_deadline(grpc::ClientContext& ctx, std::chrono::milliseconds timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
}
}  // namespace

RunnerClient::RunnerClient(RunnerEndpoint endpoint, tunnel::StreamRegistry* streams)
    : endpoint_(std::move(endpoint)),
      streams_(streams),
      pin_mismatch_(std::make_shared<tls::PinMismatch>()) {
  grpc::ChannelArguments args;
  // Tunnels carry bulk data: let HTTP/2 windows grow with the bandwidth-delay product.
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 1);
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  args.SetMaxSendMessageSize(16 * 1024 * 1024);
  // Notice a dead runner within a minute even when no call is active.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Many short tunnels must share the one connection, never open their own.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  channel_ = grpc::CreateCustomChannel(
      endpoint_.address, tls::pinned_channel_credentials(endpoint_.fingerprint, pin_mismatch_),
      args);
  stub_ = v1::Runner::NewStub(channel_);
}

RunnerClient::~RunnerClient() {
  // Each call's ClientContext holds the channel until gRPC is done with the call, and a
  // streaming call's reactor is released on one of gRPC's own callback threads. Were that the
  // last reference, gRPC 1.51 would tear down its callback completion queue from inside the
  // thread that polls it, and abort in grpc_cq_internal_unref (seen in CI). So the channel's
  // last reference is dropped here, once the calls let go of it; a call that never ends is
  // waited for only so long.
  stub_.reset();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (channel_.use_count() > 1 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  if (channel_.use_count() > 1)
    spdlog::warn("runner {}: calls still hold the connection while it is closed", endpoint_.address);
}

void RunnerClient::authorize(grpc::ClientContext& ctx, bool account_call) const {
  if (account_call || session_token_.empty()) {
    ctx.AddMetadata("authorization", "Bearer " + endpoint_.account_token);
  } else {
    ctx.AddMetadata("authorization", "Bearer " + session_token_);
    ctx.AddMetadata("offload-session", session_id_);
  }
}

namespace {

// A failed call as the user should read it: an unreachable runner or one that failed the pinned
// certificate check says so and names the runner.
RunnerError runner_error(const grpc::Status& status, const char* what, const std::string& address,
                         tls::PinMismatch& pin_mismatch) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (auto mismatch = pin_mismatch.get(); !mismatch.empty())
        return RunnerError(grpc::StatusCode::UNAUTHENTICATED,
                           "refusing the runner at " + address + ": " + mismatch +
                               " (is this the right runner? check the account's fingerprint)");
      return RunnerError(status.error_code(),
                         "runner unreachable at " + address + ": " + status.error_message());
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      if (auto mismatch = pin_mismatch.get(); !mismatch.empty())
        return RunnerError(grpc::StatusCode::UNAUTHENTICATED,
                           "refusing the runner at " + address + ": " + mismatch +
                               " (is this the right runner? check the account's fingerprint)");
      return RunnerError(status.error_code(),
                         std::string(what) + " timed out (runner " + address + ")");
    default:
      return RunnerError(status.error_code(), status.error_message());
  }
}

}  // namespace

RunnerError RunnerClient::error_from(const grpc::Status& status, const char* what) const {
  return runner_error(status, what, endpoint_.address, *pin_mismatch_);
}

v1::HelloResponse RunnerClient::hello(std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  authorize(ctx, true);
  set_deadline(ctx, timeout);
  v1::HelloRequest req;
  req.set_protocol(v1::PROTOCOL_VERSION_1);
  req.set_client_version(OFFLOAD_VERSION);
  v1::HelloResponse resp;
  auto st = stub_->Hello(&ctx, req, &resp);
  if (!st.ok()) throw error_from(st, "hello");
  data_channel_port_ = static_cast<unsigned short>(resp.data_channel_port());
  data_channel_version_ = std::max(1u, resp.data_channel_version());
  return resp;
}

v1::CreateSessionResponse RunnerClient::create_session(const std::string& label,
                                                       std::chrono::milliseconds timeout) {
  v1::CreateSessionRequest req;
  req.set_client_label(label);
  return create_session(req, timeout);
}

v1::CreateSessionResponse RunnerClient::create_session(const v1::CreateSessionRequest& req,
                                                       std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  authorize(ctx, true);
  set_deadline(ctx, timeout);
  v1::CreateSessionResponse resp;
  auto st = stub_->CreateSession(&ctx, req, &resp);
  if (!st.ok()) throw error_from(st, "creating the session");
  return resp;
}

void RunnerClient::attach(std::string session_id, std::string session_token) {
  session_id_ = std::move(session_id);
  session_token_ = std::move(session_token);
}

std::shared_ptr<tunnel::data_channel::Dialer> RunnerClient::data_channel(unsigned max_version) {
  const unsigned short port = data_channel_port_.load();
  if (port == 0 || session_token_.empty()) return nullptr;
  std::lock_guard lock(data_channel_mu_);
  if (std::chrono::steady_clock::now() < data_channel_resting_until_) return nullptr;
  const unsigned version = std::min(max_version, data_channel_version_.load());
  if (!data_channel_ || data_channel_->version() != version) {
    // The host the gRPC channel dials: "host:port", "[v6]:port".
    std::string host = endpoint_.address.substr(0, endpoint_.address.rfind(':'));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    data_channel_ = std::make_shared<tunnel::data_channel::Dialer>(
        host, port, tls::asio_pinned_client_context(endpoint_.fingerprint), session_id_,
        session_token_, std::chrono::seconds(5), version);
    spdlog::info("runner {}: forwarded TCP ports use its data channel on port {}{}",
                 endpoint_.address, port,
                 version >= 3   ? ", multiplexed (ODC3, sealed records)"
                 : version == 2 ? ", multiplexed (ODC2)"
                                : " (ODC1)");
  }
  return data_channel_;
}

void RunnerClient::data_channel_failed(const std::string& why) {
  std::lock_guard lock(data_channel_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now < data_channel_resting_until_) return;  // said already
  data_channel_resting_until_ = now + std::chrono::minutes(1);
  spdlog::warn("runner {}: its data channel on port {} failed ({}); forwarded ports go through "
               "the gRPC connection (slower) for a minute. A firewall may block that port: see "
               "`offload-runner serve --data-listen`",
               endpoint_.address, data_channel_port_.load(), why);
}

v1::DestroySessionResponse RunnerClient::destroy_session(const std::string& reason) {
  grpc::ClientContext ctx;
  authorize(ctx);
  set_deadline(ctx, std::chrono::minutes(2));
  v1::DestroySessionRequest req;
  req.set_reason(reason);
  v1::DestroySessionResponse resp;
  auto st = stub_->DestroySession(&ctx, req, &resp);
  if (!st.ok()) throw error_from(st, "destroying the session");
  return resp;
}

v1::SessionInfo RunnerClient::get_session(std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  authorize(ctx);
  set_deadline(ctx, timeout);
  v1::SessionInfo resp;
  auto st = stub_->GetSession(&ctx, v1::GetSessionRequest{}, &resp);
  if (!st.ok()) throw error_from(st, "querying the session");
  return resp;
}

v1::ListContainersResponse RunnerClient::list_containers(bool all) {
  grpc::ClientContext ctx;
  authorize(ctx);
  set_deadline(ctx, std::chrono::seconds(30));
  v1::ListContainersRequest req;
  req.set_all(all);
  v1::ListContainersResponse resp;
  auto st = stub_->ListContainers(&ctx, req, &resp);
  if (!st.ok()) throw error_from(st, "listing containers");
  return resp;
}

v1::ListImagesResponse RunnerClient::list_images() {
  grpc::ClientContext ctx;
  authorize(ctx);
  set_deadline(ctx, std::chrono::seconds(30));
  v1::ListImagesResponse resp;
  auto st = stub_->ListImages(&ctx, v1::ListImagesRequest{}, &resp);
  if (!st.ok()) throw error_from(st, "listing images");
  return resp;
}

std::function<void()> RunnerClient::async_get_session(std::chrono::milliseconds timeout,
                                                      GetSessionDone done) {
  struct Call {
    grpc::ClientContext ctx;
    v1::GetSessionRequest request;
    v1::SessionInfo response;
  };
  auto call = std::make_shared<Call>();
  authorize(call->ctx);
  set_deadline(call->ctx, timeout);
  // The completion may outlive this client (its owner gave up waiting): it holds what it needs.
  stub_->async()->GetSession(
      &call->ctx, &call->request, &call->response,
      [call, done = std::move(done), address = endpoint_.address,
       mismatch = pin_mismatch_](grpc::Status status) {
        if (status.ok())
          done(std::nullopt, std::move(call->response));
        else
          done(runner_error(status, "querying the session", address, *mismatch), {});
      });
  return [call] { call->ctx.TryCancel(); };
}

std::shared_ptr<tunnel::ClientTunnelStream> RunnerClient::open_engine_tunnel(
    const std::string& label) {
  v1::TunnelOpen open;
  open.set_target(v1::TunnelOpen::TARGET_ENGINE_API);
  open.set_label(label);
  return tunnel::ClientTunnelStream::open(
      *stub_, open, [this](grpc::ClientContext& ctx) { authorize(ctx); }, streams_);
}

std::shared_ptr<tunnel::ClientTunnelStream> RunnerClient::open_port_tunnel(
    std::uint32_t host_port, const std::string& protocol) {
  v1::TunnelOpen open;
  open.set_target(v1::TunnelOpen::TARGET_PUBLISHED_PORT);
  open.set_host_port(host_port);
  open.set_protocol(protocol);
  return tunnel::ClientTunnelStream::open(
      *stub_, open, [this](grpc::ClientContext& ctx) { authorize(ctx); }, streams_);
}

}  // namespace offload::daemon
