// GPU sessions end to end on fake device trees (CI has no GPU): the real offload-runner binary
// looks for GPUs under --gpu-probe-root, the real docker CLI starts sessions through the real
// offloadd. Proven here: detection reaches Hello and `status`, `start --gpu` on a runner
// without a usable GPU fails at once naming the runner and why, a GPU session's engine gets the
// nvidia runtime and its `--gpus` requests pass the runner's policy (and reach dockerd, which
// has no NVIDIA driver here), a session without --gpu refuses them. What only a real GPU shows
// (`docker run --gpus all ... nvidia-smi`) is tests/gpu/real-gpu.sh. Needs root, docker.io and
// the docker CLI; skips otherwise.
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
#include "offload/daemon/runner_client.h"
#include "offload/engine/engine.h"
#include "offload/runner/docker_backend.h"

namespace {

using namespace offload;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kBinDir = OFFLOAD_BIN_DIR;
const std::string kModel = "NVIDIA Fake GPU 24GB";

std::string slurp(const fs::path& path) {
  std::string text;
  (void)read_file(path, text);
  return text;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

void put(const fs::path& file, const std::string& text, bool executable = false) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
  if (executable) fs::permissions(file, fs::perms::owner_all);
}

class GpuSessions : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (auto missing = engine::check_prerequisites(); !missing.empty()) GTEST_SKIP() << missing;
    if (!find_program("docker")) GTEST_SKIP() << "needs the docker CLI";
    ::unsetenv("DOCKER_HOST");
    ::unsetenv("DOCKER_CONTEXT");
    const std::string tag = random_hex(4);
    dir_ = fs::path("/tmp") / ("offload-gpu-" + tag);
    run_dir_ = fs::path("/run") / ("offload-test-gpu-" + tag);
    ASSERT_FALSE(ensure_private_dir(dir_));
    ASSERT_FALSE(write_file_atomic(dir_ / "accounts", "# operators\nops:" + random_hex(24) + "\n"));
    pool_ = "10.248." + std::to_string(::getpid() % 250) + ".0/24";
    e2e::make_docker_config(docker_config(), kBinDir, "{\"auths\": {}}\n", "");
  }

  void TearDown() override {
    if (dir_.empty()) return;
    if (HasFailure())
      std::cout << "[runner log]\n" << slurp(dir_ / "runner.log") << "\n[offloadd log]\n"
                << slurp(docker_config() / "offload" / "offloadd.log") << "\n";
    sh("docker offload stop --force", 180s);
    std::string pid;
    if (!read_file(docker_config() / "offload" / "offloadd.pid", pid) && !pid.empty())
      terminate_process(static_cast<pid_t>(std::stol(pid)), 10s);
    if (runner_pid_ > 0) terminate_process(runner_pid_, 120s);
    runner::DockerSessionBackend backend(
        {dir_ / "state", run_dir_, boost::asio::ip::make_network_v4(pool_), {}, {}});
    for (const auto& line : backend.destroy_leftovers()) std::cout << "[teardown] " << line << "\n";
    std::error_code ec;
    fs::remove_all(run_dir_, ec);
    if (!HasFailure()) fs::remove_all(dir_, ec);
  }

  fs::path docker_config() const { return dir_ / "home" / ".docker"; }
  fs::path tree() const { return dir_ / "machine"; }

  e2e::Shell sh(const std::string& command, std::chrono::milliseconds timeout = 60s) const {
    return e2e::run_shell(dir_, "export DOCKER_CONFIG=" + quoted(docker_config().string()) +
                                    "; " + command,
                          timeout);
  }

  // A machine with one NVIDIA GPU: its device nodes, nvidia-smi and, when `toolkit`, the NVIDIA
  // Container Toolkit's hook and runtime (scripts: nothing here ever runs them).
  void fake_gpu_machine(bool toolkit) {
    put(tree() / "dev" / "nvidia0", "");
    put(tree() / "dev" / "nvidiactl", "");
    put(tree() / "usr/bin/nvidia-smi", "#!/bin/sh\necho '" + kModel + "'\n", true);
    if (!toolkit) return;
    put(tree() / "usr/bin/nvidia-container-runtime-hook", "#!/bin/sh\nexit 1\n", true);
    put(tree() / "usr/bin/nvidia-container-runtime", "#!/bin/sh\nexit 1\n", true);
  }

  // `offload-runner serve` with GPUs looked for in tree(), and the account "gpubox" joined.
  void start_runner_and_join() {
    fs::create_directories(tree());
    SpawnOptions o;
    o.log_file = dir_ / "runner.stderr.log";
    std::string error;
    runner_pid_ = spawn_process(
        {(kBinDir / "offload-runner").string(), "serve", "--listen", "127.0.0.1:0",
         "--token-file", (dir_ / "accounts").string(), "--state-dir", (dir_ / "state").string(),
         "--run-dir", run_dir_.string(), "--address-pool", pool_, "--ready-file",
         (dir_ / "ready.json").string(), "--log-file", (dir_ / "runner.log").string(),
         "--gpu-probe-root", tree().string()},
        o, error);
    ASSERT_GT(runner_pid_, 0) << error;
    json ready;
    ASSERT_TRUE(e2e::wait_for(
        [&] {
          ready = json::parse(slurp(dir_ / "ready.json"), nullptr, false);
          return ready.is_object();
        },
        120s))
        << slurp(dir_ / "runner.stderr.log");
    address_ = ready["address"];
    auto added = sh(quoted((kBinDir / "offload-runner").string()) + " accounts add gpubox " +
                    "--token-file " + (dir_ / "accounts").string() + " --state-dir " +
                    (dir_ / "state").string() + " --advertise " + address_);
    ASSERT_EQ(added.exit_code, 0) << added.err;
    const std::string join_line = e2e::trim(added.out);
    const std::string token = parse_join_string(join_line).token;
    ASSERT_TRUE(e2e::wait_for(
        [&] {
          daemon::RunnerClient client({address_, ready["fingerprint"], token});
          try {
            hello_ = client.hello(10s);
            return true;
          } catch (const daemon::RunnerError&) {
            return false;
          }
        },
        20s))
        << "the runner never accepted the account";
    auto joined = sh("docker offload accounts add gpubox " + quoted(join_line));
    ASSERT_EQ(joined.exit_code, 0) << joined.err << joined.out;
  }

  json status() const {
    auto s = sh("docker offload status --format json", 30s);
    auto j = json::parse(s.out, nullptr, false);
    return j.is_object() ? j : json::object();
  }

  fs::path dir_, run_dir_;
  std::string pool_, address_;
  pid_t runner_pid_ = -1;
  v1::HelloResponse hello_;
};

