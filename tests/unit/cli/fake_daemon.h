// An in-process offloadd stand-in: serves offload.v1.Control on the control socket of a
// temporary docker config directory, records what it was asked and answers what the test says.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "offload/common/paths.h"
#include "offload/v1/control.grpc.pb.h"

namespace offload::cli::testing {

class FakeDaemon final : public v1::Control::Service {
 public:
  explicit FakeDaemon(const std::filesystem::path& docker_config) {
    StatePaths paths(docker_config);
    std::filesystem::create_directories(paths.dir);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + paths.control_socket.string(),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~FakeDaemon() override { shutdown(); }

  void shutdown() {
    if (!server_) return;
    release_watchers();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_.reset();
  }

  // What the next calls return.
  grpc::Status status_to_return = grpc::Status::OK;
  v1::StartResponse start_response;
  v1::StopResponse stop_response;
  v1::SessionStatus status_response;
  std::vector<v1::SessionStatus> watch_frames;
  bool watch_blocks = false;  // after the frames, wait until the client cancels
  // Sent to a watcher once Start is called, before Start answers: its phases, as offloadd
  // reports them while it starts a session.
  std::vector<v1::SessionStatus> start_frames;
  v1::ListContainersResponse containers_response;
  v1::ListImagesResponse images_response;
  v1::VersionResponse version_response;
  v1::ListAccountsResponse accounts_response;
  v1::DiagnoseResponse diagnose_response;
  grpc::Status diagnose_status = grpc::Status::OK;
  // Handed out by the next TakeNotices call only, as the daemon does.
  std::vector<std::string> notices;
  bool notices_unimplemented = false;

  // What was asked.
  std::mutex mutex;
  std::vector<v1::StartRequest> start_requests;
  std::vector<v1::ListContainersRequest> container_requests;
  int stop_calls = 0;
  int take_notices_calls = 0;
  bool watch_cancelled = false;
  std::condition_variable watching;  // notified once a WatchStatus call has sent its frames
  bool watch_started = false;

  grpc::Status Start(grpc::ServerContext*, const v1::StartRequest* request,
                     v1::StartResponse* response) override {
    std::unique_lock lock(mutex);
    start_requests.push_back(*request);
    start_called_ = true;
    watching.notify_all();
    if (!start_frames.empty())
      watching.wait_for(lock, std::chrono::seconds(5), [this] { return start_frames_sent_; });
    *response = start_response;
    return status_to_return;
  }
  grpc::Status Stop(grpc::ServerContext*, const v1::StopRequest*,
                    v1::StopResponse* response) override {
    std::lock_guard lock(mutex);
    ++stop_calls;
    *response = stop_response;
    return status_to_return;
  }
  grpc::Status Status(grpc::ServerContext*, const v1::StatusRequest*,
                      v1::SessionStatus* response) override {
    *response = status_response;
    return status_to_return;
  }
  grpc::Status WatchStatus(grpc::ServerContext* context, const v1::StatusRequest*,
                           grpc::ServerWriter<v1::SessionStatus>* writer) override {
    for (const auto& frame : watch_frames) writer->Write(frame);
    std::unique_lock lock(mutex);
    watch_started = true;
    watching.notify_all();
    if (!start_frames.empty() && !start_frames_sent_) {
      watching.wait_for(lock, std::chrono::seconds(5), [this] { return start_called_ || released_; });
      for (const auto& frame : start_frames) writer->Write(frame);
      start_frames_sent_ = true;
      watching.notify_all();
    }
    if (!watch_blocks) return status_to_return;
    // Poll for the cancellation: ServerContext offers no blocking wait for it.
    while (!context->IsCancelled() && !released_)
      watching.wait_for(lock, std::chrono::milliseconds(5));
    watch_cancelled = context->IsCancelled();
    return grpc::Status::CANCELLED;
  }
  grpc::Status ListContainers(grpc::ServerContext*, const v1::ListContainersRequest* request,
                              v1::ListContainersResponse* response) override {
    std::lock_guard lock(mutex);
    container_requests.push_back(*request);
    *response = containers_response;
    return status_to_return;
  }
  grpc::Status ListImages(grpc::ServerContext*, const v1::ListImagesRequest*,
                          v1::ListImagesResponse* response) override {
    *response = images_response;
    return status_to_return;
  }
  grpc::Status Version(grpc::ServerContext*, const v1::VersionRequest*,
                       v1::VersionResponse* response) override {
    *response = version_response;
    return status_to_return;
  }
  grpc::Status ListAccounts(grpc::ServerContext*, const v1::ListAccountsRequest*,
                            v1::ListAccountsResponse* response) override {
    *response = accounts_response;
    return grpc::Status::OK;
  }
  grpc::Status Diagnose(grpc::ServerContext*, const v1::DiagnoseRequest*,
                        v1::DiagnoseResponse* response) override {
    *response = diagnose_response;
    return diagnose_status;
  }
  grpc::Status TakeNotices(grpc::ServerContext*, const v1::TakeNoticesRequest*,
                           v1::TakeNoticesResponse* response) override {
    std::lock_guard lock(mutex);
    ++take_notices_calls;
    if (notices_unimplemented) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no");
    for (auto& n : notices) response->add_notices(n);
    notices.clear();
    return grpc::Status::OK;
  }

 private:
  void release_watchers() {
    std::lock_guard lock(mutex);
    released_ = true;
    watching.notify_all();
  }

  bool released_ = false;
  bool start_called_ = false, start_frames_sent_ = false;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace offload::cli::testing
