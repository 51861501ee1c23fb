// diagnose() without a session: the account, the runner probe for remote accounts, the docker
// context and what it says to do. With a session: tests/integration/diagnose_test.cpp.
#include "offload/daemon/diagnose.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include "offload/common/fs.h"
#include "offload/dockerctx/context_store.h"
#include "temp_dir.h"

using namespace offload;
using namespace offload::daemon;
namespace fs = std::filesystem;
using offload::test::TempDir;

namespace {

// A loopback port nothing listens on (bound once, then released).
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

const std::string kFp = "sha256:" + std::string(64, 'd');

struct Machine {
  explicit Machine(const std::string& default_account, bool with_token = true)
      : paths(dir.path()), address("127.0.0.1:" + std::to_string(closed_port())) {
    fs::create_directories(paths.dir);
    config.default_account = default_account;
    config.accounts["gpu"] = RemoteAccountSettings{address, "gpu.token", kFp};
    EXPECT_FALSE(write_file_atomic(paths.config_file, to_json(config)));
    if (with_token) {
      EXPECT_FALSE(write_file_atomic(paths.dir / "gpu.token", "token-0123456789abcdef\n"));
    }
  }

  SessionManager::Providers providers() const {
    SessionManager::Providers p;
    p["local"] = std::make_unique<LocalProvider>(paths, config.local);
    for (const auto& [name, a] : config.accounts)
      p[name] = std::make_unique<RemoteProvider>(a, paths.dir);
    return p;
  }

  v1::DiagnoseResponse run() {
    boost::asio::io_context io;  // the session's reconnect watchdog would run here; none does
    SessionManager sessions(paths, config, providers(), io.get_executor());
    return diagnose(sessions, paths, DiagnoseOptions{std::chrono::seconds(3)});
  }

  TempDir dir;
  StatePaths paths;
  OffloadConfig config;
  std::string address;
};

std::vector<std::string> names(const v1::DiagnoseResponse& r) {
  std::vector<std::string> out;
  for (const auto& c : r.checks()) out.push_back(c.name());
  return out;
}

const v1::Check& check(const v1::DiagnoseResponse& r, const std::string& name) {
  for (const auto& c : r.checks())
    if (c.name() == name) return c;
  static v1::Check none;
  ADD_FAILURE() << "no check " << name;
  return none;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST(Diagnose, RemoteRunnerDownWithoutSession) {
  Machine setup("gpu");
  auto r = setup.run();
  EXPECT_EQ(names(r), (std::vector<std::string>{"daemon", "account", "runner reachable", "session",
                                                "docker context", "port conflicts"}));
  EXPECT_TRUE(check(r, "daemon").ok());
  EXPECT_EQ(check(r, "daemon").detail(), std::string("offloadd ") + OFFLOAD_VERSION + " (pid " +
                                             std::to_string(::getpid()) + ")");
  EXPECT_TRUE(check(r, "account").ok()) << check(r, "account").detail();
  EXPECT_EQ(check(r, "account").detail(), "gpu: remote runner at " + setup.address +
                                              ", token from " +
                                              display_path(setup.paths.dir / "gpu.token"));
  const auto& reach = check(r, "runner reachable");
  EXPECT_FALSE(reach.ok());
  EXPECT_TRUE(contains(reach.detail(), "runner unreachable at " + setup.address)) << reach.detail();
  EXPECT_EQ(reach.fix(), "check that offload-runner runs on " + setup.address +
                             " and that this machine can reach that port (firewall, VPN)");
  EXPECT_FALSE(check(r, "session").ok());
  EXPECT_EQ(check(r, "session").detail(), "no session");
  EXPECT_EQ(check(r, "session").fix(), "run `docker offload start`");
  EXPECT_TRUE(check(r, "docker context").ok());
  EXPECT_EQ(check(r, "docker context").detail(),
            "no docker-offload context yet (`docker offload start` writes it); the current "
            "context is default");
  EXPECT_TRUE(check(r, "port conflicts").ok());
  EXPECT_EQ(check(r, "port conflicts").detail(), "no published ports");
  for (const auto& c : r.checks())
    if (c.ok()) {
      EXPECT_EQ(c.fix(), "") << c.name();
    }
}

TEST(Diagnose, MissingTokenFileFailsTheAccount) {
  Machine setup("gpu", /*with_token=*/false);
  auto r = setup.run();
  const auto& account = check(r, "account");
  EXPECT_FALSE(account.ok());
  EXPECT_TRUE(contains(account.detail(), "gpu: cannot read the account token file " +
                                             display_path(setup.paths.dir / "gpu.token")))
      << account.detail();
  EXPECT_EQ(account.fix(), "write the account's token to " +
                               display_path(setup.paths.dir / "gpu.token") + " (chmod 600 it)");
  // The runner is still probed: reachability and TLS need no token.
  EXPECT_FALSE(check(r, "runner reachable").ok());
}

TEST(Diagnose, TokenIsNeverInTheReport) {
  Machine setup("gpu");
  auto r = setup.run();
  for (const auto& c : r.checks()) {
    EXPECT_FALSE(contains(c.detail(), "token-0123456789abcdef")) << c.name();
    EXPECT_FALSE(contains(c.fix(), "token-0123456789abcdef")) << c.name();
  }
}

TEST(Diagnose, DefaultAccountThatIsNotConfigured) {
  Machine setup("local");
  setup.config.default_account = "gone";
  auto r = setup.run();
  const auto& account = check(r, "account");
  EXPECT_FALSE(account.ok());
  EXPECT_EQ(account.detail(), "account \"gone\" is not configured (accounts: gpu, local)");
  EXPECT_EQ(account.fix(), "set \"defaultAccount\" in config.json to one of the accounts");
}

TEST(Diagnose, LocalAccountWithoutSessionHasNoRunnerToProbe) {
  Machine setup("local");
  auto r = setup.run();
  EXPECT_EQ(names(r), (std::vector<std::string>{"daemon", "account", "runner reachable", "session",
                                                "docker context", "port conflicts"}));
  EXPECT_TRUE(check(r, "runner reachable").ok());
  EXPECT_EQ(check(r, "runner reachable").detail(),
            "no runner now: the local account starts one with `docker offload start`");
  // Whether this machine can host the local runner depends on where the test runs.
  const auto& account = check(r, "account");
  if (account.ok())
    EXPECT_EQ(account.detail(), "local: embedded runner on this machine");
  else
    EXPECT_TRUE(contains(account.fix(), "sudo docker offload start"));
}

TEST(Diagnose, BrokenDockerConfigFailsTheContextCheck) {
  Machine setup("local");
  ASSERT_FALSE(write_file_atomic(setup.paths.docker_config / "config.json", "{"));
  auto r = setup.run();
  const auto& context = check(r, "docker context");
  EXPECT_FALSE(context.ok());
  EXPECT_TRUE(contains(context.detail(), "config.json")) << context.detail();
  EXPECT_EQ(context.fix(),
            "repair or remove the file named above (the docker CLI cannot use it either)");
}

TEST(Diagnose, ExistingContextWithoutSessionIsFine) {
  Machine setup("local");
  ContextStore contexts(setup.paths.docker_config);
  contexts.write_context("docker-offload", "unix:///elsewhere.sock", "x");
  contexts.use_context("desktop");
  auto r = setup.run();
  EXPECT_TRUE(check(r, "docker context").ok());
  EXPECT_EQ(check(r, "docker context").detail(),
            "docker-offload exists; the current context is desktop");
}
