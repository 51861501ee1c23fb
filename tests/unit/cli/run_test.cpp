#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <future>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fake_daemon.h"
#include "offload/cli/commands.h"
#include "offload/cli/daemon_client.h"
#include "offload/cli/interrupt.h"
#include "offload/cli/render.h"
#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/join_string.h"
#include "offload/config/config.h"
#include "offload/common/token.h"
#include "temp_dir.h"

using namespace offload::cli;
using offload::cli::testing::FakeDaemon;
using offload::test::TempDir;
namespace v1 = offload::v1;
namespace fs = std::filesystem;

namespace {

constexpr std::int64_t kNow = 1795964825;

// One CLI run against the docker config in `dir`, with injected terminal and clock.
struct Harness {
  explicit Harness(const fs::path& dir, bool tty = false, std::string input = "")
      : in(std::move(input)), console{in, out, err, tty, tty} {
    env.docker_config = dir;
    env.system_plugin_dirs = {};  // hermetic: never the machine's own plugins
    DaemonClient::Options options;
    options.docker_config = dir;
    options.start_timeout = std::chrono::milliseconds(3000);
    // The test decides whether a daemon "exists"; by default none, and asking is recorded.
    options.locate_daemon = [this]() -> std::optional<fs::path> {
      ++locate_calls;
      return daemon_program;
    };
    options.notice = [this](const std::string& line) { err << line << "\n"; };
    daemon = std::make_unique<DaemonClient>(options);
    interrupt.when_idle = [this] { idle_interrupts++; };
  }

  int run(std::vector<std::string> args) {
    CommandLine line;
    if (auto code = parse_command_line(args, line, out, err)) return *code;
    CommandContext cli{console, env, *daemon, interrupt,
                       [] { return TimePoint(std::chrono::seconds(kNow)); }};
    return run_command(line, cli);
  }

  std::istringstream in;
  std::ostringstream out, err;
  Console console;
  Environment env;
  Interrupt interrupt;
  std::atomic<int> idle_interrupts{0};
  std::unique_ptr<DaemonClient> daemon;
  std::optional<fs::path> daemon_program;
  int locate_calls = 0;
};

// A docker-offload where the docker CLI may find one: an executable file.
fs::path fake_plugin(const fs::path& dir) {
  fs::create_directories(dir);
  fs::path plugin = dir / "docker-offload";
  std::ofstream(plugin) << "#!/bin/sh\n";
  fs::permissions(plugin, fs::perms::owner_all);
  return plugin;
}

v1::SessionStatus started() {
  v1::SessionStatus s;
  s.set_state(v1::DAEMON_STATE_STARTED);
  s.set_account("local");
  s.set_context("docker-offload");
  return s;
}

}  // namespace

TEST(Run, StartShowsItsPhasesOnStderrWhileItWaits) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  v1::SessionStatus stopped;
  stopped.set_state(v1::DAEMON_STATE_STOPPED);
  daemon.watch_frames = {stopped};  // the state before Start
  auto phase = [](v1::DaemonState state, const std::string& name) {
    v1::SessionStatus s;
    s.set_state(state);
    s.set_start_phase(name);
    return s;
  };
  // "engine" is never seen (two changes between two reads): it is still shown, in its place.
  daemon.start_frames = {phase(v1::DAEMON_STATE_STARTING, ""),
                         phase(v1::DAEMON_STATE_STARTING, "runner"),
                         phase(v1::DAEMON_STATE_STARTING, "context"),
                         phase(v1::DAEMON_STATE_STARTED, "events"),
                         phase(v1::DAEMON_STATE_STARTED, "")};
  daemon.watch_blocks = true;
  *daemon.start_response.mutable_status() = started();
  Harness h(dir.path());
  EXPECT_EQ(h.run({"start", "--gpu"}), 0);
  EXPECT_EQ(h.err.str(),
            "[1/4] Provisioning the runner and connecting to it\n"
            "[2/4] Starting the session's Docker engine on the runner\n"
            "[3/4] Switching the docker context to docker-offload\n"
            "[4/4] Following the session's events\n");
  EXPECT_EQ(h.out.str(),
            "Starting offload session...\n"
            "Offload session started. Docker context \"docker-offload\" is now current (was "
            "\"default\").\n");
  ASSERT_EQ(daemon.start_requests.size(), 1u);
  EXPECT_TRUE(daemon.start_requests[0].gpu());
}

TEST(Run, StartWithoutAGpuOnTheRunnerSaysWhichRunner) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.status_to_return = grpc::Status(
      grpc::StatusCode::FAILED_PRECONDITION,
      "runner box at 10.0.0.5:7443 (account \"cloud\") cannot give the session a GPU: it has no "
      "NVIDIA GPU (no /dev/nvidia<N> device nodes); start without --gpu, or with an account "
      "whose runner has NVIDIA GPUs");
  Harness h(dir.path());
  EXPECT_EQ(h.run({"start", "-g", "-a", "cloud"}), 1);
  EXPECT_NE(h.err.str().find("runner box at 10.0.0.5:7443 (account \"cloud\") cannot give the "
                             "session a GPU"),
            std::string::npos)
      << h.err.str();
  ASSERT_EQ(daemon.start_requests.size(), 1u);
  EXPECT_TRUE(daemon.start_requests[0].gpu());
}

