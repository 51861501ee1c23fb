#include "offload/daemon/control_service.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <deque>

#include "offload/daemon/diagnose.h"

namespace offload::daemon {

namespace {
StatePaths paths_of(const SessionManager& sessions) {
  std::filesystem::path socket = sessions.status().docker_host();
  socket = socket.string().substr(std::string_view("unix://").size());
  return StatePaths(socket.parent_path().parent_path());
}
}  // namespace

ControlService::ControlService(SessionManager& sessions, std::optional<StatePaths> paths)
    : sessions_(sessions), paths_(paths ? std::move(*paths) : paths_of(sessions)) {}
ControlService::~ControlService() { blocking_.join(); }

template <class Work>
grpc::ServerUnaryReactor* ControlService::run(grpc::CallbackServerContext* ctx, Work work) {
  auto* reactor = ctx->DefaultReactor();
  boost::asio::post(blocking_, [reactor, work = std::move(work)]() mutable {
    try {
      work();
      reactor->Finish(grpc::Status::OK);
    } catch (const ControlError& e) {
      reactor->Finish(grpc::Status(e.code, e.what()));
    } catch (const std::exception& e) {
      spdlog::error("control call failed: {}", e.what());
      reactor->Finish(grpc::Status(grpc::StatusCode::INTERNAL, e.what()));
    }
  });
  return reactor;
}

grpc::ServerUnaryReactor* ControlService::Start(grpc::CallbackServerContext* ctx,
                                                const v1::StartRequest* request,
                                                v1::StartResponse* response) {
  return run(ctx, [this, ctx, request, response] {
    *response = sessions_.start(*request, [ctx] { return ctx->IsCancelled(); });
  });
}

grpc::ServerUnaryReactor* ControlService::Stop(grpc::CallbackServerContext* ctx,
                                               const v1::StopRequest*, v1::StopResponse* response) {
  return run(ctx, [this, response] { *response = sessions_.stop(); });
}

grpc::ServerUnaryReactor* ControlService::Status(grpc::CallbackServerContext* ctx,
                                                 const v1::StatusRequest*,
                                                 v1::SessionStatus* response) {
  auto* reactor = ctx->DefaultReactor();
  *response = sessions_.status();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ControlService::ListContainers(grpc::CallbackServerContext* ctx,
                                                         const v1::ListContainersRequest* request,
                                                         v1::ListContainersResponse* response) {
  return run(ctx, [this, request, response] { *response = sessions_.list_containers(request->all()); });
}

grpc::ServerUnaryReactor* ControlService::ListImages(grpc::CallbackServerContext* ctx,
                                                     const v1::ListImagesRequest*,
                                                     v1::ListImagesResponse* response) {
  return run(ctx, [this, response] { *response = sessions_.list_images(); });
}

grpc::ServerUnaryReactor* ControlService::Version(grpc::CallbackServerContext* ctx,
                                                  const v1::VersionRequest*,
                                                  v1::VersionResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  *response = sessions_.version();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ControlService::TakeNotices(grpc::CallbackServerContext* ctx,
                                                      const v1::TakeNoticesRequest*,
                                                      v1::TakeNoticesResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  for (auto& n : sessions_.take_notices()) response->add_notices(std::move(n));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ControlService::ListAccounts(grpc::CallbackServerContext* ctx,
                                                       const v1::ListAccountsRequest*,
                                                       v1::ListAccountsResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  *response = sessions_.accounts();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* ControlService::Diagnose(grpc::CallbackServerContext* ctx,
                                                   const v1::DiagnoseRequest*,
                                                   v1::DiagnoseResponse* response) {
  // Network probes with timeouts: off the gRPC threads.
  return run(ctx, [this, response] { *response = diagnose(sessions_, paths_); });
}

namespace {

// Streams the status to one `status --watch` client: the latest status wins when the client
// reads slower than the state changes (it only ever needs the newest).
//
// Lifetime: OnDone unwatches, then deletes the writer; SessionManager::unwatch returns only once
// no call of our watcher is running or can start, so push() never meets a deleted writer.
// StartWrite and Finish are called outside mu_: should gRPC run a reaction inline, it may take
// mu_ or end the call (OnDone) without deadlocking on us or freeing a mutex we still hold. That
// is safe because the decision is taken under mu_: a write is only started while none is in
// flight and before Finish, and Finish is only called while no write is in flight, so the call
// cannot be done (and the writer deleted) between the decision and the call.
class StatusWriter final : public grpc::ServerWriteReactor<v1::SessionStatus> {
 public:
  explicit StatusWriter(SessionManager& sessions) : sessions_(sessions) {
    watch_id_ = sessions_.watch([this](const v1::SessionStatus& s) { push(s); });
  }

  void OnWriteDone(bool ok) override {
    Next next;
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok || cancelled_)
        next = finish_locked(grpc::Status::CANCELLED);
      else if (next_)
        next = write_locked();
    }
    act(next);
  }

  void OnCancel() override {
    Next next;
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      if (!writing_) next = finish_locked(grpc::Status::CANCELLED);
    }
    act(next);
  }

  void OnDone() override {
    sessions_.unwatch(watch_id_);
    delete this;
  }

 private:
  // What to ask of gRPC once mu_ is released.
  struct Next {
    bool write = false;
    std::optional<grpc::Status> finish;
  };

  void push(const v1::SessionStatus& s) {
    Next next;
    {
      std::lock_guard lock(mu_);
      if (finished_ || cancelled_) return;
      next_ = s;
      if (!writing_) next = write_locked();
    }
    act(next);
  }
  Next write_locked() {
    current_ = std::move(*next_);
    next_.reset();
    writing_ = true;
    return Next{.write = true, .finish = std::nullopt};
  }
  Next finish_locked(const grpc::Status& status) {
    if (finished_) return {};
    finished_ = true;
    return Next{.finish = status};
  }
  // `current_` is only changed again after this write's OnWriteDone.
  void act(const Next& next) {
    if (next.write) StartWrite(&current_);
    if (next.finish) Finish(*next.finish);
  }

  SessionManager& sessions_;
  int watch_id_ = 0;
  std::mutex mu_;
  v1::SessionStatus current_;
  std::optional<v1::SessionStatus> next_;
  bool writing_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::SessionStatus>* ControlService::WatchStatus(
    grpc::CallbackServerContext*, const v1::StatusRequest*) {
  return new StatusWriter(sessions_);
}

}  // namespace offload::daemon
