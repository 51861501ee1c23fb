// The runner's image cache end to end (issue 14 item 3): a registry the test starts on loopback
// is the cache's upstream; session 1 pulls an image through the runner's cache (a Docker Hub
// name, which is what dockerd sends to a mirror); the session ends, the upstream is stopped, and
// session 2 pulls the same image from the cache alone. The real docker CLI, offloadd, a real
// offload-runner with --image-cache-upstream and real dockerd engines. Needs root, docker.io,
// docker-registry and the docker CLI; skips otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "e2e_support.h"
#include "offload/common/fs.h"
#include "offload/common/join_string.h"
#include "offload/common/process.h"
#include "offload/common/token.h"
#include "offload/engine/engine.h"
#include "offload/runner/docker_backend.h"

namespace {

using namespace offload;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kBinDir = OFFLOAD_BIN_DIR;

std::string slurp(const fs::path& path) {
  std::string text;
  (void)read_file(path, text);
  return text;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

class ImageCacheE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (auto missing = engine::check_prerequisites(); !missing.empty()) GTEST_SKIP() << missing;
    if (!find_program("docker")) GTEST_SKIP() << "needs the docker CLI";
    if (!find_program("docker-registry")) GTEST_SKIP() << "needs docker-registry";
    ::unsetenv("DOCKER_HOST");
    ::unsetenv("DOCKER_CONTEXT");
    const std::string tag = random_hex(4);
    dir_ = fs::path("/tmp") / ("offload-cache-" + tag);
    run_dir_ = fs::path("/run") / ("offload-test-cache-" + tag);
    ASSERT_FALSE(ensure_private_dir(dir_));
    ASSERT_FALSE(write_file_atomic(accounts(), "ops:" + random_hex(24) + "\n"));
    const int n = static_cast<int>(::getpid() % 200);
    pool_ = "10.247." + std::to_string(n) + ".0/24";
    cache_address_ = "10.247." + std::to_string(n) + ".254";  // the pool's last address
    upstream_port_ = 20000 + static_cast<int>(::getpid() % 20000);
    e2e::make_docker_config(docker_config(), kBinDir, "{\"auths\": {}}\n", "");
  }

  void TearDown() override {
    if (dir_.empty()) return;
    if (HasFailure())
      std::cout << "[runner log]\n" << slurp(dir_ / "runner.log") << "\n[registry log tail]\n"
                << e2e::run_shell(dir_, "tail -c 3000 " + (cache_dir() / "registry.log").string(), 10s).out
                << "\n[offloadd log]\n"
                << slurp(docker_config() / "offload" / "offloadd.log") << "\n";
    sh("docker offload stop --force", 180s);
    std::string pid;
    if (!read_file(docker_config() / "offload" / "offloadd.pid", pid) && !pid.empty())
      terminate_process(static_cast<pid_t>(std::stol(pid)), 10s);
    if (runner_pid_ > 0) terminate_process(runner_pid_, 120s);
    if (upstream_pid_ > 0) terminate_process(upstream_pid_, 10s);
    if (pusher_pid_ > 0) terminate_process(pusher_pid_, 30s);
    runner::DockerSessionBackend backend(
        {dir_ / "state", run_dir_, boost::asio::ip::make_network_v4(pool_), {}, {}});
    for (const auto& line : backend.destroy_leftovers()) std::cout << "[teardown] " << line << "\n";
    run_command({"sh", "-c", "umount -R " + (run_dir_ / "pusher").string() + " 2>/dev/null"});
    std::error_code ec;
    fs::remove_all(run_dir_, ec);
    // dockerd --userns-remap makes "<dir>.<uid>.<gid>" twins of its exec root's ancestors
    // (/run/offload-test-cache-X.1000000000.1000000000/...), which engine teardown leaves.
    const std::string twin = run_dir_.filename().string() + ".";
    for (const auto& entry : fs::directory_iterator(run_dir_.parent_path(), ec))
      if (entry.path().filename().string().rfind(twin, 0) == 0) fs::remove_all(entry.path(), ec);
    if (!HasFailure()) fs::remove_all(dir_, ec);
  }

  fs::path accounts() const { return dir_ / "accounts"; }
  fs::path docker_config() const { return dir_ / "home" / ".docker"; }
  fs::path cache_dir() const { return dir_ / "state" / "image-cache"; }
  std::string upstream() const { return "127.0.0.1:" + std::to_string(upstream_port_); }

  e2e::Shell sh(const std::string& command, std::chrono::milliseconds timeout = 60s) const {
    return e2e::run_shell(dir_, "export DOCKER_CONFIG=" + quoted(docker_config().string()) +
                                    "; " + command,
                          timeout);
  }

