// A count of bytes held in memory against a limit, shared by several producers (the runner's Sync
// calls of one session), with a way for a producer that stopped at the limit to be woken when
// bytes come back.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace offload::sync {

class ByteBudget {
 public:
  // `limit` 0 = unlimited (the budget still counts).
  explicit ByteBudget(std::size_t limit = 0) : limit_(limit) {}
  ByteBudget(const ByteBudget&) = delete;
  ByteBudget& operator=(const ByteBudget&) = delete;

  std::size_t limit() const;
  void set_limit(std::size_t limit);
  std::size_t used() const;
  // The most ever used at once.
  std::size_t peak() const;
  // True while a producer may bring in more: used < limit. A budget with nothing used always
  // has room, so a single item larger than the limit still gets in (then fills it alone).
  bool has_room() const;

  // Takes `n` if that stays within the limit, or if nothing is used (see has_room).
  bool try_take(std::size_t n);
  // Takes `n` whatever the limit (the bytes are already in memory); used may exceed the limit.
  void force_take(std::size_t n);
  // Returns `n` taken before. Waiters are called (outside the lock, on this thread) if there is
  // room afterwards.
  void give_back(std::size_t n);

  // Identifies one waiting party (e.g. its address); a party waits for one thing at a time.
  using Key = const void*;
  // True if there is room now (`on_room` is not kept). Otherwise `on_room` is kept (replacing an
  // earlier one of `key`) and called once, on the thread that gives bytes back, when there is
  // room again; false. Checking and registering are one step, so no wake-up is lost.
  bool wait_for_room(Key key, std::function<void()> on_room);
  // Forgets `key`'s waiting. When this returns, no on_room of `key` is running on another thread
  // or will run, so its owner may go away. Must not be called with a lock on_room takes.
  void stop_waiting(Key key);

 private:
  void call_waiters(std::unique_lock<std::mutex>& lock);

  mutable std::mutex mu_;
  std::condition_variable done_;
  std::size_t limit_;
  std::size_t used_ = 0;
  std::size_t peak_ = 0;
  std::map<Key, std::function<void()>> waiters_;
  // The waiters being called right now, and on which thread.
  std::vector<std::pair<Key, std::thread::id>> running_;
};

}  // namespace offload::sync
