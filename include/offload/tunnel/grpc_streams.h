// The two ends of the Runner.Tunnel call as FrameStreams.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_callback.h>
#include <grpcpp/support/server_callback.h>

#include <boost/asio/any_completion_handler.hpp>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <set>
#include <memory>
#include <mutex>

#include "offload/tunnel/frame_stream.h"
#include "offload/v1/runner.grpc.pb.h"

namespace offload::tunnel {

class ClientTunnelStream;

// The client streams of one owner (offloadd), so that it can end them all and wait until gRPC
// is done with them before its io_context goes away: a completion arriving after that would
// resume a coroutine whose sockets no longer exist.
class StreamRegistry {
 public:
  void add(ClientTunnelStream* stream);
  void remove(ClientTunnelStream* stream);
  void cancel_all(const std::string& reason);
  // True once no registered stream is left (each is removed when its object is destroyed).
  bool wait_empty(std::chrono::milliseconds timeout);
  std::size_t size() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::set<ClientTunnelStream*> streams_;
};

// Client end (offloadd). Create with open(); the call starts at once and the `open` frame is
// sent with the call's headers, so a tunnel costs no round trip of its own.
class ClientTunnelStream final : public FrameStream,
                                 public grpc::ClientBidiReactor<TunnelFrame, TunnelFrame>,
                                 public std::enable_shared_from_this<ClientTunnelStream> {
 public:
  // `prepare` fills the call's metadata (authorization, session id) before it starts.
  static std::shared_ptr<ClientTunnelStream> open(
      v1::Runner::Stub& stub, const v1::TunnelOpen& target,
      const std::function<void(grpc::ClientContext&)>& prepare,
      StreamRegistry* registry = nullptr);
  ~ClientTunnelStream() override;

  void cancel(const std::string& reason) override;

  // The caller is done with the stream (no more operations will be started). Must be called
  // exactly once; the call then completes and `async_wait_done` resolves.
  void release();

  // Completes with the call's final status, after release().
  template <class Token>
  auto async_wait_done(Token&& token) {
    return boost::asio::async_initiate<Token, void(grpc::Status)>(
        [this](auto handler) {
          std::unique_lock lock(mu_);
          if (done_) {
            auto st = status_;
            lock.unlock();
            post_to_handler_executor(std::move(handler), st);
            return;
          }
          done_handler_.emplace(std::move(handler));
        },
        token);
  }

  // Reactions (gRPC threads).
  void OnReadDone(bool ok) override { read_done(ok); }
  void OnWriteDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  ClientTunnelStream() = default;
  void start_read(TunnelFrame* frame) override { StartRead(frame); }
  void start_write(const TunnelFrame* frame) override;

  grpc::ClientContext context_;
  StreamRegistry* registry_ = nullptr;
  TunnelFrame open_frame_;
  bool open_write_pending_ = true;             // guarded by mu_
  const TunnelFrame* queued_write_ = nullptr;  // guarded by mu_
  std::shared_ptr<ClientTunnelStream> self_;  // alive until OnDone
  std::mutex mu_;
  bool done_ = false;
  bool released_ = false;
  grpc::Status status_;
  std::optional<boost::asio::any_completion_handler<void(grpc::Status)>> done_handler_;
};

// Server end (offload-runner). gRPC creates it per call; `on_open` runs (on a gRPC thread) when
// the first frame arrived and must hand the stream to a coroutine without blocking.
//
// The end is finish() (or cancel()): from then on reads and writes complete with false without
// reaching gRPC, which may already have run OnDone and destroyed its side of the call (the other
// direction of a splice may cancel while this one still runs). Operations started before it
// complete as gRPC reports them. The object lives as long as gRPC (until OnDone) or a user
// holds it, no longer.
class ServerTunnelStream final : public FrameStream,
                                 public grpc::ServerBidiReactor<TunnelFrame, TunnelFrame>,
                                 public std::enable_shared_from_this<ServerTunnelStream> {
 public:
  using OpenHandler =
      std::function<void(std::shared_ptr<ServerTunnelStream>, const v1::TunnelOpen&)>;
  static ServerTunnelStream* create(grpc::CallbackServerContext* context, OpenHandler on_open);

  void cancel(const std::string& reason) override;
  // Ends the call (once; later calls are ignored). OK after both eof frames were exchanged.
  void finish(const grpc::Status& status);
  // Valid until finish(): gRPC destroys the context with the call.
  grpc::CallbackServerContext& context() { return *context_; }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override { write_done(ok); }
  // The client cancelled or the connection broke: a splice waiting on its socket only learns
  // of it here.
  void OnCancel() override { call_ended(); }
  void OnDone() override;

 private:
  ServerTunnelStream() = default;
  void start_read(TunnelFrame* frame) override;
  void start_write(const TunnelFrame* frame) override;

  grpc::CallbackServerContext* context_ = nullptr;
  OpenHandler on_open_;
  TunnelFrame first_;
  bool opened_ = false;
  // Held while an operation or Finish is handed to gRPC, so that none starts after Finish.
  std::mutex mu_;
  bool finished_ = false;  // guarded by mu_
  std::shared_ptr<ServerTunnelStream> self_;  // alive until OnDone
};

}  // namespace offload::tunnel
