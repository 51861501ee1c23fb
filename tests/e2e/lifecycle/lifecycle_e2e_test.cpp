// End to end: when an offload session ends on its own and what keeps it alive (issue 4). The
// real docker CLI drives `docker offload` against real engines; the timeouts are seconds, set
// through each test's own $DOCKER_CONFIG/offload/config.json.
//
// Every test has a DOCKER_CONFIG of its own (so its own offloadd, local runner and address pool:
// other suites may run on this machine at the same time). Waits poll with an upper bound; no
// assertion is about how long something took.
#include <gtest/gtest.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "offload/common/paths.h"
#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"
#include "e2e_support.h"

namespace offload::e2e {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kImage = "offload-life/busybox:latest";

fs::path g_dir;  // everything of this run
std::string g_skip;

// Runs a shell command line; stdout and stderr apart.
Shell sh(const std::string& command, std::chrono::milliseconds timeout = 120s) {
  return run_shell(g_dir, command, timeout);
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string tail(const fs::path& file, std::size_t lines) {
  std::string text;
  if (read_file(file, text)) return "(no " + file.string() + ")";
  std::size_t pos = text.size();
  for (std::size_t n = 0; n <= lines && pos != std::string::npos && pos > 0; ++n)
    pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

std::string http_get(int port) {
  return sh("curl -s --max-time 3 http://127.0.0.1:" + std::to_string(port) + "/", 10s).out;
}

// A web server answering `body` on port 80 of the container.
std::string web_server(const std::string& body) {
  std::string dir = "/www-" + body;
  return " sh -c 'mkdir -p " + dir + " && echo " + body + " > " + dir +
         "/index.html && exec httpd -f -p 80 -h " + dir + "'";
}

// What of a session exists on the runner host right now, one line per kind of resource.
struct Footprint {
  std::vector<std::string> present;
  std::vector<std::string> absent;
};

Footprint footprint(const std::string& session_id, const fs::path& sessions_dir,
                    const fs::path& session_run_dir) {
  Footprint f;
  auto note = [&](bool there, const std::string& what) {
    (there ? f.present : f.absent).push_back(what);
  };
  note(sh("ip netns list").out.find("offload-" + session_id) != std::string::npos,
       "netns offload-" + session_id);
  note(sh("ip -o link show").out.find("ofl" + session_id.substr(0, 8)) != std::string::npos,
       "links ofl" + session_id.substr(0, 8));
  note(sh("iptables-save").out.find("offload:" + session_id) != std::string::npos,
       "iptables rules offload:" + session_id);
  note(fs::exists(sessions_dir / session_id), "session dir " + (sessions_dir / session_id).string());
  note(fs::exists(session_run_dir), "run dir " + session_run_dir.string());
  // A remapped dockerd's "<name>.<uid>.<gid>" copy of the run dir's path: only ever a leftover.
  const std::string id8 = session_id.substr(0, 8);
  std::error_code ec;
  fs::recursive_directory_iterator it("/run", fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename().string().rfind(id8 + ".", 0) == 0)
      f.present.push_back("remapped copy of the run dir " + it->path().string());
    if (it.depth() >= 3 || it->is_symlink()) it.disable_recursion_pending();
  }
  auto procs = processes_mentioning(session_run_dir.string());
  std::string list;
  for (auto& p : procs) list += "\n    " + p;
  note(!procs.empty(), "processes mentioning " + session_run_dir.string() + list);
  return f;
}

std::string lines(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v) out += "  " + s + "\n";
  return out;
}

// One user's docker configuration directory: the plugin, offload's config, its daemon.
class DockerConfig {
 public:
  DockerConfig(fs::path dir, const json& offload_config) : dir_(std::move(dir)) {
    make_docker_config(dir_, OFFLOAD_BIN_DIR, "{\"auths\": {}}\n", offload_config.dump(2) + "\n");
  }

  Shell run(const std::string& command, std::chrono::milliseconds timeout = 120s) const {
    return sh("export DOCKER_CONFIG=" + quoted(dir_.string()) + "; " + command, timeout);
  }

