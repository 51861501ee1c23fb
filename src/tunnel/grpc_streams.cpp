#include "offload/tunnel/grpc_streams.h"

#include <spdlog/spdlog.h>

namespace offload::tunnel {

void StreamRegistry::add(ClientTunnelStream* stream) {
  std::lock_guard lock(mu_);
  streams_.insert(stream);
}

void StreamRegistry::remove(ClientTunnelStream* stream) {
  std::lock_guard lock(mu_);
  streams_.erase(stream);
  if (streams_.empty()) cv_.notify_all();
}

void StreamRegistry::cancel_all(const std::string& reason) {
  // Under the lock: a stream being destroyed waits in remove() until we are done with it.
  std::lock_guard lock(mu_);
  for (auto* s : streams_) s->cancel(reason);
}

bool StreamRegistry::wait_empty(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [this] { return streams_.empty(); });
}

std::size_t StreamRegistry::size() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

ClientTunnelStream::~ClientTunnelStream() {
  if (registry_) registry_->remove(this);
}

std::shared_ptr<ClientTunnelStream> ClientTunnelStream::open(
    v1::Runner::Stub& stub, const v1::TunnelOpen& target,
    const std::function<void(grpc::ClientContext&)>& prepare, StreamRegistry* registry) {
  std::shared_ptr<ClientTunnelStream> s(new ClientTunnelStream);
  s->self_ = s;
  s->registry_ = registry;
  if (registry) registry->add(s.get());
  prepare(s->context_);
  // Headers travel with the open frame in one packet.
  s->context_.set_initial_metadata_corked(true);
  *s->open_frame_.mutable_open() = target;
  stub.async()->Tunnel(&s->context_, s.get());
  // Held until release(): the coroutines may still start operations after the server finished.
  s->AddHold();
  s->StartWrite(&s->open_frame_);
  s->StartCall();
  return s;
}

void ClientTunnelStream::cancel(const std::string& reason) {
  {
    // Once released, the call is finishing on its own and may already be torn down inside
    // gRPC: leave it alone.
    std::lock_guard lock(mu_);
    if (released_ || done_) return;
  }
  spdlog::debug("tunnel cancelled: {}", reason);
  context_.TryCancel();
}

void ClientTunnelStream::release() {
  {
    std::lock_guard lock(mu_);
    if (released_) return;
    released_ = true;
  }
  RemoveHold();
}

void ClientTunnelStream::start_write(const TunnelFrame* frame) {
  {
    // gRPC allows one write in flight: the first data frame waits for the open frame.
    std::lock_guard lock(mu_);
    if (open_write_pending_) {
      queued_write_ = frame;
      return;
    }
  }
  StartWrite(frame);
}

void ClientTunnelStream::OnWriteDone(bool ok) {
  const TunnelFrame* queued = nullptr;
  {
    std::lock_guard lock(mu_);
    if (open_write_pending_) {
      // The open frame's completion is ours, not the coroutine's.
      open_write_pending_ = false;
      queued = std::exchange(queued_write_, nullptr);
      if (!queued) return;
    }
  }
  if (queued) {
    StartWrite(queued);
    return;
  }
  write_done(ok);
}

void ClientTunnelStream::OnDone(const grpc::Status& status) {
  std::optional<boost::asio::any_completion_handler<void(grpc::Status)>> handler;
  {
    std::lock_guard lock(mu_);
    done_ = true;
    status_ = status;
    handler.swap(done_handler_);
  }
  if (handler) post_to_handler_executor(std::move(*handler), status);
  // A splice waiting on its socket only (an idle client) learns of the end here.
  if (!status.ok()) call_ended();
  // Last reference from gRPC's side; the object lives on while a coroutine holds it.
  auto self = std::move(self_);
}

ServerTunnelStream* ServerTunnelStream::create(grpc::CallbackServerContext* context,
                                               OpenHandler on_open) {
  std::shared_ptr<ServerTunnelStream> s(new ServerTunnelStream);
  s->self_ = s;
  s->context_ = context;
  s->on_open_ = std::move(on_open);
  s->StartRead(&s->first_);
  return s.get();
}

void ServerTunnelStream::OnReadDone(bool ok) {
  if (opened_) {
    read_done(ok);
    return;
  }
  opened_ = true;
  if (!ok) {
    finish(grpc::Status(grpc::StatusCode::CANCELLED, "tunnel closed before it was opened"));
    return;
  }
  if (!first_.has_open()) {
    finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first tunnel frame must say which target to open"));
    return;
  }
  on_open_(shared_from_this(), first_.open());
}

void ServerTunnelStream::cancel(const std::string& reason) {
  finish(grpc::Status(grpc::StatusCode::ABORTED, reason));
}

// gRPC's Start* and Finish only queue work: no reaction runs inline in them (server bidi
// reactions are never inlined, and OnDone after Finish goes to gRPC's executor), so holding mu_
// across them cannot deadlock with a reaction, and none of our reactions takes mu_ but the first
// read's, which is started before anyone else can hold the stream.
void ServerTunnelStream::start_read(TunnelFrame* frame) {
  {
    std::lock_guard lock(mu_);
    if (!finished_) {
      StartRead(frame);
      return;
    }
  }
  read_done(false);
}

void ServerTunnelStream::start_write(const TunnelFrame* frame) {
  {
    std::lock_guard lock(mu_);
    if (!finished_) {
      StartWrite(frame);
      return;
    }
  }
  write_done(false);
}

void ServerTunnelStream::finish(const grpc::Status& status) {
  std::lock_guard lock(mu_);
  if (finished_) return;
  finished_ = true;
  Finish(status);
}

void ServerTunnelStream::OnDone() { auto self = std::move(self_); }

}  // namespace offload::tunnel
