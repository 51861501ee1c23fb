#include "offload/runner/lifecycle.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

#include "offload/common/clock.h"

using namespace offload;
using namespace offload::runner;
using namespace std::chrono_literals;

namespace {

using time_point = SessionLifecycle::time_point;
constexpr time_point kNever = time_point::max();
// An arbitrary origin far from the clock's epoch, so nothing passes by accident at zero.
const time_point T0 = time_point{} + 1000h;

time_point at(std::chrono::milliseconds d) { return T0 + d; }

// Default limits (5m idle, 60s warning, 10m TTL, 8h max) with the lease held from the start, so
// only the rule under test can end the session.
struct Leased {
  SessionLifecycle life{LifecycleLimits{}, T0};
  Leased() { life.client_attached(T0); }
};

}  // namespace

TEST(SessionLifecycle, IdleCountsDownFromStartWithoutActivity) {
  Leased s;
  auto v = s.life.view(T0);
  EXPECT_FALSE(v.active);
  EXPECT_EQ(v.idle_deadline, at(5min));
  EXPECT_FALSE(v.warning);
  EXPECT_EQ(v.ended, EndReason::none);
  EXPECT_EQ(s.life.next_deadline(), at(4min));  // the warning comes first

  auto tick = s.life.advance(at(4min) - 1ms);
  EXPECT_FALSE(tick.warning_started);
  EXPECT_FALSE(tick.ended);
  tick = s.life.advance(at(4min));
  EXPECT_TRUE(tick.warning_started);
  EXPECT_FALSE(tick.ended);
  EXPECT_EQ(s.life.next_deadline(), at(5min));

  tick = s.life.advance(at(5min) - 1ms);
  EXPECT_FALSE(tick.warning_started);
  EXPECT_FALSE(tick.ended);
  tick = s.life.advance(at(5min));
  EXPECT_TRUE(tick.ended);
  EXPECT_FALSE(tick.warning_started);
  v = s.life.view(at(5min));
  EXPECT_EQ(v.ended, EndReason::idle);
  EXPECT_EQ(v.reason_text, "idle for 5m");
  EXPECT_EQ(s.life.next_deadline(), kNever);
}

// Every kind of activity, as the runner maps it onto the lifecycle.
struct ActivityKind {
  const char* name;
  std::function<void(SessionLifecycle&, time_point)> begin;
  std::function<void(SessionLifecycle&, time_point)> end;
};

class EachActivity : public ::testing::TestWithParam<ActivityKind> {};

TEST_P(EachActivity, HoldsTheSessionThenRestartsTheCountdownWhenItEnds) {
  Leased s;
  GetParam().begin(s.life, at(1min));
  auto v = s.life.view(at(1min));
  EXPECT_TRUE(v.active);
  EXPECT_EQ(v.idle_deadline, kNever);
  // Only the maximum duration is left to wait for.
  EXPECT_EQ(s.life.next_deadline(), at(8h));

  auto tick = s.life.advance(at(3h));
  EXPECT_FALSE(tick.warning_started);
  EXPECT_FALSE(tick.ended);
  EXPECT_TRUE(s.life.view(at(3h)).active);

  GetParam().end(s.life, at(3h));
  v = s.life.view(at(3h));
  EXPECT_FALSE(v.active);
  EXPECT_EQ(v.idle_deadline, at(3h + 5min));
  EXPECT_EQ(s.life.next_deadline(), at(3h + 4min));
  EXPECT_FALSE(s.life.advance(at(3h + 5min) - 1ms).ended);
  EXPECT_TRUE(s.life.advance(at(3h + 5min)).ended);
}