  // `docker offload status --format json`; its stderr (notices) goes to `err` when given.
  json status(std::string* err = nullptr) const {
    auto s = run("docker offload status --format json", 30s);
    if (err) *err += s.err;
    auto j = json::parse(s.out, nullptr, false);
    return j.is_object() ? j : json::object();
  }

  static std::string state(const json& status) { return status.value("state", std::string()); }

  // Polls the status until `done` holds for it or `limit` passes; returns the last status.
  json wait_status(const std::function<bool(const json&)>& done, std::chrono::seconds limit,
                   std::string* err = nullptr) const {
    json last;
    wait_for(
        [&] {
          last = status(err);
          return done(last);
        },
        limit, 250ms);
    return last;
  }

  json wait_ended(std::chrono::seconds limit) const {
    return wait_status([](const json& s) { return state(s) != "started"; }, limit);
  }

  void import_image(const fs::path& rootfs) const {
    auto r = run("tar -C " + quoted(rootfs.string()) + " -c . | docker import - " + kImage, 120s);
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  }

  pid_t daemon_pid() const {
    std::string pid;
    if (read_file(offload_dir() / "offloadd.pid", pid) || trim(pid).empty()) return -1;
    return std::stoi(trim(pid));
  }

  // Where the local runner keeps the session's engine: its records under the runner's state
  // dir, its sockets and exec root under /run (keyed by this directory, see local_provider).
  fs::path local_sessions_dir() const {
    return StatePaths(dir_).local_runner_data_dir / "sessions";
  }
  fs::path local_run_dir(const std::string& session_id) const {
    return StatePaths(dir_).local_runner_run_dir / session_id.substr(0, 8);
  }

  const fs::path& dir() const { return dir_; }
  fs::path offload_dir() const { return dir_ / "offload"; }

  void dump_logs(std::ostream& out) const {
    out << "---- " << (offload_dir() / "offloadd.log").string() << " (tail)\n"
        << tail(offload_dir() / "offloadd.log", 80) << "\n---- "
        << (offload_dir() / "local-runner" / "runner.log").string() << " (tail)\n"
        << tail(offload_dir() / "local-runner" / "runner.log", 80) << "\n";
  }

  // Whatever a test left: the session (idempotent), then the daemon.
  void clean_up() const {
    run("docker offload stop --force", 180s);
    if (pid_t pid = daemon_pid(); pid > 0) terminate_process(pid, 10s);
  }

 private:
  fs::path dir_;
};

json config_with(const std::string& pool, const json& extra = json::object()) {
  json c = {{"version", 1}, {"logLevel", "debug"}, {"local", {{"addressPool", pool}}}};
  for (auto& [k, v] : extra.items()) c[k] = v;
  return c;
}

#define EXPECT_THAT_LOG(file, text)                                                     \
  do {                                                                                 \
    std::string _log;                                                                  \
    (void)read_file((file), _log);                                                     \
    EXPECT_NE(_log.find(text), std::string::npos) << "no \"" << (text) << "\" in " << (file); \
  } while (0)

#define ASSERT_SH_OK(shell)                          \
  do {                                               \
    auto _s = (shell);                               \
    ASSERT_EQ(_s.exit_code, 0) << _s.err << _s.out;  \
  } while (0)

class LifecycleEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // dockerd lives in /usr/sbin, which PATH may lack.
    bool dockerd = find_program("dockerd") || fs::exists("/usr/sbin/dockerd");
    if (::geteuid() != 0 || !dockerd || !fs::exists("/usr/bin/busybox")) {
      g_skip = "needs root, dockerd and busybox-static";
      return;
    }
    ::unsetenv("DOCKER_HOST");
    ::unsetenv("DOCKER_CONTEXT");
    g_dir = fs::path("/tmp") / ("offload-life-" + random_hex(4));
    fs::create_directories(g_dir);
    make_busybox_rootfs(g_dir / "rootfs", OFFLOAD_ECHO_SERVER);
  }

  void TearDown() override {
    if (!g_skip.empty()) return;
    if (!::testing::UnitTest::GetInstance()->Failed()) fs::remove_all(g_dir);
    else std::cout << "kept " << g_dir << " for inspection\n";
  }
};

class Lifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!g_skip.empty()) GTEST_SKIP() << g_skip;
  }

  void TearDown() override {
    if (HasFailure())
      for (auto& c : configs_) c->dump_logs(std::cout);
    for (auto& c : configs_) c->clean_up();
  }

  const DockerConfig& make_config(const std::string& name, const json& offload_config) {
    configs_.push_back(std::make_unique<DockerConfig>(g_dir / name, offload_config));
    return *configs_.back();
  }

  static fs::path rootfs() { return g_dir / "rootfs"; }

  // Starts a session and imports the test image into it.
  static void start_with_image(const DockerConfig& c) {
    ASSERT_SH_OK(c.run("docker offload start", 180s));
    ASSERT_EQ(trim(c.run("docker context show").out), "docker-offload");
    c.import_image(rootfs());
  }

  std::vector<std::unique_ptr<DockerConfig>> configs_;
};

// ---- 1. An idle session ends and takes everything with it -------------------------------

TEST_F(Lifecycle, IdleEndDestroysEverythingAndStartGivesAFreshEnvironment) {
  const auto& c = make_config("idle", config_with("10.233.0.0/24", {{"idleTimeout", "6s"}}));
  // A context of the user's own, to be restored by stop.
  ASSERT_SH_OK(c.run("docker context create life-prev --docker host=unix:///run/offload-life-none.sock"
                     " && docker context use life-prev"));
  ASSERT_NO_FATAL_FAILURE(start_with_image(c));
  auto run = c.run("docker run --rm " + kImage + " echo hello");
  ASSERT_SH_OK(run);
  EXPECT_EQ(run.out, "hello\n");

  json status = c.status();
  ASSERT_EQ(DockerConfig::state(status), "started") << status.dump();
  const std::string id = status.value("sessionId", std::string());
  ASSERT_EQ(id.size(), 32u) << status.dump();
  const fs::path run_dir = c.local_run_dir(id);
  // The probes find the live session's resources: their absence later means something.
  auto live = footprint(id, c.local_sessions_dir(), run_dir);
  ASSERT_TRUE(live.absent.empty()) << "not found while the session runs:\n" << lines(live.absent);

  status = c.wait_ended(90s);
  ASSERT_EQ(DockerConfig::state(status), "ended") << status.dump();
  EXPECT_NE(status.value("endedReason", std::string()).find("idle"), std::string::npos)
      << status.dump();

  // Docker commands through the context get a clear JSON error.
  auto ps = c.run("docker ps");
  EXPECT_NE(ps.exit_code, 0) << ps.out;
  EXPECT_NE(ps.err.find("docker offload start"), std::string::npos) << ps.err;
  auto raw = c.run("curl -s -w '\\n%{http_code}' --unix-socket " +
                   quoted((c.offload_dir() / "docker.sock").string()) +
                   " http://docker/v1.41/containers/json");
  auto body_end = raw.out.rfind('\n');
  ASSERT_NE(body_end, std::string::npos) << raw.out << raw.err;
  EXPECT_EQ(raw.out.substr(body_end + 1), "503") << raw.out;
  auto body = json::parse(raw.out.substr(0, body_end), nullptr, false);
  ASSERT_TRUE(body.is_object()) << raw.out;
  EXPECT_NE(body.value("message", std::string()).find("docker offload start"), std::string::npos)
      << raw.out;

  // Nothing of the session is left on the runner host.
  auto left = footprint(id, c.local_sessions_dir(), run_dir);
  EXPECT_TRUE(left.present.empty()) << "left after the idle end:\n" << lines(left.present);

  ASSERT_SH_OK(c.run("docker offload stop --force", 180s));
  EXPECT_EQ(trim(c.run("docker context show").out), "life-prev");

  // A new session is a fresh, empty engine.
  ASSERT_SH_OK(c.run("docker offload start", 180s));
  json fresh = c.status();
  EXPECT_EQ(DockerConfig::state(fresh), "started") << fresh.dump();
  EXPECT_NE(fresh.value("sessionId", std::string()), id);
  auto images = c.run("docker images -q");
  ASSERT_SH_OK(images);
  EXPECT_EQ(trim(images.out), "") << "images of the ended session: " << images.out;
  auto all = c.run("docker ps -aq");
  EXPECT_EQ(trim(all.out), "") << all.out;
  ASSERT_SH_OK(c.run("docker offload stop --force", 180s));
  EXPECT_EQ(trim(c.run("docker context show").out), "life-prev");
  // Stop also ends the local runner.
  auto runners = processes_mentioning((c.offload_dir() / "local-runner").string());
  EXPECT_TRUE(runners.empty()) << lines(runners);
  // And leaves none of its directories behind (its lock file included).
  for (const auto& dir : {StatePaths(c.dir()).local_runner_data_dir,
                          StatePaths(c.dir()).local_runner_run_dir})
    EXPECT_FALSE(fs::exists(dir)) << dir << " is left after stop";
}

