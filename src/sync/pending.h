// Changes one side has seen but not handled yet, and when to handle them. Both ends of a mount
// (MountSync and the replica) batch their watcher's events the same way.
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "offload/sync/watcher.h"

namespace offload::sync::detail {

// Due after `settle` without new changes (a file being written produces a burst of events), and
// never later than `max_delay` after the first one.
class PendingChanges {
 public:
  using Clock = std::chrono::steady_clock;

  PendingChanges(std::chrono::milliseconds settle, std::chrono::milliseconds max_delay)
      : settle_(settle), max_delay_(max_delay) {}

  void add(WatchBatch batch) {
    if (batch.dirty.empty() && batch.moves.empty() && !batch.rescan) return;
    pending_.dirty.merge(batch.dirty);
    for (auto& m : batch.moves) pending_.moves.push_back(std::move(m));
    pending_.rescan = pending_.rescan || batch.rescan;
    touched();
  }
  // A path to look at again in the next round.
  void mark(std::string path) {
    pending_.dirty.insert(std::move(path));
    touched();
  }

  bool due() const { return first_ && deadline() <= Clock::now(); }
  // A poll() timeout: until due, or `idle_ms` when nothing is pending.
  int wait_ms(int idle_ms) const {
    if (!first_) return idle_ms;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline() - Clock::now());
    return static_cast<int>(std::max<std::int64_t>(left.count() + 1, 0));
  }
  // Everything pending, in the order to handle it: moves first, then the dirty paths.
  WatchBatch take() {
    first_.reset();
    return std::exchange(pending_, WatchBatch{});
  }

 private:
  void touched() {
    last_ = Clock::now();
    if (!first_) first_ = last_;
  }
  Clock::time_point deadline() const { return std::min(last_ + settle_, *first_ + max_delay_); }

  std::chrono::milliseconds settle_, max_delay_;
  WatchBatch pending_;
  std::optional<Clock::time_point> first_;
  Clock::time_point last_{};
};

}  // namespace offload::sync::detail
