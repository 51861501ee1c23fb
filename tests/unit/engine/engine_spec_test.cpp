// Engine::start validates its spec before touching the host, so these run without root.
#include <gtest/gtest.h>

#include "offload/engine/engine.h"

using namespace offload::engine;
namespace fs = std::filesystem;

namespace {
EngineSpec good_spec() {
  AddressPool pool(boost::asio::ip::make_network_v4("10.250.0.0/30"));
  EngineSpec spec;
  spec.session_id = "0123456789abcdef";
  spec.slot = *pool.allocate(spec.session_id);
  spec.data_dir = "/var/lib/offload-runner/sessions/0123456789abcdef";
  spec.run_dir = "/run/offload-runner/01234567";
  return spec;
}

void expect_rejected(const EngineSpec& spec, const std::string& mention) {
  try {
    Engine::start(spec);
    FAIL() << "accepted a bad spec";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(EngineSpec, DerivesEveryPathFromItsTwoDirectories) {
  auto spec = good_spec();
  EXPECT_EQ(spec.data_root(), fs::path("/var/lib/offload-runner/sessions/0123456789abcdef/docker"));
  EXPECT_EQ(spec.log_file().filename(), "dockerd.log");
  EXPECT_EQ(spec.exec_root(), fs::path("/run/offload-runner/01234567/exec"));
  EXPECT_EQ(spec.api_socket(), fs::path("/run/offload-runner/01234567/docker.sock"));
  EXPECT_EQ(spec.pid_file(), fs::path("/run/offload-runner/01234567/docker.pid"));
  EXPECT_EQ(spec.cgroup_parent(), "offload-0123456789abcdef");
  EXPECT_EQ(spec.rule_comment(), "offload:0123456789abcdef");
}

TEST(EngineSpec, StartRejectsAMalformedSessionId) {
  auto spec = good_spec();
  spec.session_id = "../etc";
  expect_rejected(spec, "session id");
}

TEST(EngineSpec, StartRejectsDirectoriesThatCouldBeSystemOnes) {
  auto spec = good_spec();
  spec.data_dir = "/tmp";
  expect_rejected(spec, "data_dir");
  spec = good_spec();
  spec.run_dir = "relative/run";
  expect_rejected(spec, "run_dir");
  spec = good_spec();
  spec.run_dir = spec.data_dir / "run";
  expect_rejected(spec, "contain each other");
}

TEST(EngineSpec, StartRejectsARunDirTooLongForSockets) {
  auto spec = good_spec();
  spec.run_dir = "/run/" + std::string(80, 'r');
  expect_rejected(spec, "too long");
}

// BuildKit's ssh-agent socket lives in dockerd's temporary directory: under data_root (dockerd's
// default) it would not fit in sun_path (bind: invalid argument); under tmp_dir() it does.
TEST(EngineSpec, DockerdsTempDirIsShortEnoughForBuildKitsSocketsAndStoredOnTheSessionDisk) {
  auto spec = good_spec();
  EXPECT_EQ(spec.tmp_dir(), fs::path("/run/offload-runner/01234567/tmp"));
  EXPECT_EQ(spec.tmp_storage(), spec.data_dir / "tmp");
  const std::string ssh_socket = "/.buildkit-ssh-sock4294967295/ssh_auth_sock";
  EXPECT_LT((spec.tmp_dir().string() + ssh_socket).size(), 108u);
  // What dockerd 20.10 would use with userns-remap, under a local runner's state directory.
  spec.data_dir = "/var/lib/docker-offload/463c66f3b1a4/sessions/b1dd38851ba9deeb77e700844c39191c";
  EXPECT_GE((spec.data_root().string() + "/1000000000.1000000000/tmp" + ssh_socket).size(), 108u);
}

TEST(EngineSpec, StartRejectsARunDirTooLongForBuildKitsSockets) {
  auto spec = good_spec();
  // Short enough for containerd's socket under exec/, too long for BuildKit's under tmp/.
  spec.run_dir = "/run/" + std::string(56, 'r');
  expect_rejected(spec, "BuildKit");
}

TEST(EngineSpec, StartRejectsASpecWithoutANetworkSlot) {
  auto spec = good_spec();
  spec.slot = NetworkSlot{};
  expect_rejected(spec, "network slot");
}

TEST(EngineSpec, AdoptValidatesToo) {
  auto spec = good_spec();
  spec.data_dir = "/";
  EXPECT_THROW(Engine::adopt(spec), std::invalid_argument);
}

TEST(EngineSpec, AdoptingAnEngineThatNeverRanFindsNoDockerd) {
  auto spec = good_spec();
  spec.run_dir = "/nonexistent-offload-test/01234567";
  auto engine = Engine::adopt(spec);
  EXPECT_EQ(engine->pid(), 0);
  EXPECT_FALSE(engine->alive());
  EXPECT_EQ(engine->api_socket(), spec.api_socket());
}

TEST(EngineSpec, StartRejectsADiskQuotaTooSmallToHoldAnything) {
  auto spec = good_spec();
  spec.limits.disk_bytes = 1ull << 20;
  expect_rejected(spec, "too small");
}