// ---- 2. The warning before the end ------------------------------------------------------

// The idle-warning notices in a command's stderr (not the "ended" notice, which also says idle).
std::vector<std::string> idle_warnings(const std::string& err) {
  std::vector<std::string> found;
  std::istringstream in(err);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("WARNING: ", 0) == 0 && line.find("idle") != std::string::npos &&
        line.find("ended") == std::string::npos)
      found.push_back(line);
  return found;
}

TEST_F(Lifecycle, AWarningComesBeforeTheEndAndIsPrintedOnce) {
  // The warning leads the end by half the idle timeout at most: 5 s here.
  const auto& c = make_config("warn", config_with("10.234.0.0/24", {{"idleTimeout", "10s"}}));
  ASSERT_SH_OK(c.run("docker offload start", 180s));

  // Each status command prints pending notices first, so keep every command's stderr apart.
  std::vector<std::string> errs;
  json seen;
  std::size_t first_warning = 0;
  bool warned = wait_for(
      [&] {
        std::string err;
        seen = c.status(&err);
        errs.push_back(err);
        return seen.value("idleWarning", false) || DockerConfig::state(seen) != "started";
      },
      60s, 100ms);
  ASSERT_TRUE(warned && seen.value("idleWarning", false))
      << "no status showed idleWarning before the end; last status: " << seen.dump();
  first_warning = errs.size() - 1;
  EXPECT_EQ(DockerConfig::state(seen), "started") << seen.dump();

  // The next docker offload command (or the status that showed it) prints it, once.
  auto next = c.run("docker offload accounts");
  errs.push_back(next.err);
  std::size_t printed = 0, where = 0;
  for (std::size_t i = 0; i < errs.size(); ++i) {
    auto w = idle_warnings(errs[i]);
    if (!w.empty()) where = i;
    printed += w.size();
  }
  EXPECT_EQ(printed, 1u) << "stderr of the commands:\n" << lines(errs);
  EXPECT_GE(where, first_warning) << "printed before status showed the warning";
  auto again = c.run("docker offload version");
  EXPECT_TRUE(idle_warnings(again.err).empty()) << again.err;

  // The daemon logged it too.
  std::string log;
  read_file(c.offload_dir() / "offloadd.log", log);
  EXPECT_NE(log.find("is idle and ends in"), std::string::npos);

  json ended = c.wait_ended(60s);
  EXPECT_EQ(DockerConfig::state(ended), "ended") << ended.dump();
}

// ---- 3. and 4. What holds a session -------------------------------------------------------

