#include "offload/runner/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <stdexcept>

namespace offload::runner {

namespace {
constexpr std::array<const char*, kSessionEndCount> kEndLabels = {
    "idle",  "lease_expired",   "max_duration", "client_request",
    "admin", "runner_shutdown", "failed_start"};
constexpr std::array<const char*, 3> kStartLabels = {"ok", "failed", "cancelled"};

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
}  // namespace

const char* to_label(SessionEnd end) { return kEndLabels[static_cast<std::size_t>(end)]; }

SessionEnd session_end_of(EndReason reason) {
  switch (reason) {
    case EndReason::idle:
      return SessionEnd::idle;
    case EndReason::lease_expired:
      return SessionEnd::lease_expired;
    case EndReason::max_duration:
      return SessionEnd::max_duration;
    case EndReason::none:
      break;
  }
  return SessionEnd::client_request;
}

RunnerMetrics::RunnerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& sessions = prometheus::BuildGauge()
                       .Name("offload_runner_sessions")
                       .Help("Sessions on this runner by state")
                       .Register(*registry_);
  starting_ = &sessions.Add({{"state", "starting"}});
  running_ = &sessions.Add({{"state", "running"}});
  stopping_ = &sessions.Add({{"state", "stopping"}});

  auto& starts = prometheus::BuildCounter()
                     .Name("offload_runner_session_starts_total")
                     .Help("Session starts by result (ok, failed, cancelled by the client)")
                     .Register(*registry_);
  for (std::size_t i = 0; i < kStartLabels.size(); ++i)
    starts_[i] = &starts.Add({{"result", kStartLabels[i]}});
  auto& ends = prometheus::BuildCounter()
                   .Name("offload_runner_session_ends_total")
                   .Help("Session ends by reason")
                   .Register(*registry_);
  for (std::size_t i = 0; i < kEndLabels.size(); ++i)
    ends_[i] = &ends.Add({{"reason", kEndLabels[i]}});

  // Engine starts take seconds (network, disk, dockerd's own start-up).
  engine_start_seconds_ = &prometheus::BuildHistogram()
                               .Name("offload_runner_engine_start_seconds")
                               .Help("Time to start a session's engine, failed starts included")
                               .Register(*registry_)
                               .Add({}, prometheus::Histogram::BucketBoundaries{
                                            0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120});

  tunnels_open_ = &prometheus::BuildGauge()
                       .Name("offload_runner_tunnels_open")
                       .Help("Tunnels (engine API and published port connections) open now")
                       .Register(*registry_)
                       .Add({});
  tunnels_total_ = &prometheus::BuildCounter()
                        .Name("offload_runner_tunnels_total")
                        .Help("Tunnels that reached their target")
                        .Register(*registry_)
                        .Add({});
  auto& tunnel_bytes = prometheus::BuildCounter()
                           .Name("offload_runner_tunnel_bytes_total")
                           .Help("Bytes through closed tunnels; in = client to session")
                           .Register(*registry_);
  tunnel_bytes_in_ = &tunnel_bytes.Add({{"direction", "in"}});
  tunnel_bytes_out_ = &tunnel_bytes.Add({{"direction", "out"}});
  auto& sync_bytes = prometheus::BuildCounter()
                         .Name("offload_runner_sync_bytes_total")
                         .Help("Bytes of bind-mount sync messages; in = from clients")
                         .Register(*registry_);
  sync_bytes_in_ = &sync_bytes.Add({{"direction", "in"}});
  sync_bytes_out_ = &sync_bytes.Add({{"direction", "out"}});

  api_request_seconds_ =
      &prometheus::BuildHistogram()
           .Name("offload_runner_api_request_seconds")
           .Help("Docker API requests through engine tunnels: request head to response head")
           .Register(*registry_)
           .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                             0.25, 0.5, 1, 2.5, 5, 10, 30});
}

RunnerMetrics::~RunnerMetrics() = default;

RunnerMetrics& RunnerMetrics::global() {
  static RunnerMetrics metrics;  // never destroyed before the threads that update it
  return metrics;
}

void RunnerMetrics::session_starting() { starting_->Increment(); }

void RunnerMetrics::session_start_done(SessionStart result,
                                       std::chrono::steady_clock::duration engine_start) {
  starting_->Decrement();
  starts_[static_cast<std::size_t>(result)]->Increment();
  if (result != SessionStart::cancelled) engine_start_seconds_->Observe(seconds(engine_start));
  if (result == SessionStart::ok)
    running_->Increment();
  else if (result == SessionStart::failed)
    ends_[static_cast<std::size_t>(SessionEnd::failed_start)]->Increment();
}

void RunnerMetrics::session_stopping(SessionEnd why) {
  running_->Decrement();
  stopping_->Increment();
  ends_[static_cast<std::size_t>(why)]->Increment();
}

void RunnerMetrics::session_stopped() { stopping_->Decrement(); }

void RunnerMetrics::session_restored() { running_->Increment(); }

void RunnerMetrics::session_detached() { running_->Decrement(); }

void RunnerMetrics::tunnel_opened() {
  tunnels_open_->Increment();
  tunnels_total_->Increment();
}

void RunnerMetrics::tunnel_closed(std::uint64_t bytes_in, std::uint64_t bytes_out) {
  tunnels_open_->Decrement();
  tunnel_bytes_in_->Increment(static_cast<double>(bytes_in));
  tunnel_bytes_out_->Increment(static_cast<double>(bytes_out));
}

void RunnerMetrics::sync_received(std::uint64_t bytes) {
  sync_bytes_in_->Increment(static_cast<double>(bytes));
}

void RunnerMetrics::sync_sent(std::uint64_t bytes) {
  sync_bytes_out_->Increment(static_cast<double>(bytes));
}

void RunnerMetrics::api_request(std::chrono::steady_clock::duration latency) {
  api_request_seconds_->Observe(seconds(latency));
}

std::string RunnerMetrics::text() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

struct MetricsEndpoint::Impl {
  std::unique_ptr<prometheus::Exposer> exposer;
};

MetricsEndpoint::MetricsEndpoint(const std::string& address, RunnerMetrics& metrics)
    : impl_(std::make_unique<Impl>()) {
  try {
    // One thread is plenty for a scraper every few seconds.
    impl_->exposer = std::make_unique<prometheus::Exposer>(address, 1);
  } catch (const std::exception& e) {
    throw std::runtime_error("--metrics-address " + address +
                             ": cannot listen there (in use, or not HOST:PORT of this host): " +
                             e.what());
  }
  impl_->exposer->RegisterCollectable(metrics.registry());
}

MetricsEndpoint::~MetricsEndpoint() = default;

int MetricsEndpoint::port() const {
  auto ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace offload::runner
