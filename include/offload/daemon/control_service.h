// offload.v1.Control: the CLI plugin's view of the daemon.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <optional>

#include "offload/daemon/session_manager.h"
#include "offload/v1/control.grpc.pb.h"

namespace offload::daemon {

class ControlService final : public v1::Control::CallbackService {
 public:
  // `paths` are the daemon's (for Diagnose); without them they are derived from the docker
  // socket the session manager reports, which StatePaths places at <config>/offload/docker.sock.
  explicit ControlService(SessionManager& sessions, std::optional<StatePaths> paths = std::nullopt);
  ~ControlService() override;

  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext*, const v1::StartRequest*,
                                  v1::StartResponse*) override;
  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext*, const v1::StopRequest*,
                                 v1::StopResponse*) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext*, const v1::StatusRequest*,
                                   v1::SessionStatus*) override;
  grpc::ServerWriteReactor<v1::SessionStatus>* WatchStatus(grpc::CallbackServerContext*,
                                                           const v1::StatusRequest*) override;
  grpc::ServerUnaryReactor* ListContainers(grpc::CallbackServerContext*,
                                           const v1::ListContainersRequest*,
                                           v1::ListContainersResponse*) override;
  grpc::ServerUnaryReactor* ListImages(grpc::CallbackServerContext*, const v1::ListImagesRequest*,
                                       v1::ListImagesResponse*) override;
  grpc::ServerUnaryReactor* Version(grpc::CallbackServerContext*, const v1::VersionRequest*,
                                    v1::VersionResponse*) override;
  grpc::ServerUnaryReactor* TakeNotices(grpc::CallbackServerContext*,
                                        const v1::TakeNoticesRequest*,
                                        v1::TakeNoticesResponse*) override;
  grpc::ServerUnaryReactor* ListAccounts(grpc::CallbackServerContext*,
                                         const v1::ListAccountsRequest*,
                                         v1::ListAccountsResponse*) override;
  grpc::ServerUnaryReactor* Diagnose(grpc::CallbackServerContext*, const v1::DiagnoseRequest*,
                                     v1::DiagnoseResponse*) override;

 private:
  // Runs `work` on the blocking pool and finishes the call with its outcome.
  template <class Work>
  grpc::ServerUnaryReactor* run(grpc::CallbackServerContext* ctx, Work work);

  SessionManager& sessions_;
  StatePaths paths_;
  boost::asio::thread_pool blocking_{4};
};

}  // namespace offload::daemon