TEST(Run, StartSendsOptionsAndReportsTheContextSwitch) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  auto* account = daemon.accounts_response.add_accounts();
  account->set_name("local");
  account->set_is_default(true);
  *daemon.start_response.mutable_status() = started();
  daemon.start_response.set_previous_context("default");

  Harness h(dir.path());
  EXPECT_EQ(h.run({"start", "--timeout", "1m30s"}), 0);
  EXPECT_EQ(h.out.str(),
            "Starting offload session on account \"local\"...\n"
            "Offload session started. Docker context \"docker-offload\" is now current (was "
            "\"default\").\n");
  EXPECT_EQ(h.err.str(), "");
  ASSERT_EQ(daemon.start_requests.size(), 1u);
  EXPECT_EQ(daemon.start_requests[0].account(), "");
  EXPECT_EQ(daemon.start_requests[0].timeout_ms(), 90000);
  EXPECT_EQ(h.locate_calls, 0);  // a daemon answered: nothing to start
}

TEST(Run, StartWarnsAboutEnvironmentOverrides) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  *daemon.start_response.mutable_status() = started();
  daemon.start_response.set_previous_context("desktop-linux");

  Harness h(dir.path());
  h.env.docker_host = "tcp://10.0.0.1:2375";
  EXPECT_EQ(h.run({"start", "-a", "gpu"}), 0);
  EXPECT_EQ(h.out.str(),
            "Starting offload session on account \"gpu\"...\n"
            "Offload session started. Docker context \"docker-offload\" is now current (was "
            "\"desktop-linux\").\n");
  EXPECT_EQ(h.err.str(),
            "WARNING: DOCKER_HOST is set to \"tcp://10.0.0.1:2375\" and overrides the "
            "docker-offload context in this shell; unset it to use the offload session\n");
  ASSERT_EQ(daemon.start_requests.size(), 1u);
  EXPECT_EQ(daemon.start_requests[0].account(), "gpu");
  EXPECT_EQ(daemon.start_requests[0].timeout_ms(), 0);
}

TEST(Run, OverrideWarningNamesDockerContext) {
  Environment env;
  EXPECT_EQ(environment_override_warning(env), "");
  env.docker_context = "docker-offload";  // already ours: nothing overrides anything
  EXPECT_EQ(environment_override_warning(env), "");
  env.docker_context = "default";
  EXPECT_EQ(environment_override_warning(env),
            "WARNING: DOCKER_CONTEXT is set to \"default\" and overrides the docker-offload "
            "context in this shell; unset it to use the offload session");
}

TEST(Run, DaemonErrorsArePrintedAsOneLine) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.status_to_return =
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no session: run `docker offload start`");
  Harness h(dir.path());
  EXPECT_EQ(h.run({"ps"}), 1);
  EXPECT_EQ(h.out.str(), "");
  EXPECT_EQ(h.err.str(), "no session: run `docker offload start`\n");

  // The daemon's own UNAVAILABLE (runner away) is its message, not a socket problem.
  daemon.status_to_return =
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "runner unreachable at 10.0.0.5:7443: timeout");
  Harness h2(dir.path());
  EXPECT_EQ(h2.run({"images"}), 1);
  EXPECT_EQ(h2.err.str(), "runner unreachable at 10.0.0.5:7443: timeout\n");
}

TEST(Run, StopAsksFirstAndReportsTheRestoredContext) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.stop_response.set_restored_context("default");
  daemon.stop_response.set_had_session(true);

  Harness declined(dir.path(), /*tty=*/true, "n\n");
  EXPECT_EQ(declined.run({"stop"}), 0);
  EXPECT_EQ(daemon.stop_calls, 0);

  Harness agreed(dir.path(), /*tty=*/true, "y\n");
  EXPECT_EQ(agreed.run({"stop"}), 0);
  EXPECT_EQ(agreed.out.str(),
            "This will stop the offload session and destroy its containers, images and volumes. "
            "Continue? [y/N] Offload session stopped. Docker context \"default\" is current "
            "again.\n");
  EXPECT_EQ(daemon.stop_calls, 1);

  Harness piped(dir.path(), /*tty=*/false, "y\n");
  EXPECT_EQ(piped.run({"stop"}), 1);
  EXPECT_EQ(piped.err.str(),
            "refusing to stop without confirmation: not a terminal; use `docker offload stop "
            "--force`\n");
  EXPECT_EQ(daemon.stop_calls, 1);

  daemon.stop_response.set_had_session(false);
  Harness forced(dir.path(), /*tty=*/false);
  EXPECT_EQ(forced.run({"stop", "--force"}), 0);
  EXPECT_EQ(forced.out.str(), "No offload session was running. Docker context \"default\" is "
                              "current again.\n");
  EXPECT_EQ(daemon.stop_calls, 2);
}

TEST(Confirm, OnlyYesProceeds) {
  auto ask = [](bool tty, const std::string& input, bool force = false) {
    std::istringstream in(input);
    std::ostringstream out, err;
    Console console{in, out, err, tty, tty};
    bool answer = confirm_stop(StopOptions{force}, console);
    return std::make_pair(answer, out.str());
  };
  const std::string prompt =
      "This will stop the offload session and destroy its containers, images and volumes. "
      "Continue? [y/N] ";
  EXPECT_EQ(ask(true, "y\n"), std::make_pair(true, prompt));
  EXPECT_EQ(ask(true, "  YES \n"), std::make_pair(true, prompt));
  EXPECT_EQ(ask(true, "n\n"), std::make_pair(false, prompt));
  EXPECT_EQ(ask(true, "\n"), std::make_pair(false, prompt));
  EXPECT_EQ(ask(true, "yep\n"), std::make_pair(false, prompt));
  EXPECT_EQ(ask(true, ""), std::make_pair(false, prompt + "\n"));  // EOF
  EXPECT_EQ(ask(false, "", /*force=*/true), std::make_pair(true, std::string()));
  EXPECT_EQ(ask(true, "n\n", /*force=*/true), std::make_pair(true, std::string()));
  try {
    ask(false, "y\n");
    FAIL() << "no TTY must refuse";
  } catch (const CliError& e) {
    EXPECT_EQ(e.exit_code(), 1);
    EXPECT_STREQ(e.what(),
                 "refusing to stop without confirmation: not a terminal; use `docker offload "
                 "stop --force`");
  }
}

