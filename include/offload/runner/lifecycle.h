// When a session ends on its own: the runner is the authority on idleness, on the client lease
// and on the maximum session duration (issue 4). SessionLifecycle is the pure state machine
// behind that: the runner feeds it activity and lease events with the time they happened, arms
// one timer for next_deadline(), and calls advance() when it fires. No I/O, no threads, no clock
// of its own, so every rule is tested with explicit time points.
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>

namespace offload::runner {

struct LifecycleLimits {
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(5)};  // 0 = never idle-end
  // Warn this long before the idle end; clamped to idle_timeout/2 when larger. 0 = no warning.
  std::chrono::milliseconds idle_warning{std::chrono::seconds(60)};
  // How long the session survives with no client holding the lease. 0 = the lease never expires.
  std::chrono::milliseconds client_ttl{std::chrono::minutes(10)};
  std::chrono::milliseconds max_duration{std::chrono::hours(8)};  // 0 = unlimited

  friend bool operator==(const LifecycleLimits&, const LifecycleLimits&) = default;
};

// First reason wins; the order of the values breaks ties between deadlines at the same instant.
enum class EndReason { none, idle, lease_expired, max_duration };

// "none", "idle", "lease_expired", "max_duration": stable names for logs and wire formats.
std::string_view to_string(EndReason reason);

// What status shows, computed for a given `now`. A deadline that does not apply (the limit is 0,
// or it is held off) is time_point::max().
struct LifecycleView {
  bool active = false;  // something holds the session right now
  std::chrono::steady_clock::time_point idle_deadline;   // when it ends if nothing happens
  bool warning = false;                                  // inside the idle warning window
  bool client_connected = false;
  std::chrono::steady_clock::time_point lease_deadline;  // when the lease expires
  std::chrono::steady_clock::time_point max_deadline;
  EndReason ended = EndReason::none;  // set once the session is over
  // For users: "idle for 5m", "no client for 10m",
  // "reached the maximum session duration of 8h"; empty while the session lives.
  std::string reason_text;
};

// Thread-safe: every member locks. Callers on several threads may pass time points slightly out
// of order (each took now() before the lock); a time earlier than one already seen is treated as
// that later time, so the idle countdown never moves backwards.
//
// The session is decided by its inputs and their times alone, not by how often advance() runs:
// an input whose `now` lies past a pending deadline first ends the session at that deadline and
// is then ignored (late activity does not revive an idle session). advance() reports that end.
class SessionLifecycle {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  // The session starts idle and with no lease holder: the idle countdown and the client TTL
  // both run from `start`, so a session whose client never attaches is reclaimed.
  // Throws std::invalid_argument on a negative limit.
  //
  // `lived`: how long the session had existed before `start` (a session restored after a
  // runner restart). It counts towards the maximum duration only: idleness and the client TTL
  // start afresh at `start`, as after any other interruption of the runner.
  SessionLifecycle(LifecycleLimits limits, time_point start,
                   std::chrono::milliseconds lived = std::chrono::milliseconds(0));

  // Activity, each counted so nesting is allowed: API requests and streams in flight (attach,
  // exec, logs -f, events, BuildKit /session), port-forward connections and builds all count as
  // streams. Closing more than were opened is ignored.
  void stream_opened(time_point now);
  void stream_closed(time_point now);
  // The number of running containers, as the engine reports it.
  void set_running_containers(std::size_t n, time_point now);

  // Lease holders (the daemon's Events stream); several may hold it. Holding the lease is not
  // activity: an attached client with nothing running still lets the session go idle.
  void client_attached(time_point now);
  void client_detached(time_point now);

  // Advances time and returns what changed since the last advance(), so the caller publishes
  // each change once: warning_started at most once per idle period (activity starts a new one),
  // ended exactly once.
  struct Tick {
    bool warning_started = false;
    bool ended = false;
  };
  Tick advance(time_point now);

  LifecycleView view(time_point now) const;

  // When the caller should call advance() next: the earliest of the unannounced warning start,
  // the idle end, the lease end and the maximum end — possibly already past, then call it now.
  // time_point::max() when nothing is pending (including once the end has been announced).
  time_point next_deadline() const;

  const LifecycleLimits& limits() const { return limits_; }

 private:
  struct PendingEnd {
    EndReason reason = EndReason::none;
    time_point at = time_point::max();
  };

  bool active_locked() const { return streams_ > 0 || running_containers_ > 0; }
  time_point idle_deadline_locked() const;
  time_point warning_start_locked() const;
  time_point lease_deadline_locked() const;
  time_point max_deadline_locked() const;
  PendingEnd pending_end_locked(time_point now) const;
  // Applies every end whose deadline is at or before `now`; returns the clamped `now`.
  time_point settle_locked(time_point now);
  void became_active_locked();
  std::string reason_text_locked(EndReason reason) const;

  const LifecycleLimits limits_;
  const std::chrono::milliseconds warning_lead_;
  const time_point start_;
  const std::chrono::milliseconds lived_;

  mutable std::mutex mutex_;
  time_point latest_;             // the latest time seen
  std::size_t streams_ = 0;
  std::size_t running_containers_ = 0;
  time_point idle_since_;         // when the last activity ended (meaningful when idle)
  bool warning_announced_ = false;
  std::size_t clients_ = 0;
  time_point unleased_since_;     // when the last client detached (meaningful with no client)
  EndReason ended_ = EndReason::none;
  time_point ended_at_ = time_point::max();
  bool end_announced_ = false;
};

}  // namespace offload::runner