INSTANTIATE_TEST_SUITE_P(
    SessionLifecycle, EachActivity,
    ::testing::Values(
        ActivityKind{"ApiStream", [](auto& l, auto t) { l.stream_opened(t); },
                     [](auto& l, auto t) { l.stream_closed(t); }},
        ActivityKind{"PortForwardConnection", [](auto& l, auto t) { l.stream_opened(t); },
                     [](auto& l, auto t) { l.stream_closed(t); }},
        ActivityKind{"Build", [](auto& l, auto t) { l.stream_opened(t); },
                     [](auto& l, auto t) { l.stream_closed(t); }},
        ActivityKind{"RunningContainers", [](auto& l, auto t) { l.set_running_containers(3, t); },
                     [](auto& l, auto t) { l.set_running_containers(0, t); }}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(SessionLifecycle, NestedStreamsHoldUntilTheLastCloses) {
  Leased s;
  s.life.stream_opened(at(1min));
  s.life.stream_opened(at(2min));  // e.g. logs -f while a port-forward connection is open
  s.life.stream_closed(at(3min));
  EXPECT_TRUE(s.life.view(at(3min)).active);
  EXPECT_FALSE(s.life.advance(at(20min)).ended);
  s.life.stream_closed(at(30min));
  auto v = s.life.view(at(30min));
  EXPECT_FALSE(v.active);
  EXPECT_EQ(v.idle_deadline, at(35min));
}

TEST(SessionLifecycle, StreamsAndContainersHoldTogether) {
  Leased s;
  s.life.set_running_containers(2, at(1min));
  s.life.stream_opened(at(2min));
  s.life.set_running_containers(1, at(3min));
  s.life.set_running_containers(0, at(4min));
  EXPECT_TRUE(s.life.view(at(4min)).active);  // the stream still holds it
  s.life.stream_closed(at(6min));
  EXPECT_EQ(s.life.view(at(6min)).idle_deadline, at(11min));

  s.life.stream_opened(at(7min));
  s.life.set_running_containers(1, at(8min));
  s.life.stream_closed(at(9min));
  EXPECT_TRUE(s.life.view(at(9min)).active);  // the container still holds it
  s.life.set_running_containers(0, at(12min));
  EXPECT_EQ(s.life.view(at(12min)).idle_deadline, at(17min));
}

TEST(SessionLifecycle, CountdownRestartsWhenActivityEndsNotAtTheLastAdvance) {
  Leased s;
  s.life.stream_opened(at(1min));
  s.life.stream_closed(at(2min));
  // An advance long after does not move the deadline: it counts from the close.
  EXPECT_FALSE(s.life.advance(at(6min)).ended);
  EXPECT_EQ(s.life.view(at(6min)).idle_deadline, at(7min));
  EXPECT_TRUE(s.life.advance(at(7min)).ended);
}

TEST(SessionLifecycle, ClosingMoreStreamsThanOpenedIsIgnored) {
  Leased s;
  s.life.stream_closed(at(2min));  // would otherwise restart the countdown or wrap the count
  auto v = s.life.view(at(2min));
  EXPECT_FALSE(v.active);
  EXPECT_EQ(v.idle_deadline, at(5min));
  s.life.stream_opened(at(3min));
  EXPECT_TRUE(s.life.view(at(3min)).active);
  s.life.stream_closed(at(4min));
  s.life.stream_closed(at(4min));
  EXPECT_FALSE(s.life.view(at(4min)).active);
  s.life.stream_opened(at(5min));
  EXPECT_TRUE(s.life.view(at(5min)).active);
}

TEST(SessionLifecycle, WarningStartsOnceAndActivityClearsIt) {
  Leased s;
  EXPECT_TRUE(s.life.advance(at(4min)).warning_started);
  EXPECT_TRUE(s.life.view(at(4min)).warning);
  EXPECT_FALSE(s.life.advance(at(4min + 10s)).warning_started);
  EXPECT_FALSE(s.life.advance(at(4min + 20s)).warning_started);

  s.life.stream_opened(at(4min + 30s));
  auto v = s.life.view(at(4min + 30s));
  EXPECT_FALSE(v.warning);
  EXPECT_TRUE(v.active);
  s.life.stream_closed(at(4min + 40s));
  v = s.life.view(at(4min + 40s));
  EXPECT_FALSE(v.warning);
  EXPECT_EQ(v.idle_deadline, at(9min + 40s));
  // The countdown before the activity is gone: no end at the old deadline.
  EXPECT_FALSE(s.life.advance(at(5min)).ended);

  // A new idle period warns again, once.
  EXPECT_EQ(s.life.next_deadline(), at(8min + 40s));
  EXPECT_TRUE(s.life.advance(at(8min + 40s)).warning_started);
  EXPECT_FALSE(s.life.advance(at(9min)).warning_started);
  EXPECT_TRUE(s.life.advance(at(9min + 40s)).ended);
}

TEST(SessionLifecycle, ContainersStartingDuringTheWarningClearIt) {
  Leased s;
  EXPECT_TRUE(s.life.advance(at(4min + 30s)).warning_started);
  s.life.set_running_containers(1, at(4min + 45s));
  EXPECT_FALSE(s.life.view(at(4min + 45s)).warning);
  EXPECT_FALSE(s.life.advance(at(6min)).ended);
}

TEST(SessionLifecycle, AdvanceLateIntoTheWindowStillWarnsOnce) {
  Leased s;
  auto tick = s.life.advance(at(4min + 50s));  // the timer fired late
  EXPECT_TRUE(tick.warning_started);
  EXPECT_FALSE(tick.ended);
}

TEST(SessionLifecycle, AdvancePastTheEndReportsOnlyTheEnd) {
  Leased s;
  auto tick = s.life.advance(at(7min));  // the warning was never seen: nothing to warn about now
  EXPECT_TRUE(tick.ended);
  EXPECT_FALSE(tick.warning_started);
  tick = s.life.advance(at(8min));
  EXPECT_FALSE(tick.ended);  // announced once
}

TEST(SessionLifecycle, WarningIsClampedToHalfTheTimeout) {
  LifecycleLimits limits;
  limits.idle_timeout = 60s;
  limits.idle_warning = 5min;
  SessionLifecycle life(limits, T0);
  life.client_attached(T0);
  EXPECT_EQ(life.next_deadline(), at(30s));
  EXPECT_FALSE(life.view(at(30s) - 1ms).warning);
  EXPECT_TRUE(life.view(at(30s)).warning);
  EXPECT_TRUE(life.advance(at(30s)).warning_started);
}

TEST(SessionLifecycle, ZeroWarningNeverWarns) {
  LifecycleLimits limits;
  limits.idle_warning = 0ms;
  SessionLifecycle life(limits, T0);
  life.client_attached(T0);
  EXPECT_EQ(life.next_deadline(), at(5min));
  EXPECT_FALSE(life.advance(at(5min) - 1ms).warning_started);
  EXPECT_FALSE(life.view(at(5min) - 1ms).warning);
  EXPECT_TRUE(life.advance(at(5min)).ended);
}

TEST(SessionLifecycle, ZeroIdleTimeoutNeverIdleEnds) {
  LifecycleLimits limits;
  limits.idle_timeout = 0ms;
  limits.max_duration = 0ms;
  SessionLifecycle life(limits, T0);
  life.client_attached(T0);
  EXPECT_EQ(life.next_deadline(), kNever);
  auto tick = life.advance(at(10000h));
  EXPECT_FALSE(tick.ended);
  EXPECT_FALSE(tick.warning_started);
  auto v = life.view(at(10000h));
  EXPECT_EQ(v.idle_deadline, kNever);
  EXPECT_EQ(v.max_deadline, kNever);
  EXPECT_FALSE(v.warning);
  EXPECT_FALSE(v.active);
  EXPECT_EQ(v.ended, EndReason::none);
}

TEST(SessionLifecycle, LeaseExpiresAfterTheClientTtlEvenWhileActive) {
  Leased s;
  s.life.set_running_containers(1, at(1min));
  s.life.client_detached(at(2min));  // laptop closed: the Events stream is gone
  auto v = s.life.view(at(2min));
  EXPECT_FALSE(v.client_connected);
  EXPECT_EQ(v.lease_deadline, at(12min));
  EXPECT_EQ(s.life.next_deadline(), at(12min));
  EXPECT_FALSE(s.life.advance(at(12min) - 1ms).ended);
  EXPECT_TRUE(s.life.advance(at(12min)).ended);
  v = s.life.view(at(12min));
  EXPECT_EQ(v.ended, EndReason::lease_expired);
  EXPECT_EQ(v.reason_text, "no client for 10m");
  EXPECT_FALSE(v.active);
}

TEST(SessionLifecycle, LeaseIsUnheldFromStartUntilAClientAttaches) {
  SessionLifecycle life(LifecycleLimits{}, T0);
  life.set_running_containers(1, T0);
  auto v = life.view(T0);
  EXPECT_FALSE(v.client_connected);
  EXPECT_EQ(v.lease_deadline, at(10min));
  EXPECT_TRUE(life.advance(at(10min)).ended);
  EXPECT_EQ(life.view(at(10min)).ended, EndReason::lease_expired);
}

TEST(SessionLifecycle, ReattachingBeforeTheTtlKeepsTheSession) {
  Leased s;
  s.life.set_running_containers(1, T0);
  s.life.client_detached(at(1min));
  s.life.client_attached(at(9min));  // the network came back
  auto v = s.life.view(at(9min));
  EXPECT_TRUE(v.client_connected);
  EXPECT_EQ(v.lease_deadline, kNever);
  EXPECT_EQ(s.life.next_deadline(), at(8h));
  EXPECT_FALSE(s.life.advance(at(1h)).ended);
  // A later loss starts a fresh TTL.
  s.life.client_detached(at(2h));
  EXPECT_EQ(s.life.view(at(2h)).lease_deadline, at(2h + 10min));
}

TEST(SessionLifecycle, TheLastOfSeveralClientsReleasesTheLease) {
  SessionLifecycle life(LifecycleLimits{}, T0);
  life.set_running_containers(1, T0);
  life.client_attached(T0);
  life.client_attached(at(1min));  // e.g. the daemon restarted and resubscribed before the old
                                   // stream was noticed gone
  life.client_detached(at(2min));
  auto v = life.view(at(2min));
  EXPECT_TRUE(v.client_connected);
  EXPECT_EQ(v.lease_deadline, kNever);
  EXPECT_FALSE(life.advance(at(1h)).ended);
  life.client_detached(at(1h));
  EXPECT_EQ(life.view(at(1h)).lease_deadline, at(1h + 10min));
  life.client_detached(at(1h + 1min));  // one too many: ignored, the TTL keeps its start
  EXPECT_EQ(life.view(at(1h + 1min)).lease_deadline, at(1h + 10min));
  EXPECT_TRUE(life.advance(at(1h + 10min)).ended);
}

TEST(SessionLifecycle, ZeroClientTtlNeverExpires) {
  LifecycleLimits limits;
  limits.client_ttl = 0ms;
  SessionLifecycle life(limits, T0);
  life.set_running_containers(1, T0);
  EXPECT_EQ(life.view(T0).lease_deadline, kNever);
  EXPECT_FALSE(life.advance(at(7h)).ended);
}

TEST(SessionLifecycle, MaxDurationEndsEvenWhileActive) {
  Leased s;
  s.life.stream_opened(at(1min));
  s.life.set_running_containers(4, at(2min));
  auto v = s.life.view(at(2min));
  EXPECT_EQ(v.max_deadline, at(8h));
  EXPECT_EQ(s.life.next_deadline(), at(8h));
  EXPECT_FALSE(s.life.advance(at(8h) - 1ms).ended);
  EXPECT_TRUE(s.life.advance(at(8h)).ended);
  v = s.life.view(at(8h));
  EXPECT_EQ(v.ended, EndReason::max_duration);
  EXPECT_EQ(v.reason_text, "reached the maximum session duration of 8h");
  EXPECT_FALSE(v.active);
}

TEST(SessionLifecycle, FirstReasonWinsAndLaterInputsAreIgnored) {
  Leased s;
  EXPECT_TRUE(s.life.advance(at(5min)).ended);
  s.life.stream_opened(at(6min));
  s.life.set_running_containers(2, at(6min));
  s.life.client_detached(at(6min));
  s.life.client_attached(at(6min));
  auto tick = s.life.advance(at(9h));  // past the lease and the maximum too
  EXPECT_FALSE(tick.ended);
  EXPECT_FALSE(tick.warning_started);
  auto v = s.life.view(at(9h));
  EXPECT_EQ(v.ended, EndReason::idle);
  EXPECT_EQ(v.reason_text, "idle for 5m");
  EXPECT_FALSE(v.active);
  EXPECT_TRUE(v.client_connected);  // the detach/attach after the end did not count
  EXPECT_EQ(s.life.next_deadline(), kNever);
}

TEST(SessionLifecycle, LateAdvanceEndsWithTheEarliestDeadline) {
  SessionLifecycle life(LifecycleLimits{}, T0);
  life.client_attached(T0);
  life.stream_opened(T0);
  life.client_detached(at(1min));  // lease ends at 11m
  life.stream_closed(at(7min));    // idle ends at 12m
  EXPECT_EQ(life.next_deadline(), at(11min));
  EXPECT_TRUE(life.advance(at(20min)).ended);
  EXPECT_EQ(life.view(at(20min)).ended, EndReason::lease_expired);
}

TEST(SessionLifecycle, SimultaneousDeadlinesEndInEnumOrder) {
  LifecycleLimits limits;
  limits.idle_timeout = 10min;
  limits.client_ttl = 10min;
  limits.max_duration = 10min;
  SessionLifecycle life(limits, T0);
  EXPECT_TRUE(life.advance(at(10min)).ended);
  EXPECT_EQ(life.view(at(10min)).ended, EndReason::idle);
}

TEST(SessionLifecycle, LateActivityDoesNotReviveAnEndedSession) {
  Leased s;
  // The timer has not fired yet, but the idle end is already past when the stream arrives.
  s.life.stream_opened(at(6min));
  auto v = s.life.view(at(6min));
  EXPECT_EQ(v.ended, EndReason::idle);
  EXPECT_FALSE(v.active);
  EXPECT_EQ(s.life.next_deadline(), at(5min));  // call advance() now to publish the end
  EXPECT_TRUE(s.life.advance(at(6min)).ended);
  EXPECT_EQ(s.life.next_deadline(), kNever);
}

TEST(SessionLifecycle, ViewShowsAnEndBeforeAdvanceRuns) {
  Leased s;
  auto v = s.life.view(at(5min));
  EXPECT_EQ(v.ended, EndReason::idle);
  EXPECT_EQ(v.reason_text, "idle for 5m");
  EXPECT_FALSE(v.warning);
  EXPECT_EQ(s.life.view(at(5min) - 1ms).ended, EndReason::none);
  EXPECT_TRUE(s.life.view(at(5min) - 1ms).warning);
}

TEST(SessionLifecycle, TimeFromAnotherThreadThatLagsBehindIsClamped) {
  Leased s;
  s.life.stream_opened(at(2min));
  s.life.advance(at(3min));
  s.life.stream_closed(at(1min));  // took now() before the advance, locked after it
  EXPECT_EQ(s.life.view(at(3min)).idle_deadline, at(8min));
}

TEST(SessionLifecycle, NextDeadlineInEachState) {
  Leased s;
  // Idle: the warning start, then the idle end.
  EXPECT_EQ(s.life.next_deadline(), at(4min));
  s.life.advance(at(4min));
  EXPECT_EQ(s.life.next_deadline(), at(5min));
  // Active with the lease held: the maximum duration.
  s.life.stream_opened(at(4min + 10s));
  EXPECT_EQ(s.life.next_deadline(), at(8h));
  // Active without a client: the lease end.
  s.life.client_detached(at(1h));
  EXPECT_EQ(s.life.next_deadline(), at(1h + 10min));
  // Idle without a client: whichever is first.
  s.life.stream_closed(at(1h + 8min));  // warning at 1h12m, lease at 1h10m
  EXPECT_EQ(s.life.next_deadline(), at(1h + 10min));
  s.life.client_attached(at(1h + 9min));
  EXPECT_EQ(s.life.next_deadline(), at(1h + 12min));
  // Ended and announced: nothing.
  EXPECT_TRUE(s.life.advance(at(1h + 13min)).ended);
  EXPECT_EQ(s.life.next_deadline(), kNever);
}

TEST(SessionLifecycle, NextDeadlineNearTheMaximumDuration) {
  Leased s;
  s.life.stream_opened(at(1min));
  s.life.stream_closed(at(7h + 58min));  // idle warning at 8h02m, after the maximum
  EXPECT_EQ(s.life.next_deadline(), at(8h));
}

TEST(SessionLifecycle, ViewReportsEveryField) {
  LifecycleLimits limits;
  limits.idle_timeout = 90s;
  limits.idle_warning = 30s;
  limits.client_ttl = 90min;
  limits.max_duration = 2h;
  SessionLifecycle life(limits, T0);
  life.client_attached(at(1s));

  auto v = life.view(at(1min));
  EXPECT_FALSE(v.active);
  EXPECT_EQ(v.idle_deadline, at(90s));
  EXPECT_TRUE(v.warning);  // 1m is inside [60s, 90s)
  EXPECT_TRUE(v.client_connected);
  EXPECT_EQ(v.lease_deadline, kNever);
  EXPECT_EQ(v.max_deadline, at(2h));
  EXPECT_EQ(v.ended, EndReason::none);
  EXPECT_EQ(v.reason_text, "");

  life.stream_opened(at(80s));
  life.client_detached(at(80s));
  v = life.view(at(80s));
  EXPECT_TRUE(v.active);
  EXPECT_EQ(v.idle_deadline, kNever);
  EXPECT_FALSE(v.warning);
  EXPECT_FALSE(v.client_connected);
  EXPECT_EQ(v.lease_deadline, at(80s + 90min));
  EXPECT_EQ(v.max_deadline, at(2h));
}

TEST(SessionLifecycle, ReasonTextsUseTheConfiguredDurations) {
  LifecycleLimits limits;
  limits.idle_timeout = 90s;
  limits.client_ttl = 90min;
  limits.max_duration = 1h + 30min;
  {
    SessionLifecycle life(limits, T0);
    life.client_attached(T0);
    EXPECT_EQ(life.view(at(90s)).reason_text, "idle for 1m30s");  // format_duration's form
  }
  limits.idle_timeout = 45s;
  {
    SessionLifecycle life(limits, T0);
    life.client_attached(T0);
    EXPECT_EQ(life.view(at(45s)).reason_text, "idle for 45s");
  }
  {
    SessionLifecycle life(limits, T0);
    life.stream_opened(T0);
    // Lease and maximum both end at 1h30m: the enum order puts the lease first.
    EXPECT_EQ(life.view(at(90min)).reason_text, "no client for 1h30m");
    life.client_attached(T0);
    EXPECT_EQ(life.view(at(90min)).reason_text,
              "reached the maximum session duration of 1h30m");
  }
}

TEST(SessionLifecycle, RejectsNegativeLimits) {
  LifecycleLimits limits;
  limits.client_ttl = -1ms;
  EXPECT_THROW(SessionLifecycle(limits, T0), std::invalid_argument);
}

TEST(SessionLifecycle, EndReasonNames) {
  EXPECT_EQ(to_string(EndReason::none), "none");
  EXPECT_EQ(to_string(EndReason::idle), "idle");
  EXPECT_EQ(to_string(EndReason::lease_expired), "lease_expired");
  EXPECT_EQ(to_string(EndReason::max_duration), "max_duration");
}

TEST(SessionLifecycle, CountsStayExactUnderConcurrentStreams) {
  Leased s;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        s.life.stream_opened(at(1min));
        s.life.stream_closed(at(1min));
      }
    });
  s.life.stream_opened(at(1min));  // one stays open throughout
  for (auto& th : threads) th.join();
  EXPECT_TRUE(s.life.view(at(1min)).active);
  s.life.stream_closed(at(2min));
  EXPECT_FALSE(s.life.view(at(2min)).active);
  EXPECT_EQ(s.life.view(at(2min)).idle_deadline, at(7min));
}