TEST(Run, StatusPrettyJsonAndWatch) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.status_response.set_state(v1::DAEMON_STATE_STOPPED);
  daemon.status_response.set_account("local");
  {
    Harness h(dir.path());
    EXPECT_EQ(h.run({"status"}), 0);
    EXPECT_EQ(h.out.str(), render_status_pretty(daemon.status_response, {}));
  }
  {
    Harness h(dir.path());
    EXPECT_EQ(h.run({"status", "-f", "json"}), 0);
    EXPECT_EQ(h.out.str(), status_json(daemon.status_response).dump() + "\n");
  }
  daemon.watch_frames = {daemon.status_response, started()};
  {
    Harness h(dir.path());
    EXPECT_EQ(h.run({"status", "--watch", "--format", "json"}), 0);
    EXPECT_EQ(h.out.str(), status_json(daemon.watch_frames[0]).dump() + "\n" +
                               status_json(daemon.watch_frames[1]).dump() + "\n");
  }
  {
    Harness h(dir.path());
    EXPECT_EQ(h.run({"status", "-w"}), 0);
    const TimePoint now{std::chrono::seconds(kNow)};
    EXPECT_EQ(h.out.str(), render_status_pretty(daemon.watch_frames[0], now) + "\n" +
                               render_status_pretty(daemon.watch_frames[1], now));
  }
}

TEST(Run, InterruptCancelsTheWatch) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.watch_frames = {started()};
  daemon.watch_blocks = true;
  Harness h(dir.path());
  auto result = std::async(std::launch::async, [&] { return h.run({"status", "-w"}); });
  {
    std::unique_lock lock(daemon.mutex);
    ASSERT_TRUE(daemon.watching.wait_for(lock, std::chrono::seconds(10),
                                         [&] { return daemon.watch_started; }));
  }
  // The frame was written before the server waits, but may still be in flight to the client:
  // cancel only once the CLI has registered its call, which the Guard does before reading.
  ASSERT_EQ(result.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  h.interrupt.request();
  ASSERT_EQ(result.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(result.get(), kExitInterrupted);
  EXPECT_EQ(h.err.str(), "");
  EXPECT_EQ(h.idle_interrupts.load(), 0);
}

TEST(Run, PsAndImagesAskTheDaemon) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  auto* c = daemon.containers_response.add_containers();
  c->set_id("0123456789abcdef");
  auto* i = daemon.images_response.add_images();
  i->set_id("sha256:fedcba9876543210");
  Harness ps(dir.path());
  EXPECT_EQ(ps.run({"ps", "-aq"}), 0);
  EXPECT_EQ(ps.out.str(), "0123456789ab\n");
  ASSERT_EQ(daemon.container_requests.size(), 1u);
  EXPECT_TRUE(daemon.container_requests[0].all());
  Harness images(dir.path());
  EXPECT_EQ(images.run({"images", "-q"}), 0);
  EXPECT_EQ(images.out.str(), "fedcba987654\n");
}

TEST(Run, VersionNeverStartsTheDaemon) {
  TempDir dir;
  {
    Harness h(dir.path());
    EXPECT_EQ(h.run({"version"}), 0);
    EXPECT_EQ(h.out.str(), "docker-offload:  " OFFLOAD_VERSION "\noffloadd:        not running\n");
    EXPECT_EQ(h.locate_calls, 0);
    EXPECT_FALSE(fs::exists(dir.path() / "offload"));
  }
  FakeDaemon daemon(dir.path());
  daemon.version_response.set_daemon_version("9.9.9");
  Harness h(dir.path());
  EXPECT_EQ(h.run({"version", "--json"}), 0);
  EXPECT_EQ(h.out.str(), "{\"plugin\":\"" OFFLOAD_VERSION
                         "\",\"daemonRunning\":true,\"daemon\":\"9.9.9\",\"runner\":\"\","
                         "\"engine\":\"\",\"engineApi\":\"\"}\n");
  Harness s(dir.path());
  EXPECT_EQ(s.run({"version", "--short"}), 0);
  EXPECT_EQ(s.out.str(), OFFLOAD_VERSION "\n");
}

TEST(Run, MissingDaemonProgramIsReported) {
  TempDir dir;
  Harness h(dir.path());
  EXPECT_EQ(h.run({"status"}), 1);
  EXPECT_EQ(h.locate_calls, 1);
  EXPECT_EQ(h.err.str(),
            "daemon not running and could not be started: offloadd not found next to "
            "docker-offload or in PATH\n");
}

