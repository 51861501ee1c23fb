#include "offload/daemon/sync_transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

namespace offload::daemon {

namespace {

// gRPC's synchronous Write blocks while the stream's flow-control window is full, so it runs on
// a thread of its own: the mount's thread hands it one message at a time (try_send) and keeps
// reading while the runner does not (see sync::detail::Link). At most two messages are held:
// the one being written and the next.
class ClientSyncTransport final : public sync::Transport {
 public:
  explicit ClientSyncTransport(RunnerClient& runner) {
    send_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (send_fd_ < 0) throw std::runtime_error("eventfd failed");
    update_send_signal_locked();
    runner.authorize(ctx_);
    stream_ = runner.stub().Sync(&ctx_);
    writer_ = std::thread([this] { write_loop(); });
    reader_ = std::thread([this] {
      v1::SyncMessage m;
      // push() blocks while the inbox is full: that is the back-pressure on the runner.
      while (stream_->Read(&m)) {
        if (!inbox_.push(std::move(m))) break;
        m.Clear();
      }
      {
        // The call is over (or cancelled): a Write in progress fails now. WritesDone and Finish
        // must not run beside it.
        std::unique_lock lock(mu_);
        closing_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !writer_running_; });
      }
      stream_->WritesDone();
      grpc::Status status = stream_->Finish();
      {
        std::lock_guard lock(mu_);
        if (!status.ok()) reason_ = status.error_message();
        broken_ = true;
        update_send_signal_locked();
      }
      inbox_.close();
    });
  }

  ~ClientSyncTransport() override {
    cancel();
    if (reader_.joinable()) reader_.join();
    if (writer_.joinable()) writer_.join();
    ::close(send_fd_);
  }

  Offer try_send(v1::SyncMessage& message) override {
    std::lock_guard lock(mu_);
    if (broken_ || closing_) return Offer::broken;
    if (next_) return Offer::busy;
    next_ = std::move(message);
    update_send_signal_locked();
    cv_.notify_all();
    return Offer::taken;
  }
  int send_fd() override { return send_fd_; }
  sync::Inbox& inbox() override { return inbox_; }
  void cancel() override {
    {
      std::lock_guard lock(mu_);
      broken_ = true;
      update_send_signal_locked();
      cv_.notify_all();
    }
    ctx_.TryCancel();
    inbox_.close();
  }
  std::string end_reason() const override {
    std::lock_guard lock(mu_);
    return reason_;
  }

 private:
  void write_loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return next_ || closing_ || broken_; });
      if (closing_ || broken_) break;
      v1::SyncMessage m = std::move(*next_);
      next_.reset();
      update_send_signal_locked();  // room for the next one while this one is written
      lock.unlock();
      bool ok = stream_->Write(m);
      lock.lock();
      if (!ok) {
        broken_ = true;
        update_send_signal_locked();
        break;
      }
    }
    writer_running_ = false;
    cv_.notify_all();
  }

  // send_fd_ is readable while try_send would not answer busy.
  void update_send_signal_locked() {
    bool on = !next_ || broken_ || closing_;
    if (on == send_signalled_) return;
    std::uint64_t value = 1;
    [[maybe_unused]] auto n =
        on ? ::write(send_fd_, &value, sizeof value) : ::read(send_fd_, &value, sizeof value);
    send_signalled_ = on;
  }

  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SyncMessage, v1::SyncMessage>> stream_;
  sync::Inbox inbox_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<v1::SyncMessage> next_;  // handed over, not yet being written
  bool writer_running_ = true;
  bool closing_ = false;  // the reader saw the end: no more writes
  bool broken_ = false;
  int send_fd_ = -1;
  bool send_signalled_ = false;
  std::string reason_;
  std::thread writer_;
  std::thread reader_;
};

}  // namespace

std::unique_ptr<sync::Transport> open_sync_transport(RunnerClient& runner) {
  return std::make_unique<ClientSyncTransport>(runner);
}

}  // namespace offload::daemon
