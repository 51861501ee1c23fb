#include "offload/runner/lifecycle.h"

#include <limits>

#include <algorithm>
#include <stdexcept>

#include "offload/common/duration.h"

namespace offload::runner {

std::string_view to_string(EndReason reason) {
  switch (reason) {
    case EndReason::none: return "none";
    case EndReason::idle: return "idle";
    case EndReason::lease_expired: return "lease_expired";
    case EndReason::max_duration: return "max_duration";
  }
  return "unknown";
}

namespace {

using time_point = SessionLifecycle::time_point;
constexpr time_point kNever = time_point::max();

// `from + d`, or kNever when that lies beyond what a time_point holds: limits come from clients
// (up to INT64_MAX ms) and ms → ns alone would overflow.
time_point saturating_add(time_point from, std::chrono::milliseconds d) {
  using rep = time_point::duration::rep;
  constexpr rep kMaxMs = std::numeric_limits<rep>::max() / 1'000'000;  // ns per ms
  if (d.count() >= kMaxMs) return kNever;
  auto step = std::chrono::duration_cast<time_point::duration>(d);
  if (from.time_since_epoch().count() > std::numeric_limits<rep>::max() - step.count())
    return kNever;
  return from + step;
}

LifecycleLimits checked(LifecycleLimits limits) {
  using std::chrono::milliseconds;
  if (limits.idle_timeout < milliseconds(0) || limits.idle_warning < milliseconds(0) ||
      limits.client_ttl < milliseconds(0) || limits.max_duration < milliseconds(0))
    throw std::invalid_argument("session lifecycle limits must not be negative");
  return limits;
}

}  // namespace

SessionLifecycle::SessionLifecycle(LifecycleLimits limits, time_point start,
                                   std::chrono::milliseconds lived)
    : limits_(checked(limits)),
      // Half the timeout at most, so a short timeout still leaves time to act on the warning
      // and the warning is not shown the moment the session becomes idle.
      warning_lead_(std::min(limits_.idle_warning, limits_.idle_timeout / 2)),
      start_(start),
      lived_(std::max(lived, std::chrono::milliseconds(0))),
      latest_(start),
      idle_since_(start),
      unleased_since_(start) {}

time_point SessionLifecycle::idle_deadline_locked() const {
  if (limits_.idle_timeout.count() == 0 || active_locked()) return kNever;
  return saturating_add(idle_since_, limits_.idle_timeout);
}

time_point SessionLifecycle::warning_start_locked() const {
  auto idle_end = idle_deadline_locked();
  if (idle_end == kNever || warning_lead_.count() == 0) return kNever;
  return idle_end - warning_lead_;
}

time_point SessionLifecycle::lease_deadline_locked() const {
  if (limits_.client_ttl.count() == 0 || clients_ > 0) return kNever;
  return saturating_add(unleased_since_, limits_.client_ttl);
}

time_point SessionLifecycle::max_deadline_locked() const {
  if (limits_.max_duration.count() == 0) return kNever;
  // A session that lived longer than its maximum before a restart ends at once.
  return saturating_add(start_, std::max(limits_.max_duration - lived_, std::chrono::milliseconds(0)));
}

SessionLifecycle::PendingEnd SessionLifecycle::pending_end_locked(time_point now) const {
  if (ended_ != EndReason::none) return {ended_, ended_at_};
  PendingEnd first;
  // Strictly earlier replaces, so equal deadlines keep the enum order.
  auto consider = [&](EndReason reason, time_point at) {
    if (at <= now && at < first.at) first = {reason, at};
  };
  consider(EndReason::idle, idle_deadline_locked());
  consider(EndReason::lease_expired, lease_deadline_locked());
  consider(EndReason::max_duration, max_deadline_locked());
  return first;
}

time_point SessionLifecycle::settle_locked(time_point now) {
  now = std::max(now, latest_);
  latest_ = now;
  if (ended_ == EndReason::none) {
    auto end = pending_end_locked(now);
    ended_ = end.reason;
    ended_at_ = end.at;
  }
  return now;
}

void SessionLifecycle::became_active_locked() { warning_announced_ = false; }

void SessionLifecycle::stream_opened(time_point now) {
  std::lock_guard lock(mutex_);
  settle_locked(now);
  if (ended_ != EndReason::none) return;
  if (!active_locked()) became_active_locked();
  ++streams_;
}

void SessionLifecycle::stream_closed(time_point now) {
  std::lock_guard lock(mutex_);
  now = settle_locked(now);
  if (ended_ != EndReason::none || streams_ == 0) return;
  --streams_;
  if (!active_locked()) idle_since_ = now;
}

void SessionLifecycle::set_running_containers(std::size_t n, time_point now) {
  std::lock_guard lock(mutex_);
  now = settle_locked(now);
  if (ended_ != EndReason::none) return;
  bool was_active = active_locked();
  running_containers_ = n;
  bool is_active = active_locked();
  if (!was_active && is_active) became_active_locked();
  if (was_active && !is_active) idle_since_ = now;
}

void SessionLifecycle::client_attached(time_point now) {
  std::lock_guard lock(mutex_);
  settle_locked(now);
  if (ended_ != EndReason::none) return;
  ++clients_;
}

void SessionLifecycle::client_detached(time_point now) {
  std::lock_guard lock(mutex_);
  now = settle_locked(now);
  if (ended_ != EndReason::none || clients_ == 0) return;
  if (--clients_ == 0) unleased_since_ = now;
}

SessionLifecycle::Tick SessionLifecycle::advance(time_point now) {
  std::lock_guard lock(mutex_);
  now = settle_locked(now);
  Tick tick;
  if (ended_ != EndReason::none) {
    tick.ended = !end_announced_;
    end_announced_ = true;
    return tick;
  }
  if (!warning_announced_ && now >= warning_start_locked()) {
    tick.warning_started = true;
    warning_announced_ = true;
  }
  return tick;
}

LifecycleView SessionLifecycle::view(time_point now) const {
  std::lock_guard lock(mutex_);
  now = std::max(now, latest_);
  LifecycleView v;
  v.idle_deadline = idle_deadline_locked();
  v.client_connected = clients_ > 0;
  v.lease_deadline = lease_deadline_locked();
  v.max_deadline = max_deadline_locked();
  v.ended = pending_end_locked(now).reason;
  if (v.ended != EndReason::none) {
    v.reason_text = reason_text_locked(v.ended);
    return v;  // over: nothing holds it and there is nothing left to warn about
  }
  v.active = active_locked();
  v.warning = now >= warning_start_locked();
  return v;
}

time_point SessionLifecycle::next_deadline() const {
  std::lock_guard lock(mutex_);
  if (ended_ != EndReason::none) return end_announced_ ? kNever : ended_at_;
  time_point next = std::min({idle_deadline_locked(), lease_deadline_locked(),
                              max_deadline_locked()});
  if (!warning_announced_) next = std::min(next, warning_start_locked());
  return next;
}

std::string SessionLifecycle::reason_text_locked(EndReason reason) const {
  switch (reason) {
    case EndReason::none: return {};
    case EndReason::idle: return "idle for " + format_duration(limits_.idle_timeout);
    case EndReason::lease_expired: return "no client for " + format_duration(limits_.client_ttl);
    case EndReason::max_duration:
      return "reached the maximum session duration of " + format_duration(limits_.max_duration);
  }
  return {};
}

}  // namespace offload::runner
