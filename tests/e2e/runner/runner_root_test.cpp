// The offload-runner program end to end: starts the real binary, talks to it with the daemon's
// RunnerClient, creates and destroys real session engines, and checks that SIGTERM and a
// restart after kill -9 leave nothing behind. Needs root and docker.io; skips otherwise.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"
#include "offload/daemon/runner_client.h"
#include "offload/engine/engine.h"
#include "offload/runner/docker_backend.h"

using namespace offload;
using namespace std::chrono_literals;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
namespace fs = std::filesystem;

namespace {

const fs::path kRunnerBin = OFFLOAD_RUNNER_BIN;

std::string slurp(const fs::path& path) {
  std::string text;
  (void)read_file(path, text);
  return text;
}

bool netns_exists(const std::string& session_id) {
  auto list = run_command({"ip", "netns", "list"});
  EXPECT_TRUE(list.ok()) << list.output;
  return list.output.find("offload-" + session_id) != std::string::npos;
}

// A runner process of ours: started with spawn_process, so we can wait for its exit status.
class RunnerProcess {
 public:
  RunnerProcess() = default;
  RunnerProcess(const RunnerProcess&) = delete;
  ~RunnerProcess() { stop(); }

  void start(const std::vector<std::string>& argv, const fs::path& output,
             std::vector<std::string> env = {}) {
    SpawnOptions options;
    options.log_file = output;
    options.env = std::move(env);
    std::string error;
    pid_ = spawn_process(argv, options, error);
    ASSERT_GT(pid_, 0) << error;
  }

  pid_t pid() const { return pid_; }
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      status_ = status;
      pid_ = 0;
      return false;
    }
    return true;
  }

  // The wait status once the process has exited within `timeout`; nullopt if still running.
  std::optional<int> wait(std::chrono::milliseconds timeout) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (running()) {
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      std::this_thread::sleep_for(50ms);
    }
    return status_;
  }

  void signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }

  // SIGTERM (the runner then destroys its sessions), SIGKILL if it takes too long.
  void stop() {
    if (!running()) return;
    signal(SIGTERM);
    if (!wait(120s)) {
      signal(SIGKILL);
      wait(10s);
    }
  }

 private:
  pid_t pid_ = 0;
  std::optional<int> status_;
};

struct Ready {
  std::string address, fingerprint;
  long pid = 0;
};

class RunnerRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (auto missing = engine::check_prerequisites(); !missing.empty()) GTEST_SKIP() << missing;
    ASSERT_TRUE(fs::exists(kRunnerBin)) << kRunnerBin;
    const std::string tag = random_hex(4);
    dir_ = fs::temp_directory_path() / ("offload-runner-e2e-" + tag);
    run_dir_ = fs::path("/run") / ("offload-test-runner-" + tag);
    ASSERT_FALSE(ensure_private_dir(dir_));
    token_ = random_hex(24);
    ASSERT_FALSE(write_file_atomic(dir_ / "tokens", "# e2e\ne2e:" + token_ + "\n"));
    // Apart from the engine test's 10.251.x and the local runner's 10.213.x, per test process.
    pool_ = "10.252." + std::to_string(::getpid() % 250) + ".0/24";
  }

  void TearDown() override {
    runner_.stop();
    // Whatever a failed assertion left behind is still destroyed.
    if (!dir_.empty()) {
      runner::DockerSessionBackend backend(
          {dir_ / "state", run_dir_, boost::asio::ip::make_network_v4(pool_), {}, {}});
      for (const auto& line : backend.destroy_leftovers())
        std::cout << "[teardown] " << line << "\n";
      if (HasFailure()) std::cout << "[runner log]\n" << slurp(dir_ / "runner.out") << "\n";
      std::error_code ec;
      fs::remove_all(dir_, ec);
      fs::remove_all(run_dir_, ec);
    }
  }

  std::vector<std::string> serve_argv() const {
    std::vector<std::string> argv = {kRunnerBin.string(), "serve",
                                     "--listen",          "127.0.0.1:0",
                                     "--token-file",      (dir_ / "tokens").string(),
                                     "--state-dir",       (dir_ / "state").string(),
                                     "--run-dir",         run_dir_.string(),
                                     "--address-pool",    pool_,
                                     "--ready-file",      (dir_ / "ready.json").string()};
    argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
    return argv;
  }

  // `offload-runner cleanup` for this test's directories.
  CommandResult cleanup() const {
    return run_command({kRunnerBin.string(), "cleanup", "--state-dir", (dir_ / "state").string(),
                        "--run-dir", run_dir_.string(), "--address-pool", pool_});
  }

  // The pid in the session engine's pidfile, 0 if none.
  pid_t dockerd_pid(const std::string& id) const {
    std::string text = slurp(run_dir_ / id.substr(0, 8) / "docker.pid");
    return text.empty() ? 0 : static_cast<pid_t>(std::stol(text));
  }

  // Starts the runner and waits for its ready file (start-up destroys leftovers first, which
  // takes a while when there are some).
  Ready start_runner(std::vector<std::string> env = {}) {
    fs::remove(dir_ / "ready.json");
    runner_.start(serve_argv(), dir_ / "runner.out", std::move(env));
    const auto until = std::chrono::steady_clock::now() + 120s;
    Ready ready;
    while (std::chrono::steady_clock::now() < until) {
      if (!runner_.running()) {
        ADD_FAILURE() << "the runner exited during start-up:\n" << slurp(dir_ / "runner.out");
        return ready;
      }
      auto doc = nlohmann::json::parse(slurp(dir_ / "ready.json"), nullptr, false);
      if (doc.is_object()) {
        ready.address = doc.value("address", "");
        ready.fingerprint = doc.value("fingerprint", "");
        ready.pid = doc.value("pid", 0L);
        return ready;
      }
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "no ready file within 120 s:\n" << slurp(dir_ / "runner.out");
    return ready;
  }

  daemon::RunnerClient client(const Ready& ready, const std::string& token) {
    return daemon::RunnerClient({ready.address, ready.fingerprint, token});
  }

  fs::path record_of(const std::string& id) const {
    return dir_ / "state" / "sessions" / (id + ".json");
  }

  fs::path dir_, run_dir_;
  std::string token_, pool_;
  std::vector<std::string> extra_args_;  // appended to serve's command line
  RunnerProcess runner_;
};

TEST_F(RunnerRootTest, ServesSessionsAndShutsDownCleanlyOnSigterm) {
  const Ready ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  EXPECT_THAT(ready.address, StartsWith("127.0.0.1:"));
  EXPECT_THAT(ready.fingerprint, StartsWith("sha256:"));
  EXPECT_EQ(ready.pid, runner_.pid());
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "ready.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(fs::exists(dir_ / "state" / "tls" / "runner.key"));

  // A wrong account token learns nothing.
  auto stranger = client(ready, random_hex(24));
  try {
    stranger.hello(10s);
    ADD_FAILURE() << "hello with a wrong token succeeded";
  } catch (const daemon::RunnerError& e) {
    EXPECT_EQ(e.code, grpc::StatusCode::UNAUTHENTICATED) << e.what();
  }

  auto runner = client(ready, token_);
  auto hello = runner.hello(10s);
  EXPECT_EQ(hello.protocol(), v1::PROTOCOL_VERSION_1);
  EXPECT_EQ(hello.runner_version(), OFFLOAD_VERSION);

  auto created = runner.create_session("e2e@test", 120s);
  const std::string id = created.session_id();
  ASSERT_TRUE(engine::valid_session_id(id)) << id;
  EXPECT_FALSE(created.session_token().empty());
  EXPECT_EQ(created.info().state(), v1::SESSION_STATE_RUNNING);
  EXPECT_FALSE(created.info().engine_version().empty());
  EXPECT_FALSE(created.info().engine_api_version().empty());
  EXPECT_EQ(created.info().engine_os(), "linux/amd64");
  EXPECT_TRUE(fs::exists(record_of(id)));
  EXPECT_TRUE(netns_exists(id));
  // The token is a secret: never in the log.
  EXPECT_THAT(slurp(dir_ / "runner.out"), Not(HasSubstr(created.session_token())));
  EXPECT_THAT(slurp(dir_ / "runner.out"), Not(HasSubstr(token_)));

  runner.attach(id, created.session_token());
  EXPECT_EQ(runner.list_containers(true).containers_size(), 0);
  EXPECT_EQ(runner.list_images().images_size(), 0);
  EXPECT_EQ(runner.get_session().engine_version(), created.info().engine_version());

  auto destroyed = runner.destroy_session("e2e done");
  std::vector<std::string> removed(destroyed.removed().begin(), destroyed.removed().end());
  EXPECT_THAT(removed, Contains("netns offload-" + id));
  EXPECT_THAT(removed, Contains(StartsWith("dockerd ")));
  EXPECT_FALSE(netns_exists(id));
  EXPECT_FALSE(fs::exists(record_of(id)));
  EXPECT_FALSE(fs::exists(dir_ / "state" / "sessions" / id));
  EXPECT_FALSE(fs::exists(run_dir_ / id.substr(0, 8)));

  // SIGTERM with a live session: the runner destroys it and exits 0.
  auto second = client(ready, token_).create_session("e2e@test", 120s);
  ASSERT_TRUE(netns_exists(second.session_id()));
  runner_.signal(SIGTERM);
  auto status = runner_.wait(120s);
  ASSERT_TRUE(status.has_value()) << "the runner did not exit within 120 s of SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status)) << *status;
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_FALSE(netns_exists(second.session_id()));
  EXPECT_FALSE(fs::exists(record_of(second.session_id())));
  EXPECT_FALSE(fs::exists(dir_ / "ready.json"));
}