TEST_F(Lifecycle, AnAttachedRunHoldsTheSession) {
  const auto& c = make_config("attached", config_with("10.236.0.0/24", {{"idleTimeout", "5s"}}));
  ASSERT_NO_FATAL_FAILURE(start_with_image(c));
  // Three idle timeouts long, attached the whole time.
  auto run = c.run("docker run --rm " + kImage + " sh -c 'sleep 15; echo slept'", 120s);
  ASSERT_SH_OK(run);
  EXPECT_EQ(run.out, "slept\n");
  json status = c.status();
  EXPECT_EQ(DockerConfig::state(status), "started") << "the session ended under a running "
                                                       "attached container: " << status.dump();
  // Afterwards nothing holds it any more.
  status = c.wait_ended(60s);
  EXPECT_EQ(DockerConfig::state(status), "ended") << status.dump();
  EXPECT_NE(status.value("endedReason", std::string()).find("idle"), std::string::npos)
      << status.dump();
}

TEST_F(Lifecycle, ARunningDetachedContainerHoldsTheSessionUntilRemoved) {
  const auto& c = make_config("detached", config_with("10.237.0.0/24", {{"idleTimeout", "5s"}}));
  ASSERT_NO_FATAL_FAILURE(start_with_image(c));
  ASSERT_SH_OK(c.run("docker run -d --name holder " + kImage + " sleep 60"));

  // Watch it for well over two idle timeouts: it stays started, and active.
  bool seen_active = false;
  json status;
  auto until = std::chrono::steady_clock::now() + 14s;
  while (std::chrono::steady_clock::now() < until) {
    status = c.status();
    ASSERT_EQ(DockerConfig::state(status), "started")
        << "the session ended while a container ran: " << status.dump();
    seen_active = seen_active || status.value("activity", std::string()) == "active";
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_TRUE(seen_active) << status.dump();
  auto ps = c.run("docker ps --format '{{.Names}}'");
  EXPECT_EQ(ps.out, "holder\n") << ps.err;

  ASSERT_SH_OK(c.run("docker rm -f holder"));
  status = c.wait_ended(60s);
  EXPECT_EQ(DockerConfig::state(status), "ended") << status.dump();
  EXPECT_NE(status.value("endedReason", std::string()).find("idle"), std::string::npos)
      << status.dump();
}

// ---- 5. kill -9 of the daemon ---------------------------------------------------------------

TEST_F(Lifecycle, TheDaemonRecoversAfterKill9AndTheSessionLivesOn) {
  const auto& c = make_config("recover", config_with("10.238.0.0/24", {{"idleTimeout", "5m"}}));
  ASSERT_NO_FATAL_FAILURE(start_with_image(c));
  ASSERT_SH_OK(c.run("docker run -d --name web -p 18191:80 " + kImage + web_server("life5")));
  ASSERT_TRUE(wait_for([] { return http_get(18191) == "life5\n"; }, 20s))
      << "the forwarded port never answered before the kill";
  const std::string id = c.status().value("sessionId", std::string());
  ASSERT_FALSE(id.empty());

  pid_t daemon = c.daemon_pid();
  ASSERT_GT(daemon, 0);
  ASSERT_EQ(::kill(daemon, SIGKILL), 0);
  ASSERT_TRUE(wait_for([&] { return !process_alive(daemon); }, 10s));
  // With no daemon, the container still runs: ask the session engine itself, on the runner host.
  EXPECT_FALSE(processes_mentioning("httpd -f -p 80 -h /www-life5").empty());
  auto direct = sh("docker -H unix://" + (c.local_run_dir(id) / "docker.sock").string() +
                   " ps --format '{{.Names}} {{.State}}'");
  EXPECT_EQ(direct.out, "web running\n") << direct.err;

  // The next command starts a new daemon, which has re-attached from state.json by the time it
  // answers.
  json status = c.status();
  EXPECT_EQ(DockerConfig::state(status), "started") << status.dump();
  EXPECT_EQ(status.value("sessionId", std::string()), id) << status.dump();
  pid_t again = c.daemon_pid();
  EXPECT_GT(again, 0);
  EXPECT_NE(again, daemon);

  auto ps = c.run("docker ps --format '{{.Names}} {{.Status}}'");
  ASSERT_SH_OK(ps);
  EXPECT_EQ(ps.out.rfind("web Up", 0), 0u) << ps.out;
  EXPECT_TRUE(wait_for([] { return http_get(18191) == "life5\n"; }, 20s))
      << "the forwarded port did not come back; status: " << c.status().dump();
}

// ---- 6. Two clients on one runner -----------------------------------------------------------

class OwnRunner {
 public:
  ~OwnRunner() { stop(); }

  // `extra` is appended to serve's command line; `listen` stays the same across restart().
  void start(const fs::path& dir, const std::map<std::string, std::string>& tokens,
             std::vector<std::string> extra = {}, std::string listen = "127.0.0.1:0") {
    dir_ = dir;
    fs::create_directories(dir_);
    std::string token_lines;
    for (auto& [name, token] : tokens) token_lines += name + ":" + token + "\n";
    ASSERT_FALSE(write_file_atomic(dir_ / "tokens", token_lines, fs::perms(0600)));
    run_dir_ = "/run/offload-e2e-life-" + random_hex(4);
    extra_ = std::move(extra);
    listen_ = std::move(listen);
    launch();
  }

  // SIGTERM and the same command line again (what `systemctl restart` does).
  void restart() {
    ASSERT_EQ(terminate(60s), 0) << tail(log(), 40);
    launch();
  }

  void launch() {
    fs::remove(dir_ / "ready.json");
    SpawnOptions o;
    o.log_file = dir_ / "runner.stderr.log";
    std::string error;
    std::vector<std::string> argv = {
        (fs::path(OFFLOAD_BIN_DIR) / "offload-runner").string(), "serve", "--listen", listen_,
        "--token-file", (dir_ / "tokens").string(), "--state-dir", state_dir().string(),
        "--run-dir", run_dir_.string(), "--address-pool", "10.235.0.0/24", "--ready-file",
        (dir_ / "ready.json").string(), "--log-file", (dir_ / "runner.log").string(),
        "--log-level", "debug"};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    pid_ = spawn_process(argv, o, error);
    ASSERT_GT(pid_, 0) << error;
    json ready;
    ASSERT_TRUE(wait_for(
        [&] {
          std::string text;
          if (read_file(dir_ / "ready.json", text)) return false;
          ready = json::parse(text, nullptr, false);
          return ready.is_object() && ready.contains("fingerprint");
        },
        60s))
        << "the runner never became ready:\n"
        << tail(dir_ / "runner.stderr.log", 20) << tail(dir_ / "runner.log", 20);
    address_ = ready["address"].get<std::string>();
    fingerprint_ = ready["fingerprint"].get<std::string>();
  }

  // SIGTERM; the exit status (-1: killed, or it did not exit within `limit`).
  int terminate(std::chrono::seconds limit) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    bool exited = wait_for([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, limit);
    if (!exited) return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  void stop() {
    if (pid_ > 0) terminate_process(pid_, 60s);
    pid_ = -1;
    if (!run_dir_.empty()) {
      std::error_code ec;
      fs::remove_all(run_dir_, ec);
    }
  }

  const std::string& address() const { return address_; }
  const std::string& fingerprint() const { return fingerprint_; }
  fs::path state_dir() const { return dir_ / "state"; }
  const fs::path& run_dir() const { return run_dir_; }
  fs::path log() const { return dir_ / "runner.log"; }

 private:
  fs::path dir_;
  fs::path run_dir_;
  std::vector<std::string> extra_;
  std::string listen_;
  pid_t pid_ = -1;
  std::string address_, fingerprint_;
};

// A loopback port nothing listens on right now.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

TEST_F(Lifecycle, TwoClientsHoldSessionsOnOneRunnerWithoutInterfering) {
  const std::map<std::string, std::string> tokens = {{"alice", random_hex(16)},
                                                     {"bob", random_hex(16)}};
  OwnRunner runner;
  ASSERT_NO_FATAL_FAILURE(runner.start(g_dir / "shared-runner", tokens));

  std::vector<const DockerConfig*> clients;
  int n = 0;
  for (auto& [name, token] : tokens) {
    json remote = {{"type", "remote"},
                   {"address", runner.address()},
                   {"tokenFile", name + ".token"},
                   {"fingerprint", runner.fingerprint()}};
    json config = config_with(n == 0 ? "10.239.0.0/24" : "10.240.0.0/24",
                              {{"defaultAccount", "shared"},
                               {"accounts", {{"shared", remote}}}});
    const auto& c = make_config("client-" + name, config);
    ASSERT_FALSE(write_file_atomic(c.offload_dir() / (name + ".token"), token + "\n",
                                   fs::perms(0600)));
    clients.push_back(&c);
    ++n;
  }

  // Both start at once.
  std::vector<std::future<Shell>> starts;
  for (auto* c : clients)
    starts.push_back(std::async(std::launch::async, [c] {
      return c->run("docker offload start", 180s);
    }));
  for (auto& s : starts) {
    auto r = s.get();
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  }
  std::vector<std::string> ids;
  for (auto* c : clients) {
    json s = c->status();
    ASSERT_EQ(DockerConfig::state(s), "started") << s.dump();
    EXPECT_EQ(s.value("runner", std::string()), runner.address()) << s.dump();
    ids.push_back(s.value("sessionId", std::string()));
    c->import_image(rootfs());
  }
  ASSERT_EQ(ids.size(), 2u);
  ASSERT_NE(ids[0], ids[1]);

  // The same container port, published on different host ports, one per session.
  const int ports[] = {18181, 18182};
  const std::string bodies[] = {"from-alice", "from-bob"};
  for (int i = 0; i < 2; ++i)
    ASSERT_SH_OK(clients[i]->run("docker run -d --name web-" + std::to_string(i) + " -p " +
                                 std::to_string(ports[i]) + ":80 " + kImage +
                                 web_server(bodies[i])));
  for (int i = 0; i < 2; ++i)
    EXPECT_TRUE(wait_for([&] { return http_get(ports[i]) == bodies[i] + "\n"; }, 20s))
        << "port " << ports[i] << " answered: " << http_get(ports[i]);

  // Neither session sees the other's containers.
  for (int i = 0; i < 2; ++i) {
    auto ps = clients[i]->run("docker ps -a --format '{{.Names}}'");
    EXPECT_EQ(ps.out, "web-" + std::to_string(i) + "\n") << ps.err;
    auto offload_ps = clients[i]->run("docker offload ps -a");
    EXPECT_EQ(offload_ps.out.find("web-" + std::to_string(1 - i)), std::string::npos)
        << offload_ps.out;
  }

  const fs::path sessions_dir = runner.state_dir() / "sessions";
  for (int i = 0; i < 2; ++i) {
    auto live = footprint(ids[i], sessions_dir, runner.run_dir() / ids[i].substr(0, 8));
    EXPECT_TRUE(live.absent.empty()) << "not found while session " << i << " runs:\n"
                                     << lines(live.absent);
  }

  for (auto* c : clients) ASSERT_SH_OK(c->run("docker offload stop --force", 180s));
  for (int i = 0; i < 2; ++i) {
    auto left = footprint(ids[i], sessions_dir, runner.run_dir() / ids[i].substr(0, 8));
    EXPECT_TRUE(left.present.empty()) << "left after stop of session " << i << ":\n"
                                      << lines(left.present);
    EXPECT_NE(http_get(ports[i]), bodies[i] + "\n");
  }

  EXPECT_EQ(runner.terminate(120s), 0) << tail(runner.log(), 40);
  for (int i = 0; i < 2; ++i) {
    auto left = footprint(ids[i], sessions_dir, runner.run_dir() / ids[i].substr(0, 8));
    EXPECT_TRUE(left.present.empty()) << lines(left.present);
  }
  EXPECT_TRUE(processes_mentioning(runner.run_dir().string()).empty())
      << lines(processes_mentioning(runner.run_dir().string()));
  std::error_code ec;
  bool sessions_empty = !fs::exists(sessions_dir) || fs::is_empty(sessions_dir, ec);
  EXPECT_TRUE(sessions_empty) << sessions_dir;
  if (HasFailure()) std::cout << "---- " << runner.log() << " (tail)\n" << tail(runner.log(), 80);
}

// ---- 7. The runner restarts (an upgrade) under a running session ------------------------------

// `systemctl restart offload-runner` with --live-restore (the packaged default) in the middle of
// a detached container with a forwarded port and a bind mount: the container keeps running, the
// port answers again, and the mount keeps syncing, all through the same session.
TEST_F(Lifecycle, ARunnerRestartKeepsTheSessionItsContainerPortAndBindMount) {
  const std::map<std::string, std::string> tokens = {{"carol", random_hex(16)}};
  const int runner_port = free_port();
  ASSERT_GT(runner_port, 0);
  OwnRunner runner;
  ASSERT_NO_FATAL_FAILURE(runner.start(g_dir / "restart-runner", tokens, {"--live-restore"},
                                       "127.0.0.1:" + std::to_string(runner_port)));
  json remote = {{"type", "remote"},
                 {"address", runner.address()},
                 {"tokenFile", "carol.token"},
                 {"fingerprint", runner.fingerprint()}};
  const auto& c = make_config("restart-client",
                              config_with("10.241.0.0/24", {{"defaultAccount", "shared"},
                                                            {"accounts", {{"shared", remote}}}}));
  ASSERT_FALSE(write_file_atomic(c.offload_dir() / "carol.token", tokens.at("carol") + "\n",
                                 fs::perms(0600)));
  ASSERT_NO_FATAL_FAILURE(start_with_image(c));
  const std::string id = c.status().value("sessionId", std::string());
  ASSERT_FALSE(id.empty());

  const fs::path site = g_dir / "restart-site";
  fs::create_directories(site);
  ASSERT_FALSE(write_file_atomic(site / "index.html", "before\n", fs::perms(0644)));
  ASSERT_SH_OK(c.run("docker run -d --name web -p 18193:80 -v " + quoted(site.string()) +
                     ":/site " + kImage + " httpd -f -p 80 -h /site"));
  ASSERT_TRUE(wait_for([] { return http_get(18193) == "before\n"; }, 30s))
      << "the forwarded port never answered before the restart";

  ASSERT_NO_FATAL_FAILURE(runner.restart());
  EXPECT_THAT_LOG(runner.log(), "session " + id + ": running engine adopted");
  // The container never stopped, and the session is the same one.
  EXPECT_FALSE(processes_mentioning("httpd -f -p 80 -h /site").empty());
  EXPECT_TRUE(wait_for([] { return http_get(18193) == "before\n"; }, 30s))
      << "the forwarded port did not come back; status: " << c.status().dump();
  json status = c.wait_status(
      [](const json& s) { return DockerConfig::state(s) == "started"; }, 30s);
  EXPECT_EQ(DockerConfig::state(status), "started") << status.dump();
  EXPECT_EQ(status.value("sessionId", std::string()), id) << status.dump();
  auto ps = c.run("docker ps --format '{{.Names}} {{.Status}}'");
  EXPECT_EQ(ps.out.rfind("web Up", 0), 0u) << ps.out << ps.err;

  // The bind mount syncs again, and a new container can bind it.
  ASSERT_FALSE(write_file_atomic(site / "index.html", "after\n", fs::perms(0644)));
  EXPECT_TRUE(wait_for([] { return http_get(18193) == "after\n"; }, 30s))
      << "the laptop's change never reached the container after the restart";
  auto again = c.run("docker run --rm -v " + quoted(site.string()) + ":/data " + kImage +
                     " cat /data/index.html");
  EXPECT_EQ(again.out, "after\n") << again.err;

  ASSERT_SH_OK(c.run("docker offload stop --force", 180s));
  auto left = footprint(id, runner.state_dir() / "sessions", runner.run_dir() / id.substr(0, 8));
  EXPECT_TRUE(left.present.empty()) << lines(left.present);
  if (HasFailure()) std::cout << "---- " << runner.log() << " (tail)\n" << tail(runner.log(), 120);
}

}  // namespace
}  // namespace offload::e2e

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new offload::e2e::LifecycleEnvironment);
  return RUN_ALL_TESTS();
}
