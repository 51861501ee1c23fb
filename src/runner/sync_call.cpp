#include "offload/runner/sync_call.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <thread>

#include "offload/runner/metrics.h"
#include "offload/sync/replica.h"
#include "offload/sync/wire.h"

namespace offload::runner {

namespace {
class RefusedSync final : public grpc::ServerBidiReactor<v1::SyncMessage, v1::SyncMessage> {
 public:
  explicit RefusedSync(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};
}  // namespace

// A gRPC callback reactor presented to the replica as a Transport. Reads go into a bounded
// inbox; when it is full the next read starts only once the replica takes a message, so a fast
// client cannot make the runner buffer a whole tree in memory. The inbox charges what it holds to
// the session's byte budget, shared by all its calls: the next read starts only while the
// session is under it, else once some call's replica gives bytes back. One write at a time:
// try_send starts it and says busy while it is in flight (the replica then handles what it
// received).
class SyncCall final : public grpc::ServerBidiReactor<v1::SyncMessage, v1::SyncMessage>,
                       public sync::Transport {
 public:
  SyncCall(grpc::CallbackServerContext* ctx, SyncCalls& owner, std::filesystem::path sync_root,
           std::string label, std::optional<sync::ReplicaOptions::IdShift> id_shift)
      : ctx_(ctx), owner_(owner), label_(std::move(label)), budget_(owner.budget_) {
    options_.sync_root = std::move(sync_root);
    options_.id_shift = id_shift;
    options_.claim = [&owner](const std::string& id, bool single, const std::string& file) {
      return owner.claim(id, single, file);
    };
    send_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (send_fd_ < 0) throw std::runtime_error("eventfd failed");
    update_send_signal_locked();
    inbox_.set_on_space([this] { resume_reading(); });
    inbox_.set_budget(budget_);
    StartRead(&incoming_);
    thread_ = std::thread([this, gate = owner.replica_gate_] {  // start() holds owner.mu_
      if (gate) gate();
      sync::serve_replica(*this, options_, stop_);
      inbox_.close();
      {
        // No read starts after Finish, and no budget callback runs once the call may go.
        std::lock_guard lock(mu_);
        reading_over_ = true;
      }
      budget_->stop_waiting(this);
      {
        // Finish only once the last write is done with outgoing_.
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return !writing_; });
      }
      Finish(grpc::Status::OK);
    });
  }
  ~SyncCall() override { ::close(send_fd_); }

  // Transport
  Offer try_send(v1::SyncMessage& message) override {
    std::lock_guard lock(mu_);
    if (broken_) return Offer::broken;
    if (writing_) return Offer::busy;
    outgoing_ = std::move(message);
    count_sent(outgoing_.ByteSizeLong());
    writing_ = true;
    update_send_signal_locked();
    StartWrite(&outgoing_);
    return Offer::taken;
  }
  int send_fd() override { return send_fd_; }
  sync::Inbox& inbox() override { return inbox_; }
  void cancel() override {
    stop_.store(true);
    ctx_->TryCancel();
    inbox_.close();
  }

  // Reactions
  void OnReadDone(bool ok) override {
    if (!ok) {
      inbox_.close();
      return;
    }
    count_received(incoming_.ByteSizeLong());
    std::lock_guard lock(mu_);
    if (inbox_.try_push(incoming_)) {
      read_next_locked();
    } else {
      paused_ = true;
    }
  }
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    if (!ok) broken_ = true;
    writing_ = false;
    update_send_signal_locked();
    cv_.notify_all();
  }
  void OnCancel() override {
    stop_.store(true);
    inbox_.close();
    std::lock_guard lock(mu_);
    broken_ = true;
    update_send_signal_locked();
    cv_.notify_all();
  }
  void OnDone() override {
    if (thread_.joinable()) thread_.join();
    owner_.remove(this);
    delete this;
  }

 private:
  void count_received(std::size_t bytes) {
    owner_.bytes_received_.fetch_add(bytes, std::memory_order_relaxed);
    RunnerMetrics::global().sync_received(bytes);
  }
  void count_sent(std::size_t bytes) {
    owner_.bytes_sent_.fetch_add(bytes, std::memory_order_relaxed);
    RunnerMetrics::global().sync_sent(bytes);
  }

  // send_fd_ is readable while try_send would not answer busy.
  void update_send_signal_locked() {
    bool on = !writing_ || broken_;
    if (on == send_signalled_) return;
    std::uint64_t value = 1;
    [[maybe_unused]] auto n =
        on ? ::write(send_fd_, &value, sizeof value) : ::read(send_fd_, &value, sizeof value);
    send_signalled_ = on;
  }

  void resume_reading() {
    std::unique_lock lock(mu_);
    if (!paused_) return;
    paused_ = false;
    if (!inbox_.try_push(incoming_)) {
      paused_ = true;  // closed or (impossible with one producer) full again
      return;
    }
    read_next_locked();
  }

  // Starts the next read if the session has room in its budget; otherwise waits for it. The
  // check and the wait are one step (no wake-up lost to a give-back in between), and a session
  // that holds nothing always has room, so a message larger than the budget cannot stall it.
  void read_next_locked() {
    if (reading_over_) return;
    if (budget_->wait_for_room(this, [this] { on_budget_room(); })) {
      StartRead(&incoming_);
    } else {
      waiting_for_budget_ = true;
    }
  }

  // Some call of the session gave bytes back (on its replica's thread, or as it ended).
  void on_budget_room() {
    std::lock_guard lock(mu_);
    if (!waiting_for_budget_) return;
    waiting_for_budget_ = false;
    read_next_locked();
  }

  grpc::CallbackServerContext* ctx_;
  SyncCalls& owner_;
  std::string label_;
  sync::ReplicaOptions options_;
  std::shared_ptr<sync::ByteBudget> budget_;  // declared before inbox_, which gives back to it
  sync::Inbox inbox_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  v1::SyncMessage incoming_, outgoing_;
  bool paused_ = false;              // incoming_ waits for room in the inbox
  bool waiting_for_budget_ = false;  // the next read waits for room in the session's budget
  bool reading_over_ = false;        // the replica is done: no more reads
  bool writing_ = false;
  bool broken_ = false;
  int send_fd_ = -1;
  bool send_signalled_ = false;
  std::thread thread_;

  friend class SyncCalls;
};