// Under systemd (the packaged unit is Type=notify) the runner says READY=1 on $NOTIFY_SOCKET once
// it listens, and STOPPING=1 when it starts to shut down; the engines it spawns never inherit
// the socket (a dockerd would announce itself there).
TEST_F(RunnerRootTest, TellsSystemdItIsReadyOnceItListensAndWhenItStops) {
  const fs::path notify = dir_ / "notify.sock";
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(notify.string().size(), sizeof addr.sun_path);
  std::strcpy(addr.sun_path, notify.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  timeval limit{60, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  auto receive = [&] {
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  };

  const Ready ready = start_runner({"NOTIFY_SOCKET=" + notify.string()});
  ASSERT_FALSE(ready.address.empty());
  const std::string first = receive();
  EXPECT_THAT(first, HasSubstr("READY=1"));
  EXPECT_THAT(first, HasSubstr("STATUS=listening on " + ready.address));
  EXPECT_THAT(first, HasSubstr("MAINPID=" + std::to_string(runner_.pid())));

  // A session's dockerd starts without the socket: nothing but the runner speaks on it.
  auto c = client(ready, token_);
  c.hello(10s);
  auto created = c.create_session("notify", 120s);
  c.attach(created.session_id(), created.session_token());
  c.destroy_session("test over");

  ASSERT_EQ(::kill(runner_.pid(), SIGTERM), 0);
  const std::string second = receive();
  EXPECT_THAT(second, HasSubstr("STOPPING=1"));
  EXPECT_THAT(second, Not(HasSubstr("READY=1")));
  auto status = runner_.wait(120s);
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  ::close(fd);
}

TEST_F(RunnerRootTest, RestartAfterKillNineDestroysTheLeftoverEngine) {
  Ready ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  auto created = client(ready, token_).create_session("e2e@test", 120s);
  const std::string id = created.session_id();
  ASSERT_TRUE(netns_exists(id));

  runner_.signal(SIGKILL);
  ASSERT_TRUE(runner_.wait(10s).has_value());
  // The engine outlives its runner: nobody tore it down.
  EXPECT_TRUE(netns_exists(id));
  EXPECT_TRUE(fs::exists(record_of(id)));
  EXPECT_TRUE(fs::exists(run_dir_ / id.substr(0, 8) / "docker.sock"));

  ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  EXPECT_FALSE(netns_exists(id));
  EXPECT_FALSE(fs::exists(record_of(id)));
  EXPECT_FALSE(fs::exists(dir_ / "state" / "sessions" / id));
  EXPECT_FALSE(fs::exists(run_dir_ / id.substr(0, 8)));
  EXPECT_THAT(slurp(dir_ / "runner.out"),
              HasSubstr("session " + id + ": running engine destroyed"));

  // The old session is gone for its client too, and the runner serves new ones.
  auto old = client(ready, token_);
  old.attach(id, created.session_token());
  EXPECT_THROW(old.get_session(), daemon::RunnerError);
  EXPECT_EQ(client(ready, token_).hello(10s).protocol(), v1::PROTOCOL_VERSION_1);
}

// serve --live-restore (the packaged unit's setting): SIGTERM leaves the session's engine running
// and the next runner process takes it over, token and all; the client goes on where it was.
TEST_F(RunnerRootTest, LiveRestoreKeepsASessionAcrossARestart) {
  extra_args_ = {"--live-restore"};
  Ready ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  auto created = client(ready, token_).create_session("e2e@test", 120s);
  const std::string id = created.session_id();
  const pid_t dockerd = dockerd_pid(id);
  ASSERT_GT(dockerd, 0);
  auto record = nlohmann::json::parse(slurp(record_of(id)), nullptr, false);
  ASSERT_TRUE(record.contains("session")) << record.dump();
  // The record keeps the token's hash, never the token.
  EXPECT_THAT(slurp(record_of(id)), Not(HasSubstr(created.session_token())));

  runner_.signal(SIGTERM);
  auto status = runner_.wait(60s);
  ASSERT_TRUE(status.has_value()) << "the runner did not exit within 60 s of SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << *status;
  EXPECT_THAT(slurp(dir_ / "runner.out"), HasSubstr("leaving 1 sessions running"));
  // Nothing of the session was touched.
  EXPECT_TRUE(netns_exists(id));
  EXPECT_TRUE(process_alive(dockerd));
  EXPECT_TRUE(fs::exists(record_of(id)));

  ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  EXPECT_THAT(slurp(dir_ / "runner.out"), HasSubstr("session " + id + ": running engine adopted"));
  auto old = client(ready, token_);
  old.attach(id, created.session_token());
  auto info = old.get_session();
  EXPECT_EQ(info.state(), v1::SESSION_STATE_RUNNING);
  EXPECT_EQ(info.created_unix_ms(), created.info().created_unix_ms());
  EXPECT_EQ(info.engine_version(), created.info().engine_version());
  EXPECT_EQ(old.list_containers(true).containers_size(), 0);  // the engine answers through it
  EXPECT_EQ(dockerd_pid(id), dockerd);                      // the same dockerd
  // A wrong token is still refused.
  auto forger = client(ready, token_);
  forger.attach(id, random_hex(32));
  EXPECT_THROW(forger.get_session(), daemon::RunnerError);

  // It ends like any other session, and leaves nothing.
  old.destroy_session("e2e done");
  EXPECT_FALSE(netns_exists(id));
  EXPECT_FALSE(process_alive(dockerd));
  EXPECT_FALSE(fs::exists(record_of(id)));
  EXPECT_FALSE(fs::exists(run_dir_ / id.substr(0, 8)));
}

// An engine that died while no runner watched it (a crash, the OOM killer, a reboot) is not
// restored: its leftovers are destroyed and its client learns the session is gone.
TEST_F(RunnerRootTest, LiveRestoreDestroysAnEngineThatDiedWhileTheRunnerWasDown) {
  extra_args_ = {"--live-restore"};
  Ready ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  auto created = client(ready, token_).create_session("e2e@test", 120s);
  const std::string id = created.session_id();
  runner_.signal(SIGTERM);
  ASSERT_TRUE(runner_.wait(60s).has_value());
  const pid_t dockerd = dockerd_pid(id);
  ASSERT_GT(dockerd, 0);
  ASSERT_EQ(::kill(dockerd, SIGKILL), 0);
  for (int i = 0; i < 200 && process_alive(dockerd); ++i) std::this_thread::sleep_for(50ms);

  ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  EXPECT_THAT(slurp(dir_ / "runner.out"), HasSubstr("not restored: its dockerd is not running"));
  EXPECT_FALSE(netns_exists(id));
  EXPECT_FALSE(fs::exists(record_of(id)));
  auto old = client(ready, token_);
  old.attach(id, created.session_token());
  try {
    old.get_session();
    ADD_FAILURE() << "the dead session is still served";
  } catch (const daemon::RunnerError& e) {
    EXPECT_EQ(e.code, grpc::StatusCode::UNAUTHENTICATED) << e.what();
  }
}

// What the package's removal runs after stopping a --live-restore runner: every engine left
// running is destroyed. It refuses while a runner uses the state directory, and so does a
// second runner.
TEST_F(RunnerRootTest, CleanupDestroysWhatALiveRestoreStopLeftAndOneRunnerOwnsAStateDir) {
  extra_args_ = {"--live-restore"};
  Ready ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  auto created = client(ready, token_).create_session("e2e@test", 120s);
  const std::string id = created.session_id();

  auto refused = cleanup();
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.output, HasSubstr("another offload-runner (pid " +
                                        std::to_string(runner_.pid()) + ") is using --state-dir"));
  RunnerProcess second;
  auto argv = serve_argv();
  second.start(argv, dir_ / "second.out");
  auto second_status = second.wait(30s);
  ASSERT_TRUE(second_status.has_value());
  EXPECT_EQ(WEXITSTATUS(*second_status), 1);
  EXPECT_THAT(slurp(dir_ / "second.out"), HasSubstr("is using --state-dir"));
  EXPECT_TRUE(netns_exists(id));  // the refused runner touched nothing

  runner_.signal(SIGTERM);
  ASSERT_TRUE(runner_.wait(60s).has_value());
  ASSERT_TRUE(netns_exists(id));
  const pid_t dockerd = dockerd_pid(id);
  auto done = cleanup();
  EXPECT_EQ(done.exit_code, 0) << done.output;
  EXPECT_THAT(done.output, HasSubstr("session " + id + ": running engine destroyed"));
  EXPECT_FALSE(netns_exists(id));
  EXPECT_FALSE(process_alive(dockerd));
  EXPECT_FALSE(fs::exists(record_of(id)));
  EXPECT_FALSE(fs::exists(run_dir_ / id.substr(0, 8)));
  auto again = cleanup();
  EXPECT_EQ(again.exit_code, 0) << again.output;
}

TEST_F(RunnerRootTest, CorruptRecordDoesNotStopTheRunner) {
  const std::string id = random_hex(16);
  const fs::path sessions = dir_ / "state" / "sessions";
  ASSERT_FALSE(ensure_private_dir(sessions / id / "docker"));
  ASSERT_FALSE(write_file_atomic(sessions / (id + ".json"), "{\"session_id\": \"dead"));
  const Ready ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  EXPECT_FALSE(fs::exists(sessions / (id + ".json")));
  EXPECT_FALSE(fs::exists(sessions / id));
  EXPECT_THAT(slurp(dir_ / "runner.out"), HasSubstr("not a JSON object"));
}

// A runner killed while sessions had their disk quota mounted: the next start-up unmounts the
// image, detaches its loop device (one set up without autoclear too) and deletes it, also when
// the image is all that is left of a session.
TEST_F(RunnerRootTest, LeftoverSessionDisksAreUnmountedDetachedAndRemovedAtStartup) {
  const fs::path sessions = dir_ / "state" / "sessions";
  const std::string mounted = random_hex(16), lone = random_hex(16);
  std::vector<fs::path> images;
  for (const auto& id : {mounted, lone}) {
    const fs::path image = sessions / (id + ".disk");
    ASSERT_FALSE(ensure_private_dir(sessions));
    auto made = run_command({"truncate", "-s", "64M", image.string()});
    ASSERT_TRUE(made.ok()) << made.output;
    auto mkfs = run_command(engine::mkfs_command(image));
    ASSERT_TRUE(mkfs.ok()) << mkfs.output;
    // losetup, unlike mount -o loop, leaves autoclear off: the device outlives the unmount.
    auto loop = run_command({"losetup", "-f", "--show", image.string()});
    ASSERT_TRUE(loop.ok()) << loop.output;
    images.push_back(image);
    if (id == mounted) {
      ASSERT_FALSE(ensure_private_dir(sessions / id));
      const std::string device = loop.output.substr(0, loop.output.find('\n'));
      auto mount = run_command({"mount", device, (sessions / id).string()});
      ASSERT_TRUE(mount.ok()) << mount.output;
    }
  }
  const Ready ready = start_runner();
  ASSERT_FALSE(ready.address.empty());
  // losetup -a: a device bound to a deleted image shows it as "<image> (deleted)".
  const std::string loops = run_command({"losetup", "-a"}).output;
  for (const auto& image : images) {
    EXPECT_FALSE(fs::exists(image)) << image;
    EXPECT_EQ(loops.find(image.string()), std::string::npos) << loops;
  }
  EXPECT_FALSE(fs::exists(sessions / mounted));
  EXPECT_EQ(slurp("/proc/self/mountinfo").find(mounted), std::string::npos);
  EXPECT_THAT(slurp(dir_ / "runner.out"), HasSubstr("session " + lone));
}

TEST_F(RunnerRootTest, StartupErrorsAreOneLineAndExitOne) {
  auto args = serve_argv();
  // The log goes elsewhere, so the output holds only what the operator sees on a failed start.
  args.push_back("--log-file");
  args.push_back((dir_ / "startup.log").string());
  auto with = [&](const std::string& flag, const std::string& value) {
    auto a = args;
    auto it = std::find(a.begin(), a.end(), flag);
    if (it == a.end()) {
      a.push_back(flag);
      a.push_back(value);
    } else {
      *(it + 1) = value;
    }
    return a;
  };
  struct Case {
    std::vector<std::string> argv;
    std::string expected;
  };
  const fs::path bad_tokens = dir_ / "bad-tokens";
  ASSERT_FALSE(write_file_atomic(bad_tokens, "e2e:" + token_.substr(0, 8) + "\n"));
  for (const auto& c : std::vector<Case>{
           {with("--token-file", (dir_ / "missing").string()), "cannot read --token-file"},
           {with("--token-file", bad_tokens.string()), "shorter than 16 characters"},
           {with("--listen", "127.0.0.1"), "is not HOST:PORT"},
           {with("--listen", "127.0.0.1:99999"), "the port must be 0-65535"},
           {with("--listen", "192.0.2.1:0"), "cannot listen on 192.0.2.1:0"},
           {with("--address-pool", "10.0.0.0/31"), "smaller than a /30"},
           {with("--log-level", "loud"), "unknown log level"},
           {with("--tls-cert", (dir_ / "missing.crt").string()), "--tls-key"},
           {with("--session-disk", "lots"), "--session-disk \"lots\" is not a size"},
           {with("--session-disk", "1MiB"), "--session-disk: a session disk of 1MiB is too small"},
       }) {
    auto result = run_command(c.argv, 60s);
    EXPECT_EQ(result.exit_code, 1) << c.expected << ": " << result.output << result.error;
    EXPECT_THAT(result.output, HasSubstr(c.expected));
    EXPECT_THAT(result.output, Not(HasSubstr(token_.substr(0, 8))));
    EXPECT_EQ(result.output.find('\n'), result.output.size() - 1) << result.output;
  }
  auto help = run_command({kRunnerBin.string(), "serve", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag :
       {"--listen", "--token-file", "--tls-dir", "--tls-cert", "--tls-key", "--state-dir",
        "--run-dir", "--address-pool", "--ready-file", "--log-file", "--log-level",
        "--session-disk"})
    EXPECT_THAT(help.output, HasSubstr(flag));
  auto version = run_command({kRunnerBin.string(), "version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.output, std::string("offload-runner ") + OFFLOAD_VERSION + "\n");
}

}  // namespace