  // The upstream: a plain registry on loopback, where the runner host (not the sessions) reaches
  // it.
  void start_upstream() {
    const fs::path config = dir_ / "upstream.yml";
    ASSERT_FALSE(write_file_atomic(
        config, "version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: " +
                    (dir_ / "upstream").string() + "}}\nhttp: {addr: " + upstream() + "}\n"));
    SpawnOptions o;
    o.log_file = dir_ / "upstream.log";
    std::string error;
    upstream_pid_ = spawn_process({"docker-registry", "serve", config.string()}, o, error);
    ASSERT_GT(upstream_pid_, 0) << error;
    ASSERT_TRUE(e2e::wait_for([&] { return upstream_answers(); }, 30s)) << slurp(dir_ / "upstream.log");
  }
  bool upstream_answers() const {
    return sh("curl -sf -o /dev/null http://" + upstream() + "/v2/", 10s).exit_code == 0;
  }

  // An image made offline, pushed to the upstream by a dockerd of the test's own (on the host,
  // where 127.0.0.1 is the upstream's loopback and plain HTTP is allowed).
  void push_image(const std::string& name) {
    const fs::path host = dir_ / "pusher";
    fs::create_directories(host);
    SpawnOptions o;
    o.log_file = host / "dockerd.log";
    std::string error;
    pusher_pid_ = spawn_process(
        {"dockerd", "--data-root", (host / "data").string(), "--exec-root",
         (run_dir_ / "pusher").string(), "-H", "unix://" + (host / "docker.sock").string(),
         "--pidfile", (host / "docker.pid").string(), "--bridge", "none", "--iptables=false"},
        o, error);
    ASSERT_GT(pusher_pid_, 0) << error;
    const std::string docker = "docker -H unix://" + (host / "docker.sock").string() + " ";
    ASSERT_TRUE(e2e::wait_for([&] { return sh(docker + "version").exit_code == 0; }, 60s))
        << slurp(host / "dockerd.log");
    e2e::make_busybox_rootfs(dir_ / "rootfs", "/usr/bin/busybox");
    auto imported = sh("tar -C " + (dir_ / "rootfs").string() + " -c . | " + docker +
                       "import - " + upstream() + "/" + name, 120s);
    ASSERT_EQ(imported.exit_code, 0) << imported.err;
    auto pushed = sh(docker + "push " + upstream() + "/" + name, 120s);
    ASSERT_EQ(pushed.exit_code, 0) << pushed.err << pushed.out;
  }
  fs::path pusher_socket() const { return dir_ / "pusher" / "docker.sock"; }

  void start_runner() {
    SpawnOptions o;
    o.log_file = dir_ / "runner.stderr.log";
    std::string error;
    runner_pid_ = spawn_process(
        {(kBinDir / "offload-runner").string(), "serve", "--listen", "127.0.0.1:0",
         "--token-file", accounts().string(), "--state-dir", (dir_ / "state").string(),
         "--run-dir", run_dir_.string(), "--address-pool", pool_, "--ready-file",
         (dir_ / "ready.json").string(), "--log-file", (dir_ / "runner.log").string(),
         "--image-cache-upstream", "http://" + upstream(), "--image-cache-size", "1GiB",
         "--image-cache-check", "1s"},
        o, error);
    ASSERT_GT(runner_pid_, 0) << error;
    ASSERT_TRUE(e2e::wait_for(
        [&] { return json::parse(slurp(dir_ / "ready.json"), nullptr, false).is_object(); },
        120s))
        << slurp(dir_ / "runner.stderr.log");
    const json ready = json::parse(slurp(dir_ / "ready.json"));
    auto added = sh(quoted((kBinDir / "offload-runner").string()) + " accounts add alice " +
                    "--token-file " + accounts().string() + " --state-dir " +
                    (dir_ / "state").string() + " --advertise " + ready["address"].get<std::string>());
    ASSERT_EQ(added.exit_code, 0) << added.err;
    // The runner rereads the file within a second.
    ASSERT_TRUE(e2e::wait_for(
        [&] { return slurp(dir_ / "runner.log").find("reloaded") != std::string::npos; }, 20s));
    auto joined = sh("docker offload accounts add alice " + quoted(e2e::trim(added.out)), 60s);
    ASSERT_EQ(joined.exit_code, 0) << joined.err << joined.out;
  }

  json status() const {
    auto s = sh("docker offload status --format json", 30s);
    auto j = json::parse(s.out, nullptr, false);
    return j.is_object() ? j : json::object();
  }

  fs::path dir_, run_dir_;
  std::string pool_, cache_address_;
  int upstream_port_ = 0;
  pid_t runner_pid_ = -1, upstream_pid_ = -1, pusher_pid_ = -1;
};

