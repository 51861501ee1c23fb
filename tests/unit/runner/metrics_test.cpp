// The runner's metrics registry and the admin commands' formatting: no sockets, no engines.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "offload/common/token.h"
#include "offload/runner/admin.h"
#include "offload/runner/metrics.h"

namespace offload::runner {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

double sample(const std::string& text, const std::string& series) {
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

TEST(RunnerMetrics, EverySeriesExistsFromTheStart) {
  RunnerMetrics m;
  const auto text = m.text();
  for (const char* series :
       {"offload_runner_sessions{state=\"starting\"}", "offload_runner_sessions{state=\"running\"}",
        "offload_runner_sessions{state=\"stopping\"}",
        "offload_runner_session_starts_total{result=\"ok\"}",
        "offload_runner_session_starts_total{result=\"failed\"}",
        "offload_runner_session_ends_total{reason=\"idle\"}",
        "offload_runner_session_ends_total{reason=\"lease_expired\"}",
        "offload_runner_session_ends_total{reason=\"max_duration\"}",
        "offload_runner_session_ends_total{reason=\"client_request\"}",
        "offload_runner_session_ends_total{reason=\"admin\"}",
        "offload_runner_session_ends_total{reason=\"failed_start\"}",
        "offload_runner_tunnels_open", "offload_runner_tunnel_bytes_total{direction=\"in\"}",
        "offload_runner_sync_bytes_total{direction=\"out\"}",
        "offload_runner_api_request_seconds_count", "offload_runner_engine_start_seconds_count"})
    EXPECT_EQ(sample(text, series), 0) << series;
}

TEST(RunnerMetrics, SessionsMoveBetweenStatesAndEndsCountByReason) {
  RunnerMetrics m;
  m.session_starting();
  m.session_starting();
  EXPECT_EQ(sample(m.text(), "offload_runner_sessions{state=\"starting\"}"), 2);
  m.session_start_done(SessionStart::ok, 1500ms);
  m.session_start_done(SessionStart::failed, 3s);
  auto text = m.text();
  EXPECT_EQ(sample(text, "offload_runner_sessions{state=\"starting\"}"), 0);
  EXPECT_EQ(sample(text, "offload_runner_sessions{state=\"running\"}"), 1);
  EXPECT_EQ(sample(text, "offload_runner_session_starts_total{result=\"ok\"}"), 1);
  EXPECT_EQ(sample(text, "offload_runner_session_starts_total{result=\"failed\"}"), 1);
  EXPECT_EQ(sample(text, "offload_runner_session_ends_total{reason=\"failed_start\"}"), 1);
  EXPECT_EQ(sample(text, "offload_runner_engine_start_seconds_count"), 2);
  EXPECT_DOUBLE_EQ(sample(text, "offload_runner_engine_start_seconds_sum"), 4.5);
  EXPECT_EQ(sample(text, "offload_runner_engine_start_seconds_bucket{le=\"2\"}"), 1);

  m.session_stopping(session_end_of(EndReason::idle));
  text = m.text();
  EXPECT_EQ(sample(text, "offload_runner_sessions{state=\"running\"}"), 0);
  EXPECT_EQ(sample(text, "offload_runner_sessions{state=\"stopping\"}"), 1);
  EXPECT_EQ(sample(text, "offload_runner_session_ends_total{reason=\"idle\"}"), 1);
  m.session_stopped();
  EXPECT_EQ(sample(m.text(), "offload_runner_sessions{state=\"stopping\"}"), 0);
}

TEST(RunnerMetrics, TunnelsSyncAndApiLatency) {
  RunnerMetrics m;
  m.tunnel_opened();
  EXPECT_EQ(sample(m.text(), "offload_runner_tunnels_open"), 1);
  m.tunnel_closed(100, 2048);
  m.sync_received(7);
  m.sync_sent(9);
  m.api_request(3ms);
  m.api_request(2s);
  auto text = m.text();
  EXPECT_EQ(sample(text, "offload_runner_tunnels_open"), 0);
  EXPECT_EQ(sample(text, "offload_runner_tunnels_total"), 1);
  EXPECT_EQ(sample(text, "offload_runner_tunnel_bytes_total{direction=\"in\"}"), 100);
  EXPECT_EQ(sample(text, "offload_runner_tunnel_bytes_total{direction=\"out\"}"), 2048);
  EXPECT_EQ(sample(text, "offload_runner_sync_bytes_total{direction=\"in\"}"), 7);
  EXPECT_EQ(sample(text, "offload_runner_sync_bytes_total{direction=\"out\"}"), 9);
  EXPECT_EQ(sample(text, "offload_runner_api_request_seconds_count"), 2);
  EXPECT_EQ(sample(text, "offload_runner_api_request_seconds_bucket{le=\"0.005\"}"), 1);
  EXPECT_EQ(sample(text, "offload_runner_api_request_seconds_bucket{le=\"2.5\"}"), 2);
}

TEST(RunnerMetrics, LifecycleEndReasonsMapToLabels) {
  EXPECT_STREQ(to_label(session_end_of(EndReason::idle)), "idle");
  EXPECT_STREQ(to_label(session_end_of(EndReason::lease_expired)), "lease_expired");
  EXPECT_STREQ(to_label(session_end_of(EndReason::max_duration)), "max_duration");
  EXPECT_STREQ(to_label(SessionEnd::admin), "admin");
  EXPECT_STREQ(to_label(SessionEnd::runner_shutdown), "runner_shutdown");
}

TEST(MetricsEndpoint, ServesTheRegistryOverHttp) {
  RunnerMetrics m;
  m.sync_received(42);
  MetricsEndpoint endpoint("127.0.0.1:0", m);
  EXPECT_GT(endpoint.port(), 0);
  EXPECT_THROW(MetricsEndpoint("127.0.0.1:" + std::to_string(endpoint.port()), m),
               std::runtime_error);
}

v1::AdminSession session(const std::string& id, const std::string& state) {
  v1::AdminSession s;
  s.set_id(id);
  s.set_account("alice");
  s.set_client_label("laptop");
  s.set_state(state);
  s.set_age_ms(3 * 3600 * 1000 + 5 * 60 * 1000);
  s.set_idle_ms(90 * 1000);
  s.set_containers_running(2);
  s.set_containers_total(3);
  s.add_ports()->set_host_port(8080);
  s.add_mount_ids("m1");
  s.set_tunnels_open(4);
  s.set_tunnel_bytes_in(1500);
  s.set_tunnel_bytes_out(2'500'000);
  s.set_cpu_seconds(12.25);
  s.set_memory_bytes(64'000'000);
  return s;
}

TEST(SessionsTable, OneAlignedLinePerSession) {
  auto idle = session("0123456789abcdef0123", "idle");
  auto active = session("fedcba9876543210", "active");
  active.set_containers_total(-1);
  active.set_cpu_seconds(-1);
  active.set_memory_bytes(-1);
  active.set_client_label("");
  const auto table = format_sessions_table({idle, active});
  EXPECT_EQ(table,
            "SESSION ID     ACCOUNT   CLIENT   STATE    AGE    IDLE   CONTAINERS   PORTS   MOUNTS   "
            "TUNNELS   IN      OUT     CPU     MEMORY\n"
            "0123456789ab   alice     laptop   idle     3h5m   1m     2/3          1       1        "
            "4         1.5kB   2.5MB   12.2s   64MB\n"
            "fedcba987654   alice     -        active   3h5m   -      ?            1       1        "
            "4         1.5kB   2.5MB   -       -\n");
  EXPECT_EQ(format_sessions_table({}).find('\n'), format_sessions_table({}).size() - 1);
}

TEST(SessionsTable, JsonHasPlainNumbers) {
  auto doc = nlohmann::json::parse(format_session_json(session("0123456789abcdef", "idle")));
  EXPECT_EQ(doc["id"], "0123456789abcdef");
  EXPECT_EQ(doc["containers"]["running"], 2);
  EXPECT_EQ(doc["tunnels"]["bytes_out"], 2'500'000);
  EXPECT_EQ(doc["mounts"]["count"], 1);
  EXPECT_EQ(doc["ports"][0]["host_port"], 8080);
  EXPECT_DOUBLE_EQ(doc["cpu_seconds"].get<double>(), 12.25);
  auto list = nlohmann::json::parse(format_sessions_json({session("a", "idle"), session("b", "active")}));
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1]["state"], "active");
}

