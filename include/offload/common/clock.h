// Time as a dependency: code that keeps deadlines (the runner's session lifecycle, the daemon's
// mirror of it) asks a Clock, so tests drive time explicitly instead of sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace offload {

class Clock {
 public:
  using duration = std::chrono::steady_clock::duration;
  using time_point = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;
  // Monotonic; never goes back for SystemClock.
  virtual time_point now() const = 0;
};

// std::chrono::steady_clock. Stateless: one shared instance is enough.
class SystemClock final : public Clock {
 public:
  time_point now() const override;
  static SystemClock& instance();
};

// A clock that moves only when told to. Thread-safe: a test thread may move it while the code
// under test reads it. set() may move it backwards, to test callers that must not trust that.
class ManualClock final : public Clock {
 public:
  // Starts an hour past the epoch so `start - something` stays a valid time point.
  explicit ManualClock(time_point start = time_point{} + std::chrono::hours(1));

  time_point now() const override;
  void advance(duration d);
  void set(time_point t);

 private:
  std::atomic<duration::rep> ticks_;  // since the steady_clock epoch
};

// Wall-clock time in milliseconds since the Unix epoch: what the protocol and state files carry
// for people to read. Deadlines are kept on a Clock, never on this.
std::int64_t unix_now_ms();

}  // namespace offload