TEST(CommonClock, ManualClockMovesOnlyWhenTold) {
  offload::ManualClock clock(T0);
  EXPECT_EQ(clock.now(), T0);
  EXPECT_EQ(clock.now(), T0);
  clock.advance(90s);
  EXPECT_EQ(clock.now(), at(90s));
  clock.set(at(1h));
  EXPECT_EQ(clock.now(), at(1h));
  const offload::Clock& as_clock = clock;
  EXPECT_EQ(as_clock.now(), at(1h));
  EXPECT_EQ(offload::ManualClock().now(), time_point{} + 1h);
}

TEST(CommonClock, ManualClockDrivesTheLifecycleLikeTheRunnerWill) {
  offload::ManualClock clock(T0);
  SessionLifecycle life(LifecycleLimits{}, clock.now());
  life.client_attached(clock.now());
  int warnings = 0;
  int fired = 0;
  // The runner's loop: one timer at next_deadline(), advance() when it fires.
  while (life.next_deadline() != kNever && fired < 10) {
    clock.set(life.next_deadline());
    auto tick = life.advance(clock.now());
    warnings += tick.warning_started;
    ++fired;
    if (tick.ended) break;
  }
  EXPECT_EQ(fired, 2);
  EXPECT_EQ(warnings, 1);
  EXPECT_EQ(clock.now(), at(5min));
  EXPECT_EQ(life.view(clock.now()).ended, EndReason::idle);
}