TEST(ResolveSessionId, ExactIdOrUniquePrefixLikeDocker) {
  const std::vector<std::string> ids = {"abc123", "abd456", "abc1234"};
  EXPECT_EQ(std::get<0>(resolve_session_id(ids, "abd")), "abd456");
  EXPECT_EQ(std::get<0>(resolve_session_id(ids, "abc123")), "abc123");  // exact wins
  EXPECT_NE(std::get<1>(resolve_session_id(ids, "ab")).find("ambiguous"), std::string::npos);
  EXPECT_NE(std::get<1>(resolve_session_id(ids, "ff")).find("no session ff"), std::string::npos);
  EXPECT_EQ(resolve_session_id(ids, "").index(), 1u);
}

class CgroupUsageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("offload-cgroup-" + random_hex(4));
  }
  void TearDown() override { fs::remove_all(root_); }
  void write(const fs::path& file, const std::string& text) {
    fs::create_directories(file.parent_path());
    std::ofstream(file) << text;
  }
  fs::path root_;
};

TEST_F(CgroupUsageTest, ReadsV1CpuacctAndMemory) {
  write(root_ / "cpuacct" / "offload-x" / "cpuacct.usage", "2500000000\n");
  write(root_ / "memory" / "offload-x" / "memory.usage_in_bytes", "1048576\n");
  auto usage = read_cgroup_usage(root_, "offload-x");
  EXPECT_DOUBLE_EQ(usage.cpu_seconds, 2.5);
  EXPECT_EQ(usage.memory_bytes, 1048576);
}

TEST_F(CgroupUsageTest, ReadsV2CpuStatAndMemoryCurrent) {
  write(root_ / "cgroup.controllers", "cpu memory pids\n");
  write(root_ / "offload-x" / "cpu.stat", "usage_usec 1500000\nuser_usec 1000000\n");
  write(root_ / "offload-x" / "memory.current", "4096\n");
  auto usage = read_cgroup_usage(root_, "offload-x");
  EXPECT_DOUBLE_EQ(usage.cpu_seconds, 1.5);
  EXPECT_EQ(usage.memory_bytes, 4096);
}

TEST_F(CgroupUsageTest, UnknownWithoutTheCgroup) {
  fs::create_directories(root_);
  auto usage = read_cgroup_usage(root_, "offload-x");
  EXPECT_EQ(usage.cpu_seconds, -1);
  EXPECT_EQ(usage.memory_bytes, -1);
}

}  // namespace
}  // namespace offload::runner