TEST(Run, DaemonThatDiesIsReportedWithItsLog) {
  TempDir dir;
  // A stand-in offloadd that records its arguments and fails like a broken install would.
  fs::path program = dir.path() / "offloadd";
  {
    std::ofstream script(program);
    script << "#!/bin/sh\necho \"$@\" > " << (dir.path() / "args").string()
           << "\necho 'offloadd: cannot read config' >&2\nexit 1\n";
  }
  fs::permissions(program, fs::perms(0755));
  fs::path config = dir.path() / "docker";
  Harness h(config);
  h.daemon_program = program;
  EXPECT_EQ(h.run({"accounts"}), 1);
  const fs::path log = config / "offload" / "offloadd.stderr.log";
  EXPECT_EQ(h.err.str(), "daemon not running and could not be started: offloadd exited before "
                         "opening " + offload::display_path(config / "offload" / "offloadd.sock") +
                             " (see " + offload::display_path(log) + ")\n");
  std::string args, log_text;
  ASSERT_FALSE(offload::read_file(dir.path() / "args", args));
  EXPECT_EQ(args, "--docker-config " + config.string() + "\n");
  ASSERT_FALSE(offload::read_file(log, log_text));
  EXPECT_EQ(log_text, "offloadd: cannot read config\n");
  EXPECT_EQ(fs::status(config / "offload").permissions() & fs::perms::all, fs::perms(0700));
}

TEST(Run, DaemonThatGoesAwayIsNamed) {
  TempDir dir;
  auto daemon = std::make_unique<FakeDaemon>(dir.path());
  Harness h(dir.path());
  ASSERT_NE(h.daemon->connect_if_running(), nullptr);
  daemon.reset();  // the socket file stays, nobody listens
  grpc::ClientContext context;
  v1::SessionStatus status;
  grpc::Status result = h.daemon->connect().Status(&context, {}, &status);
  ASSERT_EQ(result.error_code(), grpc::StatusCode::UNAVAILABLE);
  std::string message = h.daemon->error(result).what();
  const std::string prefix = "offloadd is not answering on " +
                             offload::display_path(dir.path() / "offload" / "offloadd.sock") +
                             ": ";
  EXPECT_EQ(message.substr(0, prefix.size()), prefix);
  EXPECT_GT(message.size(), prefix.size());
}

TEST(PluginSocket, EofOnTheDockerCliSocketInterrupts) {
  // The docker CLI listens on an abstract socket and names it "@docker_cli_<hex>".
  const std::string name = "offload_cli_test_" + offload::random_hex(8);
  int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, name.data(), name.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(::listen(listener, 1), 0);

  Interrupt interrupt;
  std::promise<void> fired;
  interrupt.when_idle = [&] { fired.set_value(); };
  PluginSocketWatcher watcher("@" + name, interrupt);
  ASSERT_TRUE(watcher.connected());
  int conn = ::accept(listener, nullptr, nullptr);
  ASSERT_GE(conn, 0);
  EXPECT_FALSE(interrupt.requested());
  ::close(conn);  // what the CLI does on Ctrl-C
  ASSERT_EQ(fired.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(interrupt.requested());
  ::close(listener);
}

TEST(PluginSocket, UnreachableSocketLeavesItInactive) {
  Interrupt interrupt;
  PluginSocketWatcher watcher("@offload_cli_test_nobody_" + offload::random_hex(8), interrupt);
  EXPECT_FALSE(watcher.connected());
  PluginSocketWatcher bad_path("/nonexistent/dir/sock", interrupt);
  EXPECT_FALSE(bad_path.connected());
}

TEST(Interrupt, GuardCancelsTheCallInFlight) {
  Interrupt interrupt;
  int idle = 0;
  interrupt.when_idle = [&] { ++idle; };
  grpc::ClientContext context;
  {
    Interrupt::Guard guard(interrupt, context);
    interrupt.request();  // cancels `context`, not the process
  }
  EXPECT_EQ(idle, 0);
  EXPECT_TRUE(interrupt.requested());
  grpc::ClientContext next;
  EXPECT_THROW(Interrupt::Guard(interrupt, next), CliError);
}

// --- issue 4: lifecycle, notices, diagnose ---

TEST(Run, StartSendsTheIdleTimeout) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  *daemon.start_response.mutable_status() = started();
  Harness h(dir.path());
  EXPECT_EQ(h.run({"start", "-a", "gpu", "--idle-timeout", "2m"}), 0);
  ASSERT_EQ(daemon.start_requests.size(), 1u);
  EXPECT_EQ(daemon.start_requests[0].idle_timeout_ms(), 120000);
  EXPECT_EQ(daemon.start_requests[0].timeout_ms(), 0);
}

TEST(Run, NoticesComeFirstOnStderrAndOnlyOnce) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.status_response = started();
  daemon.notices = {"the session will end in 45s unless something runs",
                    "the runner was unreachable for 20s; reconnected"};
  Harness h(dir.path());
  EXPECT_EQ(h.run({"status"}), 0);
  EXPECT_EQ(h.err.str(),
            "WARNING: the session will end in 45s unless something runs\n"
            "WARNING: the runner was unreachable for 20s; reconnected\n");
  EXPECT_NE(h.out.str().find("State:            Started\n"), std::string::npos);

  Harness again(dir.path());
  EXPECT_EQ(again.run({"ps"}), 0);
  EXPECT_EQ(again.err.str(), "");
  EXPECT_EQ(daemon.take_notices_calls, 2);
}

TEST(Run, EveryVerbButVersionTakesNotices) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.status_response = started();
  *daemon.start_response.mutable_status() = started();
  for (std::vector<std::string> args :
       {std::vector<std::string>{"start", "-a", "x"}, {"stop", "-f"}, {"status"}, {"ps"},
        {"images"}, {"accounts"}, {"diagnose"}}) {
    daemon.notices = {"note"};
    Harness h(dir.path());
    h.run(args);
    EXPECT_EQ(h.err.str().rfind("WARNING: note\n", 0), 0u) << args[0] << ": " << h.err.str();
  }
  daemon.notices = {"note"};
  Harness h(dir.path());
  EXPECT_EQ(h.run({"version"}), 0);
  EXPECT_EQ(h.err.str(), "");
  EXPECT_EQ(daemon.notices.size(), 1u);  // still there for the next command
}

