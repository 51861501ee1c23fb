// Onboarding end to end (issue 12): the operator's `offload-runner accounts add` prints a join
// string, the user's `docker offload accounts add` takes it, the running `offload-runner serve`
// picks the account up from the changed file (no SIGHUP, no restart), a session starts with it
// through the real docker CLI; `accounts remove` then refuses the token for new greetings while
// the session started with it goes on. Needs root, docker.io and the docker CLI; skips otherwise.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
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

std::string slurp(const fs::path& path) {
  std::string text;
  (void)read_file(path, text);
  return text;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

class Onboarding : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (auto missing = engine::check_prerequisites(); !missing.empty()) GTEST_SKIP() << missing;
    if (!find_program("docker")) GTEST_SKIP() << "needs the docker CLI";
    ::unsetenv("DOCKER_HOST");
    ::unsetenv("DOCKER_CONTEXT");
    const std::string tag = random_hex(4);
    dir_ = fs::path("/tmp") / ("offload-onboard-" + tag);
    run_dir_ = fs::path("/run") / ("offload-test-onboard-" + tag);
    ASSERT_FALSE(ensure_private_dir(dir_));
    // The runner starts with one account; alice comes later.
    ASSERT_FALSE(write_file_atomic(accounts(), "# operators\nops:" + random_hex(24) + "\n"));
    pool_ = "10.253." + std::to_string(::getpid() % 250) + ".0/24";
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

  fs::path accounts() const { return dir_ / "accounts"; }
  fs::path docker_config() const { return dir_ / "home" / ".docker"; }

  e2e::Shell sh(const std::string& command, std::chrono::milliseconds timeout = 60s) const {
    return e2e::run_shell(dir_, "export DOCKER_CONFIG=" + quoted(docker_config().string()) +
                                    "; " + command,
                          timeout);
  }

  // `offload-runner ARGS...` as the operator runs it.
  e2e::Shell operator_runs(const std::string& args) const {
    return sh(quoted((kBinDir / "offload-runner").string()) + " " + args);
  }

  void start_runner() {
    SpawnOptions o;
    o.log_file = dir_ / "runner.stderr.log";
    std::string error;
    runner_pid_ = spawn_process(
        {(kBinDir / "offload-runner").string(), "serve", "--listen", "127.0.0.1:0",
         "--token-file", accounts().string(), "--state-dir", (dir_ / "state").string(),
         "--run-dir", run_dir_.string(), "--address-pool", pool_, "--ready-file",
         (dir_ / "ready.json").string(), "--log-file", (dir_ / "runner.log").string()},
        o, error);
    ASSERT_GT(runner_pid_, 0) << error;
    ASSERT_TRUE(e2e::wait_for(
        [&] {
          ready_ = json::parse(slurp(dir_ / "ready.json"), nullptr, false);
          return ready_.is_object();
        },
        120s))
        << slurp(dir_ / "runner.stderr.log");
  }

  // The runner's answer to a Hello with `token`.
  grpc::StatusCode hello(const std::string& token) const {
    daemon::RunnerClient client({ready_["address"], ready_["fingerprint"], token});
    try {
      client.hello(10s);
      return grpc::StatusCode::OK;
    } catch (const daemon::RunnerError& e) {
      return e.code;
    }
  }

  json status() const {
    auto s = sh("docker offload status --format json", 30s);
    auto j = json::parse(s.out, nullptr, false);
    return j.is_object() ? j : json::object();
  }

  fs::path dir_, run_dir_;
  std::string pool_;
  pid_t runner_pid_ = -1;
  json ready_;
};

TEST_F(Onboarding, AJoinStringTakesANewUserFromZeroToASessionAndRemovalRefusesOnlyNewOnes) {
  ASSERT_NO_FATAL_FAILURE(start_runner());
  const std::string address = ready_["address"];

  // The operator adds alice while the runner runs.
  auto added = operator_runs("accounts add alice --token-file " + accounts().string() +
                             " --state-dir " + (dir_ / "state").string() + " --advertise " +
                             address);
  ASSERT_EQ(added.exit_code, 0) << added.err;
  ASSERT_EQ(std::count(added.out.begin(), added.out.end(), '\n'), 1) << added.out;
  const std::string join_line = e2e::trim(added.out);
  const JoinInfo join = parse_join_string(join_line);
  EXPECT_EQ(join.address, address);
  EXPECT_EQ(join.fingerprint, ready_["fingerprint"]) << "the fingerprint of the runner's own cert";
  EXPECT_EQ(added.err.find(join.token), std::string::npos) << "the token only on stdout";
  EXPECT_EQ(slurp(accounts()).rfind("# operators\nops:", 0), 0u) << slurp(accounts());
  struct stat st {};
  ASSERT_EQ(::stat(accounts().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto listed = operator_runs("accounts ls --token-file " + accounts().string());
  EXPECT_EQ(listed.out, "NAME    SETTINGS\nalice   (runner defaults)\nops     (runner defaults)\n")
      << listed.err;
  EXPECT_EQ(listed.out.find(join.token), std::string::npos);

  // The running runner picks alice up from the changed file: no SIGHUP, no restart.
  EXPECT_TRUE(e2e::wait_for([&] { return hello(join.token) == grpc::StatusCode::OK; }, 20s))
      << "the runner never accepted the new account";

  // The user's offloadd already runs (it read config.json before alice existed)...
  auto before = sh("docker offload accounts", 60s);
  ASSERT_EQ(before.exit_code, 0) << before.err;
  EXPECT_EQ(before.out.find("alice"), std::string::npos) << before.out;
  // ...joins with the one line (which restarts that offloadd) and starts a session with it.
  auto joined = sh("docker offload accounts add alice " + quoted(join_line));
  ASSERT_EQ(joined.exit_code, 0) << joined.err << joined.out;
  auto start = sh("docker offload start --account alice", 180s);
  ASSERT_EQ(start.exit_code, 0) << start.err << start.out;
  json s = status();
  ASSERT_EQ(s.value("state", ""), "started") << s.dump();
  EXPECT_EQ(s.value("account", ""), "alice") << s.dump();
  EXPECT_EQ(s.value("runner", ""), address) << s.dump();
  const std::string session_id = s.value("sessionId", "");
  ASSERT_FALSE(session_id.empty()) << s.dump();
  auto ps = sh("docker ps -a --format '{{.ID}}'");
  EXPECT_EQ(ps.exit_code, 0) << ps.err;

  // The operator removes alice: her token no longer greets the runner...
  auto removed = operator_runs("accounts remove alice --token-file " + accounts().string());
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  EXPECT_EQ(slurp(accounts()).find("alice"), std::string::npos);
  EXPECT_TRUE(e2e::wait_for(
      [&] { return hello(join.token) == grpc::StatusCode::UNAUTHENTICATED; }, 20s))
      << "the runner still accepts a removed account";
  // ...and her running session goes on: the engine answers through the tunnel.
  s = status();
  EXPECT_EQ(s.value("state", ""), "started") << s.dump();
  EXPECT_EQ(s.value("sessionId", ""), session_id) << s.dump();
  ps = sh("docker ps -a --format '{{.ID}}'");
  EXPECT_EQ(ps.exit_code, 0) << ps.err;
  EXPECT_NE(e2e::run_shell(dir_, "ip netns list", 10s).out.find("offload-" + session_id),
            std::string::npos);
  // The runner never logged the token.
  EXPECT_EQ(slurp(dir_ / "runner.log").find(join.token), std::string::npos);
  EXPECT_NE(slurp(dir_ / "runner.log").find("accounts file"), std::string::npos);
}

}  // namespace
