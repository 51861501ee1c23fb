// diagnose() against a real runner (in process, over loopback TLS) reached through a remote
// account from config.json: everything passes, a wrong pinned fingerprint fails the TLS check
// with its fix, a runner that went away fails reachability, a busy port is a conflict.
#include "offload/daemon/diagnose.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>

#include "offload/common/fs.h"
#include "offload/common/token.h"
#include "offload/daemon/daemon.h"
#include "offload/dockerctx/context_store.h"
#include "offload/v1/control.grpc.pb.h"
#include "test_target.h"

namespace offload::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

// dockerd's answer to GET /_ping with Connection: close.
asio::awaitable<void> ping_behaviour(stream_protocol::socket s) {
  std::string head;
  char buf[1024];
  while (head.find("\r\n\r\n") == std::string::npos) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tok);
    if (ec) co_return;
    head.append(buf, n);
  }
  std::string resp = head.rfind("GET /_ping HTTP/1.1\r\n", 0) == 0
                         ? "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK"
                         : "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  co_await asio::async_write(s, asio::buffer(resp), tok);
}

const v1::Check* find(const v1::DiagnoseResponse& r, const std::string& name) {
  for (const auto& c : r.checks())
    if (c.name() == name) return &c;
  return nullptr;
}

std::string dump(const v1::DiagnoseResponse& r) {
  std::string out;
  for (const auto& c : r.checks())
    out += (c.ok() ? "ok   " : "FAIL ") + c.name() + ": " + c.detail() +
           (c.fix().empty() ? "" : " -- " + c.fix()) + "\n";
  return out;
}

class DiagnoseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("offload-diagnose-" + random_hex(4));
    fs::create_directories(dir_ / "docker");
    runner_ = std::make_unique<InProcessRunner>(dir_);
    runner_->target().set_behaviour(ping_behaviour);
    paths_ = std::make_unique<StatePaths>(dir_ / "docker");
    ASSERT_FALSE(ensure_private_dir(paths_->dir));
    ASSERT_FALSE(write_file_atomic(paths_->dir / "gpu.token", runner_->token + "\n"));
  }

  void TearDown() override {
    daemon_.reset();
    runner_.reset();
    fs::remove_all(dir_);
  }

  // offloadd as run_daemon builds it: the local account plus the remote ones of config.json.
  void start_daemon(const std::string& fingerprint) {
    config_.default_account = "gpu";
    config_.accounts["gpu"] = RemoteAccountSettings{runner_->address(), "gpu.token", fingerprint};
    ASSERT_FALSE(write_file_atomic(paths_->config_file, to_json(config_)));
    daemon::SessionManager::Providers providers;
    providers["local"] = std::make_unique<daemon::LocalProvider>(*paths_, config_.local);
    for (const auto& [name, account] : config_.accounts)
      providers[name] = std::make_unique<daemon::RemoteProvider>(account, paths_->dir);
    daemon_ = std::make_unique<daemon::Daemon>(*paths_, config_, std::move(providers));
    daemon_->start();
  }

  v1::DiagnoseResponse diagnose() {
    return daemon::diagnose(daemon_->sessions(), *paths_, daemon::DiagnoseOptions{5s});
  }

  fs::path dir_;
  std::unique_ptr<InProcessRunner> runner_;
  std::unique_ptr<StatePaths> paths_;
  OffloadConfig config_;
  std::unique_ptr<daemon::Daemon> daemon_;
};

TEST_F(DiagnoseTest, EverythingPassesWithASession) {
  start_daemon(runner_->identity.fingerprint);
  daemon_->sessions().start({});
  auto r = diagnose();
  std::vector<std::string> names;
  for (const auto& c : r.checks()) {
    names.push_back(c.name());
    EXPECT_TRUE(c.ok()) << dump(r);
    EXPECT_EQ(c.fix(), "") << c.name();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"daemon", "account", "runner reachable",
                                             "TLS fingerprint", "session", "engine ping",
                                             "docker context", "port conflicts"}));
  EXPECT_EQ(find(r, "runner reachable")->detail().rfind(runner_->address() + ", round trip ", 0),
            0u)
      << dump(r);
  EXPECT_EQ(find(r, "TLS fingerprint")->detail(), "the runner's certificate matches the pinned " +
                                                      runner_->identity.fingerprint.substr(0, 19) +
                                                      "...");
  EXPECT_NE(find(r, "session")->detail().find("Docker test (API 1.41)"), std::string::npos)
      << dump(r);
  EXPECT_EQ(find(r, "engine ping")->detail().rfind("GET /_ping answered OK in ", 0), 0u) << dump(r);
  EXPECT_EQ(find(r, "docker context")->detail(),
            "docker-offload is current and points at unix://" + paths_->docker_socket.string());
  // The probe's tunnel reached the engine like any docker command.
  EXPECT_GE(runner_->target().accepted(), 1);
}

