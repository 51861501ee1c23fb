#include "offload/sync/mount.h"

#include <openssl/sha.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mount_worker.h"
#include "offload/common/clock.h"

namespace offload::sync {


namespace {

constexpr std::size_t kMaxReported = 100;  // conflicts and skipped paths kept for `status`

template <class T>
void push_bounded(std::vector<T>& v, T item) {
  if (v.size() >= kMaxReported) v.erase(v.begin());
  v.push_back(std::move(item));
}

}  // namespace

const char* to_string(MountStatus::State state) {
  switch (state) {
    case MountStatus::State::connecting: return "connecting";
    case MountStatus::State::syncing: return "syncing";
    case MountStatus::State::watching: return "in sync";
    case MountStatus::State::reconnecting: return "reconnecting";
    case MountStatus::State::failed: return "failed";
    case MountStatus::State::stopped: return "stopped";
  }
  return "?";
}

std::string MountSync::id_for(const std::filesystem::path& local_path) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  std::string s = local_path.string();
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 8; ++i) {
    id += hex[digest[i] >> 4];
    id += hex[digest[i] & 15];
  }
  return id;
}

MountSync::MountSync(std::string mount_id, Options options, Connect connect)
    : id_(std::move(mount_id)), options_(std::move(options)), connect_(std::move(connect)) {
  status_.local_path = options_.local_path.string();
  status_.mount_id = id_;
  status_.single_file = options_.single_file;
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::runtime_error("eventfd failed");
  worker_ = std::make_unique<Worker>(*this);
  thread_ = std::thread([this] {
    try {
      worker_->run();
    } catch (const std::exception& e) {
      spdlog::error("sync {}: {}", id_, e.what());
      set_state(MountStatus::State::failed, e.what());
      set_ready(false, std::string("synchronisation failed: ") + e.what());
      fail_flushes();
    }
  });
}

MountSync::~MountSync() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void MountSync::stop() {
  stop_.store(true);
  {
    std::lock_guard lock(mu_);
    retry_cv_.notify_all();
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

void MountSync::when_ready(ReadyCallback done) {
  std::unique_lock lock(mu_);
  if (ready_known_) {
    bool ok = ready_ok_;
    std::string value = ready_value_;
    // A mount whose first attempt failed tries again now: the session may be back.
    if (!ok && !stop_.load()) {
      ready_known_ = false;
      ready_waiters_.push_back(std::move(done));
      retry_now_ = true;
      retry_cv_.notify_all();
      return;
    }
    lock.unlock();
    done(ok, value);
    return;
  }
  ready_waiters_.push_back(std::move(done));
}

void MountSync::set_ready(bool ok, const std::string& value) {
  std::vector<ReadyCallback> waiters;
  {
    std::lock_guard lock(mu_);
    if (ready_known_ && ready_ok_) return;
    ready_known_ = true;
    ready_ok_ = ok;
    ready_value_ = value;
    waiters.swap(ready_waiters_);
  }
  for (auto& w : waiters) w(ok, value);
}

void MountSync::flush(std::function<void(bool)> done) {
  {
    std::lock_guard lock(mu_);
    if (stop_.load() || status_.state != MountStatus::State::watching) {
      // Not connected: nothing to wait for (the caller must not hang on a broken link).
    } else {
      flush_requests_.push_back(std::move(done));
      done = nullptr;
    }
  }
  if (done) {
    done(false);
    return;
  }
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

bool MountSync::wait_retry(std::chrono::milliseconds delay) {
  std::unique_lock lock(mu_);
  retry_cv_.wait_for(lock, delay, [&] { return stop_.load() || retry_now_; });
  retry_now_ = false;
  return !stop_.load();
}

std::vector<std::function<void(bool)>> MountSync::take_flush_requests() {
  std::lock_guard lock(mu_);
  std::vector<std::function<void(bool)>> out;
  out.swap(flush_requests_);
  return out;
}

void MountSync::fail_flushes() {
  for (auto& f : take_flush_requests()) f(false);
}

MountStatus MountSync::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

void MountSync::set_state(MountStatus::State state, const std::string& error) {
  std::lock_guard lock(mu_);
  if (state != status_.state)
    spdlog::info("sync {} ({}): {}{}", id_, status_.local_path, to_string(state),
                 error.empty() ? "" : ": " + error);
  status_.state = state;
  if (!error.empty() || state == MountStatus::State::watching) status_.error = error;
}

void MountSync::changed() {
  std::lock_guard lock(mu_);
  status_.last_change_unix_ms = unix_now_ms();
}

void MountSync::set_entries(std::size_t entries) {
  std::lock_guard lock(mu_);
  status_.entries = entries;
}

void MountSync::count_sent(std::uint64_t bytes, bool file) {
  std::lock_guard lock(mu_);
  status_.bytes_sent += bytes;
  if (file) ++status_.files_sent;
}

void MountSync::count_received(std::uint64_t bytes, bool file) {
  std::lock_guard lock(mu_);
  status_.bytes_received += bytes;
  if (file) ++status_.files_received;
}

void MountSync::note_conflict(const std::string& line) {
  std::lock_guard lock(mu_);
  push_bounded(status_.conflicts, line);
}

void MountSync::note_error(const std::string& path, const std::string& message) {
  spdlog::warn("sync {}: {}{}", id_, path.empty() ? "" : path + ": ", message);
  std::lock_guard lock(mu_);
  status_.error = path.empty() ? message : path + ": " + message;
}

void MountSync::note_skipped(const Skipped& skipped) {
  std::lock_guard lock(mu_);
  for (const auto& s : status_.skipped)
    if (s.path == skipped.path) return;
  spdlog::info("sync {}: skipped {} ({})", id_, skipped.path, skipped.reason);
  push_bounded(status_.skipped, skipped);
}

}  // namespace offload::sync