TEST_F(ImageCacheE2E, ASecondSessionPullsFromTheCacheAfterTheUpstreamIsGone) {
  ASSERT_NO_FATAL_FAILURE(start_upstream());
  ASSERT_NO_FATAL_FAILURE(push_image("e2e/cached:1"));
  ASSERT_NO_FATAL_FAILURE(start_runner());
  // The registry's address is on lo (and the pool's slot holding it is skipped).
  EXPECT_NE(sh("ip -4 addr show dev lo").out.find(cache_address_ + "/32"), std::string::npos);

  // The user's own engine (the test's pusher) is their current context and has an image only
  // it holds: `start --preload` copies it into the session.
  ASSERT_EQ(sh("tar -C " + (dir_ / "rootfs").string() + " -c . | docker -H unix://" +
               pusher_socket().string() + " import - e2e/local-only:1", 120s).exit_code, 0);
  ASSERT_EQ(sh("docker context create laptop --docker host=unix://" + pusher_socket().string() +
               " && docker context use laptop").exit_code, 0);

  // Session 1: a Docker Hub name, which dockerd asks its mirror for first.
  auto start = sh("docker offload start --account alice --preload e2e/local-only:1", 180s);
  ASSERT_EQ(start.exit_code, 0) << start.err << start.out;
  EXPECT_NE(start.out.find("Preloading e2e/local-only:1 from unix://" + pusher_socket().string()),
            std::string::npos) << start.out;
  EXPECT_NE(start.out.find("  copied "), std::string::npos) << start.out;
  EXPECT_NE(start.out.find("Loaded image: e2e/local-only:1"), std::string::npos) << start.out;
  auto preloaded = sh("docker run --rm e2e/local-only:1 echo preloaded", 60s);
  EXPECT_EQ(preloaded.out, "preloaded\n") << preloaded.err;
  json s;
  ASSERT_TRUE(e2e::wait_for(
      [&] {
        s = status();
        return s["imageCache"].is_object() && s["imageCache"].value("running", false);
      },
      30s))
      << s.dump();
  EXPECT_EQ(s["imageCache"].value("upstream", ""), "http://" + upstream());
  EXPECT_EQ(s["imageCache"].value("capBytes", 0ull), 1ull << 30);
  auto info = sh("docker info --format '{{json .RegistryConfig.Mirrors}}'");
  EXPECT_EQ(e2e::trim(info.out), "[\"http://" + cache_address_ + ":5000/\"]") << info.err;
  auto pulled = sh("docker pull e2e/cached:1", 120s);
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err << pulled.out;
  auto ran = sh("docker run --rm e2e/cached:1 echo from-the-upstream", 60s);
  EXPECT_EQ(ran.out, "from-the-upstream\n") << ran.err;
  auto pretty = sh("docker offload status");
  EXPECT_NE(pretty.out.find("Image cache:"), std::string::npos) << pretty.out;
  EXPECT_NE(pretty.out.find("of 1.07GB, Docker Hub names from http://" + upstream()),
            std::string::npos)
      << pretty.out;
  auto stop = sh("docker offload stop --force", 180s);
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_TRUE(fs::exists(cache_dir() / "storage" / "docker" / "registry" / "v2" /
                         "repositories" / "e2e" / "cached"));

  // The upstream goes away.
  terminate_process(upstream_pid_, 10s);
  upstream_pid_ = -1;
  ASSERT_FALSE(upstream_answers());

  // Session 2, a new engine with an empty image store: the cache alone has the image. A preload
  // of an image the local engine does not have fails clearly, after the session started.
  start = sh("docker offload start --account alice --preload e2e/nowhere:1", 180s);
  EXPECT_NE(start.exit_code, 0);
  EXPECT_NE(start.err.find("the local engine (unix://" + pusher_socket().string() +
                           ") cannot save e2e/nowhere:1"),
            std::string::npos) << start.err << start.out;
  ASSERT_EQ(status().value("state", ""), "started");
  auto images = sh("docker images -q e2e/cached:1");
  EXPECT_EQ(e2e::trim(images.out), "") << "session 2 should start without the image";
  pulled = sh("docker pull e2e/cached:1", 120s);
  ASSERT_EQ(pulled.exit_code, 0) << pulled.err << pulled.out;
  ran = sh("docker run --rm e2e/cached:1 echo from-the-cache", 60s);
  EXPECT_EQ(ran.out, "from-the-cache\n") << ran.err;
  // What the cache never held is not there either: nothing else serves images.
  auto missing = sh("docker pull e2e/never-pushed:1", 120s);
  EXPECT_NE(missing.exit_code, 0) << missing.out;
  // The cache was measured (every second here): it holds the image's bytes.
  ASSERT_TRUE(e2e::wait_for([&] { return status()["imageCache"].value("usedBytes", 0ull) > 100000; },
                            30s))
      << status().dump();
  stop = sh("docker offload stop --force", 180s);
  ASSERT_EQ(stop.exit_code, 0) << stop.err;

  // The runner's exit stops the registry and takes the address off lo; the storage stays.
  ASSERT_TRUE(terminate_process(runner_pid_, 120s));
  runner_pid_ = -1;
  EXPECT_EQ(sh("ip -4 addr show dev lo").out.find(cache_address_ + "/"), std::string::npos);
  EXPECT_TRUE(e2e::processes_mentioning((cache_dir() / "config.yml").string()).empty());
  EXPECT_TRUE(fs::exists(cache_dir() / "storage"));
}

}  // namespace
