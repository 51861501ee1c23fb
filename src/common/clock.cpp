#include "offload/common/clock.h"

namespace offload {

Clock::time_point SystemClock::now() const { return std::chrono::steady_clock::now(); }

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

ManualClock::ManualClock(time_point start) : ticks_(start.time_since_epoch().count()) {}

Clock::time_point ManualClock::now() const { return time_point(duration(ticks_.load())); }

void ManualClock::advance(duration d) { ticks_.fetch_add(d.count()); }

void ManualClock::set(time_point t) { ticks_.store(t.time_since_epoch().count()); }

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace offload
