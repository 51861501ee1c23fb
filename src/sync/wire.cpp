#include "offload/sync/wire.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <stdexcept>

namespace offload::sync {

namespace {
// A symlink target longer than PATH_MAX cannot be created anyway; refuse it before it costs
// memory on the other side.
constexpr std::size_t kMaxLinkTarget = 4096;
}  // namespace

v1::SyncEntry to_wire(const Entry& entry) {
  v1::SyncEntry out;
  out.set_path(entry.path);
  switch (entry.type) {
    case EntryType::file: out.set_type(v1::SyncEntry::TYPE_FILE); break;
    case EntryType::directory: out.set_type(v1::SyncEntry::TYPE_DIRECTORY); break;
    case EntryType::symlink: out.set_type(v1::SyncEntry::TYPE_SYMLINK); break;
  }
  out.set_mode(entry.mode);
  out.set_size(entry.size);
  out.set_mtime_ns(entry.mtime_ns);
  if (entry.type == EntryType::symlink) out.set_link_target(entry.link_target);
  return out;
}

std::optional<Entry> from_wire(const v1::SyncEntry& in) {
  if (!valid_relative_path(in.path())) return std::nullopt;
  Entry e;
  e.path = in.path();
  switch (in.type()) {
    case v1::SyncEntry::TYPE_FILE: e.type = EntryType::file; break;
    case v1::SyncEntry::TYPE_DIRECTORY: e.type = EntryType::directory; break;
    case v1::SyncEntry::TYPE_SYMLINK: e.type = EntryType::symlink; break;
    default: return std::nullopt;
  }
  e.mode = in.mode() & kSyncedModeBits;
  e.size = e.type == EntryType::file ? in.size() : 0;
  e.mtime_ns = in.mtime_ns();
  if (e.type == EntryType::symlink) {
    if (in.link_target().empty() || in.link_target().size() > kMaxLinkTarget ||
        in.link_target().find('\0') != std::string::npos)
      return std::nullopt;
    e.link_target = in.link_target();
  }
  return e;
}

namespace {

// Makes an eventfd readable (`on`) or not; `state` remembers which, so each change is one call.
void set_level(int fd, bool on, bool& state) {
  if (on == state) return;
  std::uint64_t value = 1;
  [[maybe_unused]] auto n = on ? ::write(fd, &value, sizeof value) : ::read(fd, &value, sizeof value);
  state = on;
}

}  // namespace

Inbox::Inbox(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
  fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  space_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd_ < 0 || space_fd_ < 0) {
    if (fd_ >= 0) ::close(fd_);
    if (space_fd_ >= 0) ::close(space_fd_);
    throw std::runtime_error("eventfd failed");
  }
  set_level(space_fd_, true, space_signalled_);
}

Inbox::~Inbox() {
  if (budget_) {
    std::size_t held = 0;
    for (auto c : charges_) held += c;
    budget_->give_back(held);
  }
  ::close(fd_);
  ::close(space_fd_);
}

// The eventfds are level-like: fd_ set while something is waiting (or closed), space_fd_ while
// there is room (or closed).
void Inbox::update_signal_locked() {
  set_level(fd_, !queue_.empty() || closed_, signalled_);
  set_level(space_fd_, queue_.size() < capacity_ || closed_, space_signalled_);
}

bool Inbox::push(v1::SyncMessage message) {
  std::unique_lock lock(mu_);
  not_full_.wait(lock, [&] { return closed_ || queue_.size() < capacity_; });
  if (closed_) return false;
  enqueue_locked(std::move(message));
  update_signal_locked();
  not_empty_.notify_one();
  return true;
}

bool Inbox::try_push(v1::SyncMessage& message) {
  std::lock_guard lock(mu_);
  if (closed_ || queue_.size() >= capacity_) return false;
  enqueue_locked(std::move(message));
  update_signal_locked();
  not_empty_.notify_one();
  return true;
}

void Inbox::enqueue_locked(v1::SyncMessage&& message) {
  std::size_t charge = budget_ ? message.ByteSizeLong() : 0;
  if (charge) budget_->force_take(charge);
  queue_.push_back(std::move(message));
  charges_.push_back(charge);
}

void Inbox::set_budget(std::shared_ptr<ByteBudget> budget) {
  std::lock_guard lock(mu_);
  budget_ = std::move(budget);
}

void Inbox::set_on_space(std::function<void()> on_space) {
  std::lock_guard lock(mu_);
  on_space_ = std::move(on_space);
}

std::optional<v1::SyncMessage> Inbox::try_pop() {
  std::function<void()> notify;
  std::optional<v1::SyncMessage> m;
  std::size_t charge = 0;
  std::shared_ptr<ByteBudget> budget;
  {
    std::lock_guard lock(mu_);
    if (queue_.empty()) return std::nullopt;
    bool was_full = queue_.size() >= capacity_;
    m = std::move(queue_.front());
    queue_.pop_front();
    charge = charges_.front();
    charges_.pop_front();
    if (charge) budget = budget_;
    update_signal_locked();
    not_full_.notify_one();
    if (was_full) notify = on_space_;
  }
  // Both outside the lock: they wake producers, which may push at once. The bytes first, so a
  // producer woken for space sees them back.
  if (budget) budget->give_back(charge);
  if (notify) notify();
  return m;
}

std::optional<v1::SyncMessage> Inbox::pop_wait(std::chrono::milliseconds timeout) {
  {
    std::unique_lock lock(mu_);
    not_empty_.wait_for(lock, timeout, [&] { return closed_ || !queue_.empty(); });
  }
  return try_pop();
}

bool Inbox::finished() const {
  std::lock_guard lock(mu_);
  return closed_ && queue_.empty();
}

bool Inbox::closed() const {
  std::lock_guard lock(mu_);
  return closed_;
}

void Inbox::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  update_signal_locked();
  not_full_.notify_all();
  not_empty_.notify_all();
}

namespace {

class PairedTransport final : public Transport {
 public:
  explicit PairedTransport(std::size_t capacity) : inbox_(std::make_shared<Inbox>(capacity)) {}
  // Each end shares its peer's inbox: either end may go away first. Sending is putting into the
  // peer's inbox, so a full one is what a stalled HTTP/2 stream is for the real ends.
  Offer try_send(v1::SyncMessage& message) override {
    if (peer_inbox_->try_push(message)) return Offer::taken;
    return broken_->load() || peer_inbox_->closed() ? Offer::broken : Offer::busy;
  }
  int send_fd() override { return peer_inbox_->space_fd(); }
  Inbox& inbox() override { return *inbox_; }
  void cancel() override {
    broken_->store(true);
    inbox_->close();
    peer_inbox_->close();
  }

  std::shared_ptr<Inbox> inbox_;
  std::shared_ptr<Inbox> peer_inbox_;
  std::shared_ptr<std::atomic<bool>> broken_;
};

}  // namespace

std::pair<std::unique_ptr<Transport>, std::unique_ptr<Transport>> make_transport_pair(
    std::size_t capacity) {
  auto a = std::make_unique<PairedTransport>(capacity);
  auto b = std::make_unique<PairedTransport>(capacity);
  a->peer_inbox_ = b->inbox_;
  b->peer_inbox_ = a->inbox_;
  a->broken_ = b->broken_ = std::make_shared<std::atomic<bool>>(false);
  return {std::move(a), std::move(b)};
}

}  // namespace offload::sync