TEST(Run, OlderDaemonWithoutNoticesIsIgnored) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.notices_unimplemented = true;
  daemon.status_response = started();
  Harness h(dir.path());
  EXPECT_EQ(h.run({"status"}), 0);
  EXPECT_EQ(h.err.str(), "");
}

namespace {

v1::Check check(const std::string& name, bool ok, const std::string& detail,
                const std::string& fix = "") {
  v1::Check c;
  c.set_name(name);
  c.set_ok(ok);
  c.set_detail(detail);
  c.set_fix(fix);
  return c;
}

}  // namespace

TEST(Run, DiagnoseAddsTheCliChecks) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  *daemon.diagnose_response.add_checks() = check("daemon", true, "offloadd 0.1.0 (pid 1234)");
  *daemon.diagnose_response.add_checks() = check("session", true, "abc on host, Docker 24.0.7");
  Harness h(dir.path());
  const fs::path system = dir.path() / "usr-libexec";
  h.env.system_plugin_dirs = {system};
  h.env.program = fake_plugin(system);
  EXPECT_EQ(h.run({"diagnose"}), 0);
  EXPECT_EQ(h.out.str(),
            "\u2714 daemon: offloadd 0.1.0 (pid 1234)\n"
            "\u2714 session: abc on host, Docker 24.0.7\n"
            "\u2714 DOCKER_HOST/DOCKER_CONTEXT: neither is set\n"
            "\u2714 plugin: docker-offload " OFFLOAD_VERSION
            " at " + h.env.program.string() + "\n"
            "\n"
            "All 4 checks passed.\n");
  EXPECT_EQ(h.err.str(), "");
}

// docker 28's order (verified with docker 28.2 and a plugin in two places): config.json's
// cliPluginsExtraDirs, then <config>/cli-plugins, then the system directories.
TEST(Plugin, CandidatesInTheDockerCliOrder) {
  TempDir dir;
  const fs::path extra = dir.path() / "extra", system = dir.path() / "system";
  std::ofstream(dir.path() / "config.json")
      << R"({"auths": {}, "cliPluginsExtraDirs": [")" << extra.string() << R"(", "/nonexistent"]})";
  EXPECT_EQ(docker_plugin_candidates(dir.path(), {system}), std::vector<fs::path>{});
  fake_plugin(system);
  fake_plugin(dir.path() / "cli-plugins");
  fake_plugin(extra);
  fs::create_directories(dir.path() / "dir-only" / "docker-offload");  // not a plugin
  EXPECT_EQ(docker_plugin_candidates(dir.path(), {dir.path() / "dir-only", system}),
            (std::vector<fs::path>{extra / "docker-offload",
                                   dir.path() / "cli-plugins" / "docker-offload",
                                   system / "docker-offload"}));
}

TEST(Run, DiagnoseFindsAPluginThatShadowsThisOne) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  Harness h(dir.path());
  // This one in the user's plugin directory; an old copy in an extra directory docker prefers.
  h.env.program = fake_plugin(dir.path() / "cli-plugins");
  const fs::path old = fake_plugin(dir.path() / "old");
  std::ofstream(dir.path() / "config.json")
      << R"({"cliPluginsExtraDirs": [")" << (dir.path() / "old").string() << R"("]})";
  EXPECT_EQ(h.run({"diagnose", "--format", "json"}), 1);
  const auto report = nlohmann::json::parse(h.out.str());
  ASSERT_EQ(report.back()["name"], "plugin");
  EXPECT_EQ(report.back()["ok"], false);
  EXPECT_EQ(report.back()["detail"],
            "docker-offload " OFFLOAD_VERSION " at " + h.env.program.string() +
                ", but `docker offload` runs " + old.string() +
                ", which shadows this one (docker looks there first)");
  EXPECT_EQ(report.back()["fix"], "remove " + old.string() + " if it is an old copy, or run " +
                                      old.string() + " diagnose");

  // Not where docker looks at all: another plugin answers, or none.
  Harness elsewhere(dir.path());
  elsewhere.env.program = fake_plugin(dir.path() / "build");
  EXPECT_EQ(elsewhere.run({"diagnose"}), 1);
  EXPECT_NE(elsewhere.out.str().find("`docker offload` runs " + old.string() +
                                     ", which is another docker-offload (this one is not where "
                                     "docker looks)"),
            std::string::npos)
      << elsewhere.out.str();
  fs::remove(dir.path() / "config.json");
  fs::remove(dir.path() / "cli-plugins" / "docker-offload");
  Harness none(dir.path());
  none.env.program = elsewhere.env.program;
  EXPECT_EQ(none.run({"diagnose"}), 1);
  EXPECT_NE(none.out.str().find("the docker CLI finds no docker-offload in its plugin "
                                "directories, so `docker offload` does not run this one \u2014 "
                                "try: ln -s " + none.env.program.string() + " " +
                                (dir.path() / "cli-plugins" / "docker-offload").string()),
            std::string::npos)
      << none.out.str();
}

