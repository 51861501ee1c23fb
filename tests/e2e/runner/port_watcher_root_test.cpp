// PortWatcher against a real session engine (dockerd 20.10 in its own network namespace) driven
// by the real docker CLI. Needs root and docker.io; skips otherwise.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <spdlog/spdlog.h>
#include <string>
#include <vector>

#include "offload/common/process.h"
#include "offload/common/token.h"
#include "offload/engine/engine.h"
#include "offload/runner/port_watcher.h"

using namespace offload;
using namespace offload::engine;
using namespace offload::runner;
using namespace std::chrono;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace ip = boost::asio::ip;

namespace {

const char* kDockerCli = "/usr/local/bin/docker";

AddressPool& test_pool() {
  static AddressPool pool(
      ip::make_network_v4("10.245." + std::to_string(::getpid() % 250) + ".0/24"));
  return pool;
}

struct Binding {
  std::string name;
  unsigned container_port;
  std::string protocol, host_ip;
  unsigned host_port;
  bool operator==(const Binding&) const = default;
};
std::ostream& operator<<(std::ostream& out, const Binding& b) {
  return out << b.name << " " << b.container_port << "/" << b.protocol << " -> " << b.host_ip
             << ":" << b.host_port;
}

std::vector<Binding> bindings(const PortSnapshot& snapshot) {
  std::vector<Binding> out;
  for (const auto& p : snapshot)
    out.push_back({p.container_name(), p.container_port(), p.protocol(), p.host_ip(),
                   p.host_port()});
  return out;
}

bool has(const std::vector<Binding>& all, const std::string& name, unsigned port,
         const std::string& protocol, const std::string& host_ip, unsigned host_port) {
  return std::find(all.begin(), all.end(), Binding{name, port, protocol, host_ip, host_port}) !=
         all.end();
}

bool mentions(const std::vector<Binding>& all, const std::string& name) {
  return std::any_of(all.begin(), all.end(), [&](const Binding& b) { return b.name == name; });
}

class PortWatcherRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::getenv("OFFLOAD_TEST_DEBUG")) spdlog::set_level(spdlog::level::debug);
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (auto missing = check_prerequisites(); !missing.empty()) GTEST_SKIP() << missing;
    if (!fs::exists(kDockerCli)) GTEST_SKIP() << "needs the docker CLI at " << kDockerCli;
    spec_.session_id = random_hex(8);
    auto slot = test_pool().allocate(spec_.session_id);
    ASSERT_TRUE(slot);
    spec_.slot = *slot;
    spec_.data_dir = fs::path("/tmp/offload-ports-test") / spec_.session_id;
    spec_.run_dir = fs::path("/run/offload-test") / spec_.session_id.substr(0, 8);
    engine_ = Engine::start(spec_);
  }
  void TearDown() override {
    watcher_.reset();
    if (engine_) {
      auto report = engine_->destroy("test teardown");
      EXPECT_TRUE(report.clean()) << ::testing::PrintToString(report.leftovers);
    }
    if (!spec_.session_id.empty()) test_pool().release(spec_.slot.index);
  }

  CommandResult docker(std::vector<std::string> args) {
    std::vector<std::string> argv = {kDockerCli, "-H", "unix://" + engine_->api_socket().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, 60s);
  }

  void import_busybox() {
    const fs::path scratch = spec_.data_dir.parent_path() / ("scratch-" + spec_.session_id);
    fs::create_directories(scratch / "rootfs" / "bin");
    fs::copy_file("/bin/busybox", scratch / "rootfs" / "bin" / "busybox",
                  fs::copy_options::overwrite_existing);
    for (const char* applet : {"sh", "httpd", "sleep", "nc"})
      fs::create_symlink("busybox", scratch / "rootfs" / "bin" / applet);
    auto tar = run_command({"tar", "-C", (scratch / "rootfs").string(), "-cf",
                            (scratch / "rootfs.tar").string(), "."});
    ASSERT_TRUE(tar.ok()) << tar.output;
    auto imported = docker({"import", "--change", "EXPOSE 8080", "--change", "EXPOSE 9090/udp",
                            (scratch / "rootfs.tar").string(), "offload-bb:1"});
    ASSERT_TRUE(imported.ok()) << imported.output << imported.error;
    fs::remove_all(scratch);
  }

  void run(std::vector<std::string> args) {
    auto result = docker(args);
    ASSERT_TRUE(result.ok()) << ::testing::PrintToString(args) << ": " << result.output
                             << result.error;
  }

  void start_watching(milliseconds reconcile_interval = 5s) {
    watcher_ = std::make_unique<PortWatcher>(
        engine_->api_socket(),
        [this](const PortSnapshot& snapshot) {
          std::lock_guard lock(mutex_);
          last_ = bindings(snapshot);
          last_snapshot_ = snapshot;
          ++calls_;
          changed_.notify_all();
        },
        clock_, reconcile_interval);
  }

  // Waits (up to `limit`) for the reported snapshot to satisfy `pred`; returns how long it took.
  template <typename Pred>
  milliseconds until_reported(Pred pred, milliseconds limit = 10s) {
    const auto t0 = steady_clock::now();
    std::unique_lock lock(mutex_);
    const bool ok = changed_.wait_for(lock, limit, [&] { return calls_ > 0 && pred(last_); });
    EXPECT_TRUE(ok) << "last snapshot: " << ::testing::PrintToString(last_);
    return duration_cast<milliseconds>(steady_clock::now() - t0);
  }

  // The address the last snapshot names for `name`'s ports ("" when none), or "absent".
  std::string address_of(const std::string& name) {
    std::lock_guard lock(mutex_);
    for (const auto& p : last_snapshot_)
      if (p.container_name() == name) return p.container_address();
    return "absent";
  }

  milliseconds until_address(const std::string& name, const std::string& wanted,
                             milliseconds limit = 10s) {
    const auto t0 = steady_clock::now();
    while (address_of(name) != wanted && steady_clock::now() - t0 < limit) {
      std::unique_lock lock(mutex_);
      changed_.wait_for(lock, 100ms);
    }
    EXPECT_EQ(address_of(name), wanted) << name;
    return duration_cast<milliseconds>(steady_clock::now() - t0);
  }

  std::vector<Binding> last() {
    std::lock_guard lock(mutex_);
    return last_;
  }

  EngineSpec spec_;
  std::unique_ptr<Engine> engine_;
  SystemWaitClock clock_;
  std::unique_ptr<PortWatcher> watcher_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Binding> last_;
  PortSnapshot last_snapshot_;
  int calls_ = 0;
};

