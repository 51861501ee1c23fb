// Which ports the containers of a session engine publish right now, kept up to date from the
// engine's event stream: the runner's half of published-port forwarding (issue 3). The runner
// sends every snapshot whole to the daemon (SessionEvent.ports_snapshot); the daemon diffs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "offload/v1/runner.pb.h"

namespace offload::runner {

// Sorted by (container id, protocol, container port, host ip, host port), without duplicates,
// so two snapshots of the same engine state compare equal.
using PortSnapshot = std::vector<v1::PublishedPort>;

bool same_ports(const PortSnapshot& a, const PortSnapshot& b);

// The published ports in the body of GET /containers/json (the running containers): every Ports
// entry that has a PublicPort; exposed-only ports are skipped. Throws std::runtime_error on
// anything that is not that shape; never crashes (the engine's answer is untrusted input).
PortSnapshot published_ports_from_containers_json(std::string_view engine_json);

// Splits the body of GET /events (already de-chunked) into its JSON objects. The engine writes
// one object per message, but the transport may cut anywhere, so this tracks strings and
// bracket nesting itself instead of trusting newlines. Beyond brackets it does not validate the
// JSON inside an object.
class EngineEventSplitter {
 public:
  explicit EngineEventSplitter(std::size_t max_event_bytes = 1 << 20);

  // Appends every object completed by `bytes` to `events`. Fails (and stays failed until
  // reset()) on bytes outside an object other than whitespace or a mismatched closing bracket
  // (errc::bad_message), or on an object longer than max_event_bytes (errc::message_size).
  std::error_code feed(std::string_view bytes, std::vector<std::string>& events);
  // True when no object is half read.
  bool between_events() const { return partial_.empty(); }
  void reset();

 private:
  std::size_t max_event_bytes_;
  std::string partial_;
  std::string open_;  // the closer each open bracket expects, innermost last
  bool in_string_ = false;
  bool escaped_ = false;
  std::error_code failed_;
};

// True if the event (one object of the /events stream) can change the set of published ports:
// a container event whose Action is start, restart, die, stop, kill, destroy, pause, unpause or
// rename, or a network event whose Action is connect or disconnect (a container's networks
// decide its address, PublishedPort.container_address). An object that is not valid JSON
// counts as true: re-listing is the safe answer.
bool event_may_change_ports(std::string_view event_json);

// Time as the watcher sees it: every deadline (reconcile, settle, reconnect backoff) is waited
// for through this, so tests drive time by hand.
class WaitClock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~WaitClock() = default;
  virtual time_point now() const = 0;
  // Like std::condition_variable::wait_until(lock, deadline) on this clock: returns at the
  // deadline, on a notify of `cv`, or spuriously; the caller re-checks its condition.
  virtual void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          time_point deadline) = 0;
};

class SystemWaitClock final : public WaitClock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  time_point deadline) override {
    cv.wait_until(lock, deadline);
  }
};

// Time stands still until advance(), which wakes every waiter whose deadline it reaches. The
// mutex and condition variable of a waiter must outlive any advance() that runs concurrently.
class ManualWaitClock final : public WaitClock {
 public:
  explicit ManualWaitClock(time_point start = time_point{} + std::chrono::hours(1));
  time_point now() const override;
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  time_point deadline) override;
  void advance(std::chrono::nanoseconds by);
  // The deadlines threads are blocked on now, earliest first: a test waits until the thread it
  // drives is parked before it advances time.
  std::vector<time_point> deadlines() const;

 private:
  struct Waiter {
    std::mutex* mutex;
    std::condition_variable* cv;
    time_point deadline;
  };
  mutable std::mutex mutex_;
  time_point now_;
  std::vector<Waiter*> waiters_;
};

// Watches the engine at `api_socket` and calls `on_change` with the complete published-port set:
// once as soon as the first listing succeeds, then whenever the set differs from the last one
// reported. Listings happen on every event that may change ports, and again `settle_delay` and
// 4 × `settle_delay` after the last such event (dockerd 20.10 emits `die` before its container
// list stops showing the container as running: measured 150 ms after `docker wait` returned,
// and a container that exits on its own sends nothing after `die`); after every (re)connect of
// the event stream; and every `reconcile_interval` as a guard against anything missed. A broken
// event stream (engine restarting) is reconnected with backoff from 100 ms doubling to 5 s. A
// failed listing keeps the last snapshot: a hiccup must not close every forwarded port.
//
// Two threads of blocking work, one for the event stream and one for listings, rather than one
// asio loop: the waits go through the injected WaitClock (a condition variable), which an asio timer
// could not share without a clock adapter, and a runner has one watcher per session. Each
// exchange runs on its own small io_context so the destructor can abort it at once.
//
// `on_change` runs on the watcher's thread, never concurrently with itself, and must not destroy
// the watcher; an exception from it is logged and swallowed.
class PortWatcher {
 public:
  using Callback = std::function<void(const PortSnapshot&)>;

  struct Stats {
    std::uint64_t listings = 0;          // successful listings
    std::uint64_t failed_listings = 0;
    std::uint64_t events = 0;            // events that asked for a listing
    std::uint64_t events_applied = 0;    // of those, how many a finished listing has covered
    std::uint64_t stream_connects = 0;   // successful subscriptions to /events
    bool following = false;              // subscribed to /events right now
  };

  // How many containers run, reported like the ports (first listing, then on change): the
  // session lifecycle counts running containers as activity.
  using RunningCallback = std::function<void(std::size_t running_containers)>;
  PortWatcher(std::filesystem::path api_socket, Callback on_change, WaitClock& clock,
              std::chrono::milliseconds reconcile_interval = std::chrono::seconds(5),
              std::chrono::milliseconds settle_delay = std::chrono::milliseconds(250),
              RunningCallback on_running = {});
  // Stops within milliseconds: aborts the exchanges in flight, wakes the waits, joins.
  ~PortWatcher();
  PortWatcher(const PortWatcher&) = delete;
  PortWatcher& operator=(const PortWatcher&) = delete;

  // The last snapshot reported to on_change (empty before the first).
  PortSnapshot current() const;
  Stats stats() const;

  static constexpr std::chrono::milliseconds kFirstBackoff{100};
  static constexpr std::chrono::milliseconds kMaxBackoff{5000};

 private:
  struct Exchange;
  void list_loop();
  void follow_loop();
  // Runs one exchange with the engine on a private io_context until it ends, `timeout` passes
  // (zero: no timeout) or the watcher stops.
  std::error_code run_exchange(const std::function<void(Exchange&)>& start,
                               std::chrono::milliseconds timeout);
  std::error_code list_ports(PortSnapshot& out, std::size_t& running);
  std::error_code follow_events();
  void request_listing(bool from_event);

  const std::filesystem::path api_socket_;
  const Callback on_change_;
  const RunningCallback on_running_;
  std::optional<std::size_t> running_;  // guarded by mutex_; last count reported
  WaitClock& clock_;
  const std::chrono::milliseconds reconcile_interval_;
  const std::chrono::milliseconds settle_delay_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool listing_wanted_ = true;           // the first listing happens at once
  bool reported_ = false;                // on_change has been called at least once
  WaitClock::time_point last_event_at_{};
  WaitClock::time_point settle_at_ = WaitClock::time_point::max();  // next follow-up listing
  int settle_step_ = 0;                                      // follow-ups done since the event
  PortSnapshot snapshot_;
  Stats stats_;
  std::vector<Exchange*> exchanges_;     // in flight, so the destructor can abort them

  std::thread list_thread_, follow_thread_;
};

}  // namespace offload::runner