TEST(Run, DiagnoseNamesThePluginsThisOneShadows) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  Harness h(dir.path());
  const fs::path system = dir.path() / "system";
  h.env.system_plugin_dirs = {system};
  h.env.program = fake_plugin(dir.path() / "cli-plugins");
  const fs::path other = fake_plugin(system);
  EXPECT_EQ(h.run({"diagnose"}), 0);
  EXPECT_NE(h.out.str().find("\u2714 plugin: docker-offload " OFFLOAD_VERSION " at " +
                             h.env.program.string() + " (it shadows " + other.string() +
                             ", which docker never runs)\n"),
            std::string::npos)
      << h.out.str();
  // A symlink to this very file is this plugin, not another one.
  fs::remove(other);
  fs::create_symlink(h.env.program, other);
  Harness linked(dir.path());
  linked.env.system_plugin_dirs = {system};
  linked.env.program = h.env.program;
  EXPECT_EQ(linked.run({"diagnose"}), 0);
  EXPECT_EQ(linked.out.str().find("shadows"), std::string::npos) << linked.out.str();
}

TEST(Run, DiagnoseFailsOnEnvironmentOverrides) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  *daemon.diagnose_response.add_checks() = check("daemon", true, "offloadd 0.1.0 (pid 1234)");
  Harness h(dir.path());
  h.env.docker_host = "tcp://10.0.0.1:2375";
  h.env.docker_context = "desktop-linux";
  EXPECT_EQ(h.run({"diagnose", "--format", "json"}), 1);
  EXPECT_EQ(h.out.str(),
            "[{\"name\":\"daemon\",\"ok\":true,\"detail\":\"offloadd 0.1.0 (pid 1234)\","
            "\"fix\":\"\"},"
            "{\"name\":\"DOCKER_HOST/DOCKER_CONTEXT\",\"ok\":false,\"detail\":\"DOCKER_HOST="
            "tcp://10.0.0.1:2375 and DOCKER_CONTEXT=desktop-linux in this shell override the "
            "docker-offload context\",\"fix\":\"unset DOCKER_HOST DOCKER_CONTEXT\"},"
            "{\"name\":\"plugin\",\"ok\":true,\"detail\":\"docker-offload " OFFLOAD_VERSION
            "\",\"fix\":\"\"}]\n");
}

TEST(Run, DiagnoseAcceptsOverridesThatPointAtTheSession) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  Harness h(dir.path());
  h.env.docker_host = "unix://" + (dir.path() / "offload" / "docker.sock").string();
  EXPECT_EQ(h.run({"diagnose"}), 0);
  EXPECT_NE(h.out.str().find("\u2714 DOCKER_HOST/DOCKER_CONTEXT: DOCKER_HOST points at the "
                             "offload session\n"),
            std::string::npos)
      << h.out.str();
  Harness c(dir.path());
  c.env.docker_context = "docker-offload";
  EXPECT_EQ(c.run({"diagnose"}), 0);
  EXPECT_NE(c.out.str().find("\u2714 DOCKER_HOST/DOCKER_CONTEXT: DOCKER_CONTEXT=docker-offload\n"),
            std::string::npos);
  Harness only_host(dir.path());
  only_host.env.docker_host = "ssh://me@box";
  EXPECT_EQ(only_host.run({"diagnose"}), 1);
  EXPECT_NE(only_host.out.str().find(
                "\u2718 DOCKER_HOST/DOCKER_CONTEXT: DOCKER_HOST=ssh://me@box in this shell "
                "overrides the docker-offload context \u2014 try: unset DOCKER_HOST\n"),
            std::string::npos)
      << only_host.out.str();
}

TEST(Run, DiagnoseExitsOneWhenTheDaemonReportsAFailure) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  *daemon.diagnose_response.add_checks() =
      check("runner reachable", false, "runner unreachable at 10.0.0.5:7443: connection refused",
            "check that offload-runner runs on 10.0.0.5:7443");
  Harness h(dir.path());
  EXPECT_EQ(h.run({"diagnose"}), 1);
  EXPECT_EQ(h.out.str().rfind("\u2718 runner reachable: runner unreachable at 10.0.0.5:7443: "
                              "connection refused \u2014 try: check that offload-runner runs on "
                              "10.0.0.5:7443\n",
                              0),
            0u)
      << h.out.str();
  EXPECT_NE(h.out.str().find("\n1 of 3 checks failed.\n"), std::string::npos) << h.out.str();
}

TEST(Run, DiagnoseWithoutADaemonStillReports) {
  TempDir dir;
  Harness h(dir.path());
  EXPECT_EQ(h.run({"diagnose"}), 1);
  const std::string out = h.out.str();
  EXPECT_EQ(out.rfind("\u2718 daemon: daemon not running and could not be started: offloadd not "
                      "found next to docker-offload or in PATH \u2014 try: see ",
                      0),
            0u)
      << out;
  EXPECT_NE(out.find("\u2714 plugin: docker-offload"), std::string::npos) << out;
  EXPECT_EQ(h.err.str(), "");
}

TEST(Run, DiagnoseAgainstAnOlderDaemon) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.diagnose_status = grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unknown method");
  Harness h(dir.path());
  EXPECT_EQ(h.run({"diagnose"}), 1);
  EXPECT_EQ(h.out.str().rfind("\u2718 daemon: the running offloadd is older than this "
                              "docker-offload and cannot diagnose \u2014 try: stop offloadd (it "
                              "starts again with the next command) and run this again\n",
                              0),
            0u)
      << h.out.str();
}

