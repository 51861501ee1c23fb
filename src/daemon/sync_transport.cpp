#include "offload/daemon/sync_transport.h"

#include <atomic>
#include <mutex>
#include <thread>

namespace offload::daemon {

namespace {

class ClientSyncTransport final : public sync::Transport {
 public:
  explicit ClientSyncTransport(RunnerClient& runner) {
    runner.authorize(ctx_);
    stream_ = runner.stub().Sync(&ctx_);
    reader_ = std::thread([this] {
      v1::SyncMessage m;
      // push() blocks while the inbox is full: that is the back-pressure on the runner.
      while (stream_->Read(&m)) {
        if (!inbox_.push(std::move(m))) break;
        m.Clear();
      }
      grpc::Status status;
      {
        std::lock_guard lock(write_mu_);
        stream_->WritesDone();
        status = stream_->Finish();
      }
      {
        std::lock_guard lock(reason_mu_);
        if (!status.ok()) reason_ = status.error_message();
      }
      inbox_.close();
    });
  }

  ~ClientSyncTransport() override {
    cancel();
    if (reader_.joinable()) reader_.join();
  }

  bool send(const v1::SyncMessage& message) override {
    std::lock_guard lock(write_mu_);
    if (cancelled_.load()) return false;
    return stream_->Write(message);
  }
  sync::Inbox& inbox() override { return inbox_; }
  void cancel() override {
    cancelled_.store(true);
    ctx_.TryCancel();
    inbox_.close();
  }
  std::string end_reason() const override {
    std::lock_guard lock(reason_mu_);
    return reason_;
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SyncMessage, v1::SyncMessage>> stream_;
  sync::Inbox inbox_;
  std::mutex write_mu_;
  std::atomic<bool> cancelled_{false};
  mutable std::mutex reason_mu_;
  std::string reason_;
  std::thread reader_;
};

}  // namespace

std::unique_ptr<sync::Transport> open_sync_transport(RunnerClient& runner) {
  return std::make_unique<ClientSyncTransport>(runner);
}

}  // namespace offload::daemon