grpc::ServerBidiReactor<v1::SyncMessage, v1::SyncMessage>* SyncCalls::start(
    grpc::CallbackServerContext* ctx, std::filesystem::path sync_root, std::string label,
    std::optional<sync::ReplicaOptions::IdShift> id_shift) {
  std::lock_guard lock(mu_);
  if (stopped_)
    return new RefusedSync(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the session is ending"));
  if (max_calls_ > 0 && calls_.size() >= max_calls_)
    return new RefusedSync(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        "this session already has " + std::to_string(calls_.size()) +
            " sync calls (bind-mount replicas) open, the most the runner allows per session; "
            "end some, or ask the operator to raise --max-sync-calls-per-session"));
  std::error_code ec;
  std::filesystem::create_directories(sync_root, ec);
  if (ec)
    return new RefusedSync(grpc::Status(grpc::StatusCode::INTERNAL,
                                        "cannot create the sync root: " + ec.message()));
  // A remapped container root must traverse the sync root to reach its mounts; the root stays
  // host root's own (not writable by the session), so nothing there can be swapped for a symlink.
  if (id_shift) {
    std::filesystem::permissions(sync_root, std::filesystem::perms::others_exec,
                                 std::filesystem::perm_options::add, ec);
    if (ec)
      return new RefusedSync(grpc::Status(grpc::StatusCode::INTERNAL,
                                          "cannot open up the sync root: " + ec.message()));
  }
  auto* call = new SyncCall(ctx, *this, std::move(sync_root), std::move(label), id_shift);
  calls_.insert(call);
  return call;
}

void SyncCalls::remove(SyncCall* call) {
  std::lock_guard lock(mu_);
  calls_.erase(call);
  cv_.notify_all();
}

bool SyncCalls::stop_all(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  stopped_ = true;
  for (auto* c : calls_) c->cancel();
  return cv_.wait_for(lock, timeout, [&] { return calls_.empty(); });
}

std::string SyncCalls::claim(const std::string& mount_id, bool single_file,
                             const std::string& file_name) {
  std::optional<std::string> mode;
  if (single_file) mode = file_name;
  std::unique_lock lock(mu_);
  auto [it, added] = claims_.emplace(mount_id, mode);
  if (added) {
    auto on_new_claim = on_new_claim_;
    lock.unlock();
    if (on_new_claim) on_new_claim();
    return "";
  }
  if (it->second == mode) return "";
  auto describe = [](const std::optional<std::string>& m) {
    return m ? "the single file \"" + *m + "\"" : std::string("a directory");
  };
  return "mount " + mount_id + " was opened for " + describe(it->second) +
         " in this session and cannot now hold " + describe(mode);
}

bool SyncCalls::is_mount_source(const std::filesystem::path& relative) const {
  std::vector<std::string> parts;
  for (const auto& part : relative) parts.push_back(part.string());
  if (parts.empty() || parts.size() > 2) return false;
  std::lock_guard lock(mu_);
  auto it = claims_.find(parts[0]);
  if (it == claims_.end()) return false;
  return parts.size() == 1 ? !it->second : it->second && *it->second == parts[1];
}

std::map<std::string, std::optional<std::string>> SyncCalls::claims() const {
  std::lock_guard lock(mu_);
  return claims_;
}

void SyncCalls::restore_claims(std::map<std::string, std::optional<std::string>> claims) {
  std::lock_guard lock(mu_);
  claims_ = std::move(claims);
}

std::vector<std::string> SyncCalls::mount_ids() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> ids;
  for (const auto& [id, mode] : claims_) ids.push_back(id);
  return ids;
}

std::size_t SyncCalls::size() const {
  std::lock_guard lock(mu_);
  return calls_.size();
}

}  // namespace offload::runner