TEST_F(GpuSessions, ARunnerWithoutAGpuRefusesStartGpuAtOnceNamingItself) {
  ASSERT_NO_FATAL_FAILURE(start_runner_and_join());
  EXPECT_FALSE(hello_.gpu_available());
  EXPECT_EQ(hello_.gpu_models_size(), 0);
  EXPECT_EQ(hello_.gpu_problem(), "it has no NVIDIA GPU (no /dev/nvidia<N> device nodes)");

  const auto began = std::chrono::steady_clock::now();
  auto start = sh("docker offload start --gpu --account gpubox", 120s);
  EXPECT_EQ(start.exit_code, 1) << start.out;
  EXPECT_NE(start.err.find("runner " + hello_.hostname() + " at " + address_ +
                           " (account \"gpubox\") cannot give the session a GPU: it has no "
                           "NVIDIA GPU (no /dev/nvidia<N> device nodes); start without --gpu"),
            std::string::npos)
      << start.err;
  // At once: refused at the handshake, before any engine was started.
  EXPECT_LT(std::chrono::steady_clock::now() - began, 30s);
  EXPECT_EQ(slurp(dir_ / "runner.log").find("creating for account"), std::string::npos);
  EXPECT_EQ(status().value("state", ""), "stopped");
  EXPECT_EQ(e2e::trim(sh("docker context show").out), "default");
}