TEST(CommonClock, SystemClockIsMonotonic) {
  const offload::Clock& clock = offload::SystemClock::instance();
  auto a = clock.now();
  auto b = clock.now();
  EXPECT_LE(a, b);
}

// Limits come from clients: INT64_MAX milliseconds must mean "as long as can be", not wrap
// around into a deadline in the past (ms → ns alone overflows).
TEST(SessionLifecycle, HugeLimitsSaturateInsteadOfOverflowing) {
  const std::chrono::milliseconds huge{std::numeric_limits<std::int64_t>::max()};
  for (auto limits : {LifecycleLimits{huge, 60s, 10min, 8h}, LifecycleLimits{5min, 60s, huge, 8h},
                      LifecycleLimits{5min, 60s, 10min, huge}, LifecycleLimits{huge, huge, huge, huge},
                      LifecycleLimits{std::chrono::milliseconds(std::numeric_limits<std::int64_t>::max() / 1'000'000), 60s, 10min, 8h}}) {
    SessionLifecycle life(limits, T0);
    if (limits.client_ttl != huge) life.client_attached(T0);
    auto tick = life.advance(T0 + 1s);
    EXPECT_FALSE(tick.ended) << "ended at once: a deadline wrapped around";
    auto v = life.view(T0 + 1s);
    EXPECT_EQ(v.ended, EndReason::none);
    EXPECT_GT(life.next_deadline(), T0 + 1s);
  }
  // A huge timeout next to ordinary ones: the ordinary one still ends the session.
  SessionLifecycle life(LifecycleLimits{huge, 60s, 10min, huge}, T0);
  EXPECT_EQ(life.view(T0 + 10min).ended, EndReason::lease_expired);
}