// After an upgrade the plugin is new and the running offloadd old: the plugin stops the old
// daemon (SIGTERM, as at logout) and starts the installed one, which re-attaches to the session.
TEST(Run, AnOffloaddOfAnotherVersionIsRestartedAndTheCommandGoesOn) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.version_response.set_daemon_version("0.0.1-old");
  daemon.status_response = started();
  // The old daemon's process: its command line names offloadd.
  const fs::path old_program = dir.path() / "old" / "offloadd";
  fs::create_directories(old_program.parent_path());
  {
    std::ofstream script(old_program);
    script << "#!/bin/sh\nwhile :; do sleep 1; done\n";
  }
  fs::permissions(old_program, fs::perms(0755));
  std::string error;
  pid_t old_pid = offload::spawn_process({old_program.string()}, {}, error);
  ASSERT_GT(old_pid, 0) << error;
  ASSERT_FALSE(offload::write_file_atomic(dir.path() / "offload" / "offloadd.pid",
                                          std::to_string(old_pid) + "\n"));

  Harness h(dir.path());
  h.daemon_program = "/bin/true";  // "the installed offloadd"; the fake keeps answering
  EXPECT_EQ(h.run({"status"}), 0);
  EXPECT_NE(h.err.str().find("offloadd 0.0.1-old is running, this is docker-offload " OFFLOAD_VERSION
                             ": restarting it; the session carries on\n"),
            std::string::npos)
      << h.err.str();
  EXPECT_FALSE(offload::process_alive(old_pid));
  EXPECT_EQ(h.locate_calls, 1);  // the new daemon was started
}

TEST(Run, AnOffloaddOfTheSameVersionOrAnUnknownProcessIsLeftAlone) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  daemon.status_response = started();
  daemon.version_response.set_daemon_version(OFFLOAD_VERSION);
  {
    Harness h(dir.path());
    EXPECT_EQ(h.run({"status"}), 0);
    EXPECT_EQ(h.locate_calls, 0);
    EXPECT_EQ(h.err.str(), "");
  }
  // Another version, but the pid file names something that is not offloadd (a stale file).
  daemon.version_response.set_daemon_version("0.0.1-old");
  std::string error;
  pid_t stranger = offload::spawn_process({"/bin/sleep", "30"}, {}, error);
  ASSERT_GT(stranger, 0) << error;
  ASSERT_FALSE(offload::write_file_atomic(dir.path() / "offload" / "offloadd.pid",
                                          std::to_string(stranger) + "\n"));
  Harness h(dir.path());
  EXPECT_EQ(h.run({"status"}), 0);
  EXPECT_NE(h.err.str().find("cannot find its process to restart it"), std::string::npos)
      << h.err.str();
  EXPECT_TRUE(offload::process_alive(stranger));
  EXPECT_EQ(h.locate_calls, 0);
  offload::terminate_process(stranger, std::chrono::seconds(1));
}

// --- accounts add / remove: config.json and the token file, without offloadd ---

namespace {

const std::string kJoinFingerprint = "sha256:" + std::string(64, 'c');
const std::string kJoinToken = "0123456789abcdef0123456789abcdef";

std::string join_string(const std::string& address = "runner.example.com:7443") {
  return offload::format_join_string({address, kJoinFingerprint, kJoinToken});
}

std::string slurp(const fs::path& file) {
  std::string text;
  (void)offload::read_file(file, text);
  return text;
}

unsigned mode_of(const fs::path& file) {
  return static_cast<unsigned>(fs::status(file).permissions()) & 0777;
}

// A hand-written config: its keys, their order and values must survive an edit.
const std::string kUserConfig = R"({
  "startTimeout": "3m",
  "sync": {"exclude": [".env", "secrets/"]},
  "accounts": {
    "gpu": {"type": "remote", "address": "gpu.example.com:7443", "tokenFile": "/keys/gpu",
            "fingerprint": "sha256:)" + std::string(64, 'd') + R"("}
  },
  "defaultAccount": "gpu"
}
)";

}  // namespace

TEST(Accounts, AddWritesTheAccountAndItsPrivateTokenFileKeepingEverythingElse) {
  TempDir dir;
  const fs::path offload_dir = dir.path() / "offload";
  fs::create_directories(offload_dir);
  ASSERT_FALSE(offload::write_file_atomic(offload_dir / "config.json", kUserConfig));
  Harness h(dir.path());
  ASSERT_EQ(h.run({"accounts", "add", "team", join_string()}), 0) << h.err.str();
  EXPECT_EQ(h.out.str(),
            "Added account \"team\" (runner runner.example.com:7443). Start a session with: "
            "docker offload start --account team\n");
  EXPECT_EQ(h.locate_calls, 0) << "adding an account does not need offloadd";
  EXPECT_EQ(h.err.str(), "");

  const std::string text = slurp(offload_dir / "config.json");
  auto config = offload::parse_config(text, "config.json");
  ASSERT_EQ(config.accounts.count("team"), 1u);
  EXPECT_EQ(config.accounts.at("team").address, "runner.example.com:7443");
  EXPECT_EQ(config.accounts.at("team").fingerprint, kJoinFingerprint);
  EXPECT_EQ(config.accounts.at("team").token_file, "team.token");
  // The token is in its own 0600 file, never in config.json.
  EXPECT_EQ(text.find(kJoinToken), std::string::npos);
  EXPECT_EQ(slurp(offload_dir / "team.token"), kJoinToken + "\n");
  EXPECT_EQ(mode_of(offload_dir / "team.token"), 0600u);
  EXPECT_EQ(mode_of(offload_dir / "config.json"), 0600u);
  // Everything else as it was, in its order.
  EXPECT_EQ(config.default_account, "gpu");
  EXPECT_EQ(config.start_timeout, std::chrono::minutes(3));
  EXPECT_EQ(config.sync.exclude, (std::vector<std::string>{".env", "secrets/"}));
  EXPECT_EQ(config.accounts.at("gpu").token_file, "/keys/gpu");
  EXPECT_LT(text.find("startTimeout"), text.find("sync"));
  EXPECT_LT(text.find("\"gpu\""), text.find("\"team\""));
  EXPECT_LT(text.find("\"team\""), text.find("defaultAccount"));
}