TEST_F(PortWatcherRootTest, FollowsPublishedPortsThroughTheContainerLifecycle) {
  const auto t_start = steady_clock::now();
  import_busybox();
  start_watching();
  until_reported([](const auto& all) { return all.empty(); });

  std::vector<std::pair<std::string, long>> timings;
  auto timed = [&](const std::string& what, milliseconds took) {
    timings.emplace_back(what, static_cast<long>(took.count()));
    // Event-driven: well under the 5 s reconcile interval.
    EXPECT_LT(took, 2s) << what;
  };

  run({"run", "-d", "--name", "web", "-p", "18081:80", "offload-bb:1", "httpd", "-f", "-p", "80"});
  timed("run -p 18081:80", until_reported([](const auto& all) {
          return has(all, "web", 80, "tcp", "0.0.0.0", 18081);
        }));
  const bool reports_v6 = has(last(), "web", 80, "tcp", "::", 18081);
  // Only what was published: the image's EXPOSEd ports are not.
  for (const auto& b : last()) {
    EXPECT_EQ(b.name, "web");
    EXPECT_EQ(b.container_port, 80u);
  }

  run({"run", "-d", "--name", "dns", "-p", "18082:53/udp", "offload-bb:1", "sleep", "600"});
  timed("run -p 18082:53/udp", until_reported([](const auto& all) {
          return has(all, "dns", 53, "udp", "0.0.0.0", 18082) &&
                 has(all, "web", 80, "tcp", "0.0.0.0", 18081);
        }));

  run({"run", "-d", "--name", "local", "-p", "127.0.0.1:18083:80", "offload-bb:1", "httpd", "-f",
       "-p", "80"});
  timed("run -p 127.0.0.1:18083:80", until_reported([](const auto& all) {
          return has(all, "local", 80, "tcp", "127.0.0.1", 18083);
        }));

  run({"stop", "-t", "1", "web"});
  timed("stop", until_reported([](const auto& all) {
          return !mentions(all, "web") && mentions(all, "dns");
        }));
  run({"start", "web"});
  timed("start", until_reported([](const auto& all) {
          return has(all, "web", 80, "tcp", "0.0.0.0", 18081);
        }));
  run({"restart", "-t", "1", "web"});
  until_reported([](const auto& all) { return has(all, "web", 80, "tcp", "0.0.0.0", 18081); });

  // -P: every EXPOSEd port on a host port the engine picks.
  run({"run", "-d", "--name", "random", "-P", "offload-bb:1", "httpd", "-f", "-p", "8080"});
  timed("run -P", until_reported([](const auto& all) {
          return mentions(all, "random");
        }));
  auto port = docker({"port", "random", "8080/tcp"});
  ASSERT_TRUE(port.ok()) << port.output;
  const auto colon = port.output.find(':');
  ASSERT_NE(colon, std::string::npos) << port.output;
  const unsigned random_tcp = static_cast<unsigned>(std::stoul(port.output.substr(colon + 1)));
  EXPECT_GT(random_tcp, 0u);
  until_reported([&](const auto& all) {
    return has(all, "random", 8080, "tcp", "0.0.0.0", random_tcp) &&
           std::any_of(all.begin(), all.end(), [](const Binding& b) {
             return b.name == "random" && b.container_port == 9090 && b.protocol == "udp" &&
                    b.host_port > 0;
           });
  });

  // A container that exits by itself sends only `die` (and no `stop`).
  run({"run", "-d", "--name", "brief", "-p", "18084:80", "offload-bb:1", "sleep", "1"});
  run({"wait", "brief"});
  timed("exit on its own", until_reported([](const auto& all) {
          return !mentions(all, "brief") && mentions(all, "random");
        }));

  run({"rm", "-f", "dns"});
  timed("rm -f", until_reported([](const auto& all) { return !mentions(all, "dns"); }));
  run({"pause", "local"});
  run({"unpause", "local"});
  until_reported([](const auto& all) { return has(all, "local", 80, "tcp", "127.0.0.1", 18083); });

  EXPECT_TRUE(watcher_->stats().following);
  EXPECT_EQ(watcher_->stats().stream_connects, 1u);
  EXPECT_EQ(watcher_->stats().failed_listings, 0u);
  EXPECT_TRUE(same_ports(watcher_->current(), watcher_->current()));

  // OFFLOAD_CAPTURE_DIR=dir saves the engine's real answers: the fuzz corpus came from here.
  if (const char* dir = std::getenv("OFFLOAD_CAPTURE_DIR")) {
    std::string body;
    ASSERT_EQ(engine_->get("/containers/json", body), 200);
    std::ofstream(fs::path(dir) / "containers.json", std::ios::binary) << body;
    const auto now = duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
    ASSERT_EQ(engine_->get("/events?since=0&until=" + std::to_string(now + 1), body), 200);
    std::ofstream(fs::path(dir) / "events.json", std::ios::binary) << body;
  }
  std::cout << "[ports] engine reports :: bindings: " << (reports_v6 ? "yes" : "no") << "\n";
  for (const auto& [what, ms] : timings) std::cout << "[timing] " << what << ": " << ms << " ms\n";

  // The engine goes away under the watcher: it keeps the last snapshot, retries, and still
  // stops at once.
  auto report = engine_->destroy("test");
  EXPECT_TRUE(report.clean()) << ::testing::PrintToString(report.leftovers);
  engine_.reset();
  EXPECT_TRUE(
      [&] {
        for (int i = 0; i < 1000 && watcher_->stats().following; ++i)
          std::this_thread::sleep_for(10ms);
        return !watcher_->stats().following;
      }());
  EXPECT_FALSE(watcher_->current().empty());
  const auto t0 = steady_clock::now();
  watcher_.reset();
  EXPECT_LT(steady_clock::now() - t0, 1s);
  std::cout << "[timing] whole test incl. engine start/destroy: "
            << duration_cast<milliseconds>(steady_clock::now() - t_start).count() << " ms\n";
}

