#include "offload/sync/byte_budget.h"

#include <algorithm>

namespace offload::sync {

std::size_t ByteBudget::limit() const {
  std::lock_guard lock(mu_);
  return limit_;
}

void ByteBudget::set_limit(std::size_t limit) {
  std::unique_lock lock(mu_);
  limit_ = limit;
  if (!waiters_.empty() && (limit_ == 0 || used_ < limit_)) call_waiters(lock);
}

std::size_t ByteBudget::used() const {
  std::lock_guard lock(mu_);
  return used_;
}

std::size_t ByteBudget::peak() const {
  std::lock_guard lock(mu_);
  return peak_;
}

bool ByteBudget::has_room() const {
  std::lock_guard lock(mu_);
  return limit_ == 0 || used_ < limit_;
}

bool ByteBudget::try_take(std::size_t n) {
  std::lock_guard lock(mu_);
  if (limit_ != 0 && used_ != 0 && (n > limit_ || used_ > limit_ - n)) return false;
  used_ += n;
  peak_ = std::max(peak_, used_);
  return true;
}

void ByteBudget::force_take(std::size_t n) {
  std::lock_guard lock(mu_);
  used_ += n;
  peak_ = std::max(peak_, used_);
}

void ByteBudget::give_back(std::size_t n) {
  std::unique_lock lock(mu_);
  used_ -= std::min(n, used_);
  if (!waiters_.empty() && (limit_ == 0 || used_ < limit_)) call_waiters(lock);
}

bool ByteBudget::wait_for_room(Key key, std::function<void()> on_room) {
  std::lock_guard lock(mu_);
  if (limit_ == 0 || used_ < limit_) {
    waiters_.erase(key);
    return true;
  }
  waiters_[key] = std::move(on_room);
  return false;
}

void ByteBudget::stop_waiting(Key key) {
  std::unique_lock lock(mu_);
  waiters_.erase(key);
  const auto self = std::this_thread::get_id();
  // A call from inside key's own on_room must not wait for itself.
  done_.wait(lock, [&] {
    return std::none_of(running_.begin(), running_.end(),
                        [&](const auto& r) { return r.first == key && r.second != self; });
  });
}

// Every waiter is called: each brings in at most one more item before it checks again, which
// is what bounds the overshoot (one item per waiting party).
void ByteBudget::call_waiters(std::unique_lock<std::mutex>& lock) {
  auto ready = std::move(waiters_);
  waiters_.clear();
  const auto self = std::this_thread::get_id();
  for (const auto& [key, fn] : ready) running_.emplace_back(key, self);
  lock.unlock();
  for (auto& [key, fn] : ready) fn();
  lock.lock();
  for (const auto& [key, fn] : ready) {
    auto it = std::find(running_.begin(), running_.end(), std::pair<Key, std::thread::id>{key, self});
    if (it != running_.end()) running_.erase(it);
  }
  done_.notify_all();
}

}  // namespace offload::sync