TEST(Accounts, AddWithoutAConfigFileMakesOne) {
  TempDir dir;
  Harness h(dir.path());
  ASSERT_EQ(h.run({"accounts", "add", "team", "  " + join_string() + "\n"}), 0) << h.err.str();
  auto config = offload::load_config(dir.path() / "offload" / "config.json");
  EXPECT_EQ(config.accounts.at("team").address, "runner.example.com:7443");
  EXPECT_EQ(config.default_account, "local");
}

TEST(Accounts, BadInputChangesNothing) {
  TempDir dir;
  const fs::path offload_dir = dir.path() / "offload";
  fs::create_directories(offload_dir);
  ASSERT_FALSE(offload::write_file_atomic(offload_dir / "config.json", kUserConfig));
  auto unchanged = [&] {
    EXPECT_EQ(slurp(offload_dir / "config.json"), kUserConfig);
    EXPECT_FALSE(fs::exists(offload_dir / "team.token"));
    EXPECT_FALSE(fs::exists(offload_dir / "gpu.token"));
    EXPECT_FALSE(fs::exists(offload_dir / "local.token"));
  };
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"accounts", "add", "team", "offload1.garbage"}, "not a valid join string"},
      {{"accounts", "add", "team", join_string().substr(0, 40)}, "not a valid join string"},
      {{"accounts", "add", "gpu", join_string()}, "account \"gpu\" exists already"},
      {{"accounts", "add", "local", join_string()}, "built-in account"},
      {{"accounts", "add", "-x", join_string()}, "unknown shorthand flag"},  // exits 125
      {{"accounts", "add", "a/b", join_string()}, "not a valid account name"},
      {{"accounts", "add", "team", join_string("bad!host:1")}, "is not host:port"},
      {{"accounts", "add", "team"}, "docker: 'docker offload accounts add' requires 2 arguments"},
      {{"accounts", "remove"}, "docker: 'docker offload accounts remove' requires 1 argument"},
      {{"accounts", "remove", "nobody"}, "there is no remote account \"nobody\""},
      {{"accounts", "remove", "gpu"}, "is the default account"},
  };
  for (const auto& [args, expected] : cases) {
    Harness h(dir.path());
    EXPECT_EQ(h.run(args), args.size() > 2 && args[2] == "-x" ? 125 : 1) << args.back();
    EXPECT_NE(h.err.str().find(expected), std::string::npos) << h.err.str();
    EXPECT_EQ(h.err.str().find(kJoinToken), std::string::npos) << h.err.str();
    unchanged();
  }
  // A config.json that is already invalid is not rewritten: the user's text stays theirs.
  const std::string broken = "{\"startTimeout\": \"3m\", \"colour\": \"blue\"}\n";
  ASSERT_FALSE(offload::write_file_atomic(offload_dir / "config.json", broken));
  Harness h(dir.path());
  EXPECT_EQ(h.run({"accounts", "add", "team", join_string()}), 1);
  EXPECT_NE(h.err.str().find("fix the file first"), std::string::npos) << h.err.str();
  EXPECT_EQ(slurp(offload_dir / "config.json"), broken);
  EXPECT_FALSE(fs::exists(offload_dir / "team.token"));
}

TEST(Accounts, RemoveDeletesTheAccountAndTheTokenFileAddMade) {
  TempDir dir;
  {
    Harness h(dir.path());
    ASSERT_EQ(h.run({"accounts", "add", "team", join_string()}), 0) << h.err.str();
  }
  const fs::path offload_dir = dir.path() / "offload";
  ASSERT_TRUE(fs::exists(offload_dir / "team.token"));
  Harness h(dir.path());
  ASSERT_EQ(h.run({"accounts", "rm", "team"}), 0) << h.err.str();
  EXPECT_EQ(h.out.str(), "Removed account \"team\"\n");
  EXPECT_FALSE(fs::exists(offload_dir / "team.token"));
  EXPECT_TRUE(offload::load_config(offload_dir / "config.json").accounts.empty());
}

TEST(Accounts, AnOffloaddItCannotRestartIsNamedInAWarning) {
  TempDir dir;
  FakeDaemon daemon(dir.path());  // listens, but there is no offloadd pid file
  Harness h(dir.path());
  ASSERT_EQ(h.run({"accounts", "add", "team", join_string()}), 0) << h.err.str();
  EXPECT_NE(h.err.str().find("WARNING: offloadd is running with the accounts it read"),
            std::string::npos)
      << h.err.str();
}

TEST(Accounts, ListingStillAsksTheDaemonAndSubcommandsHaveHelp) {
  TempDir dir;
  FakeDaemon daemon(dir.path());
  auto* a = daemon.accounts_response.add_accounts();
  a->set_name("local");
  a->set_type("local");
  Harness h(dir.path());
  EXPECT_EQ(h.run({"accounts", "--format", "json"}), 0) << h.err.str();
  EXPECT_NE(h.out.str().find("\"local\""), std::string::npos) << h.out.str();
  Harness help(dir.path());
  EXPECT_EQ(help.run({"accounts", "add", "--help"}), 0);
  EXPECT_EQ(help.out.str().rfind("Usage:  docker offload accounts add NAME JOINSTRING\n", 0), 0u)
      << help.out.str();
}