TEST_F(PortWatcherRootTest, ANetworkConnectOrDisconnectChangesTheAddressAtOnce) {
  // The runner dials a container on one network at its address (tunnel_targets.h); on two it
  // has none. `docker network connect/disconnect` on a running container is a network event,
  // not a container event, and must reach the session as a start does: by an event, not by the
  // reconcile (a minute here, so that only an event can explain a prompt change).
  import_busybox();
  run({"network", "create", "--subnet", "172.29.7.0/24", "second"});
  start_watching(60s);
  run({"run", "-d", "--name", "web", "-p", "18091:80", "offload-bb:1", "httpd", "-f", "-p", "80"});
  until_reported([](const auto& all) { return has(all, "web", 80, "tcp", "0.0.0.0", 18091); });
  const std::string first = address_of("web");
  ASSERT_NE(first, "");
  ASSERT_NE(first, "absent");

  auto events = watcher_->stats().events;
  run({"network", "connect", "second", "web"});
  const auto connected = until_address("web", "");
  EXPECT_LT(connected, 2s) << "network connect";
  EXPECT_GT(watcher_->stats().events, events) << "no event asked for the listing";
  events = watcher_->stats().events;
  run({"network", "disconnect", "bridge", "web"});
  // Left on `second` alone: its address there (the first after the gateway).
  const auto disconnected = until_address("web", "172.29.7.2");
  EXPECT_LT(disconnected, 2s) << "network disconnect";
  EXPECT_GT(watcher_->stats().events, events) << "no event asked for the listing";
  std::cout << "[timing] network connect: " << connected.count()
            << " ms, disconnect: " << disconnected.count() << " ms\n";
}

}  // namespace
