// The runner's Prometheus metrics (offload_runner_*): one registry per process, fed by small
// hooks in the service, the tunnels, the sync calls and the API gate, and served over HTTP on
// the operator's --metrics-address. Every metric and label value exists from the start, so a
// hook is an increment on a reference taken once: no lookup, no allocation on the data path.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "offload/runner/lifecycle.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace offload::runner {

// Why a session ended, as the `reason` label of offload_runner_session_ends_total.
enum class SessionEnd {
  idle,
  lease_expired,
  max_duration,
  client_request,
  admin,
  runner_shutdown,
  failed_start,
};
inline constexpr std::size_t kSessionEndCount = 7;
// "idle", "lease_expired", "max_duration", "client_request", "admin", "runner_shutdown",
// "failed_start".
const char* to_label(SessionEnd end);
// The lifecycle's own end reasons; none maps to client_request (it is not called for it).
SessionEnd session_end_of(EndReason reason);

// How a session start came out, as the `result` label of offload_runner_session_starts_total.
enum class SessionStart { ok, failed, cancelled };

// What one session moved, for `offload-runner sessions inspect`: updated as tunnels close and
// as sync messages pass.
struct SessionTraffic {
  std::atomic<std::uint64_t> tunnel_bytes_in{0};   // client → session
  std::atomic<std::uint64_t> tunnel_bytes_out{0};  // session → client
  std::atomic<std::uint64_t> tunnels_total{0};     // tunnels that reached their target
};

class RunnerMetrics {
 public:
  RunnerMetrics();
  ~RunnerMetrics();
  RunnerMetrics(const RunnerMetrics&) = delete;
  RunnerMetrics& operator=(const RunnerMetrics&) = delete;

  // The process's metrics: what the hooks update and --metrics-address serves.
  static RunnerMetrics& global();

  // A session request arrived and its engine is being started.
  void session_starting();
  // Its engine start ended: with ok, it runs (engine_start goes into the histogram).
  void session_start_done(SessionStart result, std::chrono::steady_clock::duration engine_start);
  // A running session is being torn down, for `why`.
  void session_stopping(SessionEnd why);
  // Its teardown is over.
  void session_stopped();
  // --live-restore: a session of the previous runner process runs again here (not a start), or
  // is left running for the next one (not an end).
  void session_restored();
  void session_detached();

  // A tunnel reached its target, and later closed having moved these bytes.
  void tunnel_opened();
  void tunnel_closed(std::uint64_t bytes_in, std::uint64_t bytes_out);
  // Bind-mount sync messages received from / sent to clients.
  void sync_received(std::uint64_t bytes);
  void sync_sent(std::uint64_t bytes);
  // One Docker API request through an engine tunnel: from its head to its response's head.
  void api_request(std::chrono::steady_clock::duration latency);

  // The Prometheus text exposition of everything (what the endpoint serves; tests read it).
  std::string text() const;
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* starting_;
  prometheus::Gauge* running_;
  prometheus::Gauge* stopping_;
  std::array<prometheus::Counter*, 3> starts_{};
  std::array<prometheus::Counter*, kSessionEndCount> ends_{};
  prometheus::Histogram* engine_start_seconds_;
  prometheus::Gauge* tunnels_open_;
  prometheus::Counter* tunnels_total_;
  prometheus::Counter* tunnel_bytes_in_;
  prometheus::Counter* tunnel_bytes_out_;
  prometheus::Counter* sync_bytes_in_;
  prometheus::Counter* sync_bytes_out_;
  prometheus::Histogram* api_request_seconds_;
};

// Serves `metrics` (text format, GET /metrics) on HOST:PORT until destroyed. Throws
// std::runtime_error with one actionable line when the address cannot be bound.
class MetricsEndpoint {
 public:
  MetricsEndpoint(const std::string& address, RunnerMetrics& metrics);
  ~MetricsEndpoint();
  // The port it listens on (useful with port 0).
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace offload::runner