TEST_F(GpuSessions, AGpuWithoutTheToolkitIsNamedAndRefused) {
  fake_gpu_machine(/*toolkit=*/false);
  ASSERT_NO_FATAL_FAILURE(start_runner_and_join());
  EXPECT_FALSE(hello_.gpu_available());
  ASSERT_EQ(hello_.gpu_models_size(), 1);
  EXPECT_EQ(hello_.gpu_models(0), kModel);
  auto start = sh("docker offload start -g -a gpubox", 120s);
  EXPECT_EQ(start.exit_code, 1) << start.out;
  EXPECT_NE(start.err.find("cannot give the session a GPU: it has " + kModel +
                           " but not the NVIDIA Container Toolkit"),
            std::string::npos)
      << start.err;
}

TEST_F(GpuSessions, AGpuSessionGetsTheGpusAndOnlyItMayUseThem) {
  fake_gpu_machine(/*toolkit=*/true);
  ASSERT_NO_FATAL_FAILURE(start_runner_and_join());
  EXPECT_TRUE(hello_.gpu_available()) << hello_.gpu_problem();
  ASSERT_EQ(hello_.gpu_models_size(), 1);
  EXPECT_EQ(hello_.gpu_models(0), kModel);

  auto start = sh("docker offload start --gpu --account gpubox", 180s);
  ASSERT_EQ(start.exit_code, 0) << start.err << start.out;
  // Its phases, on stderr, in order.
  EXPECT_NE(start.err.find("[1/4] Provisioning the runner and connecting to it\n"
                           "[2/4] Starting the session's Docker engine on the runner\n"
                           "[3/4] Switching the docker context to docker-offload\n"
                           "[4/4] Following the session's events\n"),
            std::string::npos)
      << start.err;
  auto pretty = sh("docker offload status");
  EXPECT_NE(pretty.out.find("\nGPU:              Yes (" + kModel + ")\n"), std::string::npos)
      << pretty.out;
  EXPECT_NE(pretty.out.find("\nEnds by:          "), std::string::npos) << pretty.out;
  json s = status();
  EXPECT_EQ(s.value("gpu", false), true) << s.dump();
  EXPECT_EQ(s["gpuModels"], json::array({kModel})) << s.dump();
  EXPECT_FALSE(s.value("endsBy", "").empty()) << s.dump();

  // The engine has the toolkit's runtime...
  auto runtimes = sh("docker info --format '{{json .Runtimes}}'");
  ASSERT_EQ(runtimes.exit_code, 0) << runtimes.err;
  EXPECT_EQ(json::parse(runtimes.out, nullptr, false)["nvidia"]["path"],
            (tree() / "usr/bin/nvidia-container-runtime").string())
      << runtimes.out;
  // ...and --gpus passes the runner's policy: what fails is dockerd, which has no NVIDIA
  // driver on this machine (the real hook is not on its PATH).
  e2e::make_busybox_rootfs(dir_ / "rootfs", kBinDir / "offload-test-echo-server");
  auto import = sh("tar -C " + (dir_ / "rootfs").string() + " -c . | docker import - gpu-test:1", 120s);
  ASSERT_EQ(import.exit_code, 0) << import.err;
  auto gpus = sh("docker run --rm --gpus all gpu-test:1 true", 60s);
  EXPECT_NE(gpus.exit_code, 0);
  EXPECT_EQ(gpus.err.find("this offload runner does not allow"), std::string::npos) << gpus.err;
  EXPECT_NE(gpus.err.find("could not select device driver"), std::string::npos) << gpus.err;
  auto other = sh("docker run --rm --gpus all --device /dev/null gpu-test:1 true", 60s);
  EXPECT_NE(other.err.find("this offload runner does not allow --device"), std::string::npos)
      << other.err;

  // A session started without --gpu on the same runner refuses --gpus, saying how to get one.
  ASSERT_EQ(sh("docker offload stop --force", 180s).exit_code, 0);
  start = sh("docker offload start --account gpubox", 180s);
  ASSERT_EQ(start.exit_code, 0) << start.err << start.out;
  EXPECT_EQ(status().value("gpu", true), false);
  auto refused = sh("docker run --rm --gpus all busybox true", 60s);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("this offload runner does not allow --gpus "
                             "(HostConfig.DeviceRequests): this session has no GPU (start one "
                             "with `docker offload start --gpu`"),
            std::string::npos)
      << refused.err;
}

}  // namespace