TEST_F(DiagnoseTest, WrongFingerprintFailsTheTlsCheckWithTheFix) {
  start_daemon("sha256:" + std::string(64, '0'));
  auto r = diagnose();
  const v1::Check* reach = find(r, "runner reachable");
  const v1::Check* pin = find(r, "TLS fingerprint");
  ASSERT_TRUE(reach && pin) << dump(r);
  EXPECT_TRUE(reach->ok()) << dump(r);
  EXPECT_FALSE(pin->ok());
  EXPECT_NE(pin->detail().find("does not match the pinned sha256:000000"), std::string::npos)
      << dump(r);
  EXPECT_NE(pin->detail().find(runner_->identity.fingerprint), std::string::npos) << dump(r);
  EXPECT_EQ(pin->fix(), "check the account's fingerprint in " + display_path(paths_->config_file) +
                            " against the one offload-runner prints when it starts");
  EXPECT_TRUE(find(r, "account")->ok()) << dump(r);
}

TEST_F(DiagnoseTest, WrongTokenFailsTheAccount) {
  ASSERT_FALSE(write_file_atomic(paths_->dir / "gpu.token", "not-the-token-0123456789\n"));
  start_daemon(runner_->identity.fingerprint);
  auto r = diagnose();
  EXPECT_TRUE(find(r, "runner reachable")->ok()) << dump(r);
  EXPECT_TRUE(find(r, "TLS fingerprint")->ok()) << dump(r);
  const v1::Check* account = find(r, "account");
  EXPECT_FALSE(account->ok());
  EXPECT_NE(account->detail().find("rejected the account token"), std::string::npos) << dump(r);
  EXPECT_EQ(account->fix(), "check that " + display_path(paths_->dir / "gpu.token") +
                                " holds the token the runner's operator gave you");
}

TEST_F(DiagnoseTest, RunnerDownFailsReachability) {
  start_daemon(runner_->identity.fingerprint);
  daemon_->sessions().start({});
  const std::string address = runner_->address();
  runner_.reset();
  auto r = diagnose();
  const v1::Check* reach = find(r, "runner reachable");
  ASSERT_TRUE(reach) << dump(r);
  EXPECT_FALSE(reach->ok());
  EXPECT_NE(reach->detail().find(address), std::string::npos) << dump(r);
  EXPECT_EQ(reach->fix(), "check that offload-runner runs on " + address +
                              " and that this machine can reach that port (firewall, VPN)");
  EXPECT_EQ(find(r, "TLS fingerprint"), nullptr) << dump(r);
  EXPECT_EQ(find(r, "engine ping"), nullptr) << dump(r);
  EXPECT_FALSE(find(r, "session")->ok()) << dump(r);
}

TEST_F(DiagnoseTest, AnotherCurrentContextFailsWithTheCommandToFixIt) {
  start_daemon(runner_->identity.fingerprint);
  daemon_->sessions().start({});
  ContextStore(paths_->docker_config).use_context("default");
  auto r = diagnose();
  const v1::Check* context = find(r, "docker context");
  EXPECT_FALSE(context->ok());
  EXPECT_EQ(context->detail(), "the current context is default, not docker-offload");
  EXPECT_EQ(context->fix(), "docker context use docker-offload");
}

TEST_F(DiagnoseTest, PortThatCannotBeForwardedIsAConflict) {
  start_daemon(runner_->identity.fingerprint);
  daemon_->sessions().start({});
  // Something else on this machine holds the port the container publishes.
  asio::io_context io;
  asio::ip::tcp::acceptor busy(io, {asio::ip::make_address("127.0.0.1"), 0});
  auto port = busy.local_endpoint().port();
  v1::PublishedPort p;
  p.set_container_id("0123456789abcdef");
  p.set_container_name("web");
  p.set_container_port(80);
  p.set_protocol("tcp");
  p.set_host_ip("127.0.0.1");
  p.set_host_port(port);
  runner_->backend().last->set_ports({p});
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (daemon_->sessions().status().ports().empty() &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  auto r = diagnose();
  const v1::Check* ports = find(r, "port conflicts");
  EXPECT_FALSE(ports->ok()) << dump(r);
  EXPECT_EQ(ports->detail().rfind("127.0.0.1:" + std::to_string(port) + " -> web:80/tcp: ", 0), 0u)
      << dump(r);
  EXPECT_EQ(ports->fix(),
            "stop the program that holds the port on this machine, or publish the container on "
            "another host port (e.g. -p 8082:80)");
}

TEST_F(DiagnoseTest, TheControlServiceAnswersDiagnose) {
  start_daemon(runner_->identity.fingerprint);
  daemon_->sessions().start({});
  auto channel = grpc::CreateChannel("unix:" + paths_->control_socket.string(),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Control::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 30s);
  v1::DiagnoseResponse r;
  ASSERT_TRUE(stub->Diagnose(&ctx, {}, &r).ok());
  for (const auto& c : r.checks()) EXPECT_TRUE(c.ok()) << dump(r);
  // The service found the daemon's own files: the context check compared against them.
  ASSERT_NE(find(r, "docker context"), nullptr) << dump(r);
  EXPECT_EQ(find(r, "docker context")->detail(),
            "docker-offload is current and points at unix://" + paths_->docker_socket.string());
}

}  // namespace
}  // namespace offload::testing
