// offloadd in process, with an in-process runner over loopback TLS: the docker.sock endpoint,
// the context switch, half-close through an Upgrade, session end, stop and re-attach.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <future>

#include "offload/common/fs.h"
#include "offload/common/token.h"
#include "offload/daemon/daemon.h"
#include "offload/dockerctx/context_store.h"
#include "test_target.h"

namespace offload::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

class TestProvider final : public daemon::Provider {
 public:
  explicit TestProvider(InProcessRunner& runner, std::atomic<int>& released)
      : runner_(runner), released_(released) {}
  std::string type() const override { return "test"; }
  std::string description() const override { return "in-process runner"; }
  daemon::ProvisionedRunner provision(std::chrono::milliseconds) override {
    daemon::ProvisionedRunner p;
    p.endpoint = {runner_.address(), runner_.identity.fingerprint, runner_.token};
    return p;
  }
  void release(const daemon::ProvisionedRunner&) override { ++released_; }

 private:
  InProcessRunner& runner_;
  std::atomic<int>& released_;
};

// Reads one request head, then answers like the engine's attach: 101, then echoes what it
// reads until the client's end-of-file, then closes.
asio::awaitable<void> attach_behaviour(stream_protocol::socket s) {
  std::string head;
  char c;
  while (head.find("\r\n\r\n") == std::string::npos) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(&c, 1), tok);
    if (ec) co_return;
    head += c;
  }
  if (head.find("Upgrade: tcp") == std::string::npos) {
    std::string body = "{\"message\":\"not an upgrade\"}";
    std::string resp = "HTTP/1.1 400 Bad Request\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body;
    co_await asio::async_write(s, asio::buffer(resp), tok);
    co_return;
  }
  std::string upgraded =
      "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
      "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
  co_await asio::async_write(s, asio::buffer(upgraded), tok);
  std::string stdin_data;
  char buf[4096];
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tok);
    stdin_data.append(buf, n);
    if (ec) break;
  }
  co_await asio::async_write(s, asio::buffer("stdin was: " + stdin_data), tok);
}

// Answers every request on the connection with 200 and the request line as body.
asio::awaitable<void> http_behaviour(stream_protocol::socket s) {
  std::string buffer;
  char buf[4096];
  for (;;) {
    auto end = buffer.find("\r\n\r\n");
    if (end == std::string::npos) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tok);
      if (ec) co_return;
      buffer.append(buf, n);
      continue;
    }
    std::string line = buffer.substr(0, buffer.find("\r\n"));
    buffer.erase(0, end + 4);
    std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                       std::to_string(line.size()) + "\r\n\r\n" + line;
    co_await asio::async_write(s, asio::buffer(resp), tok);
  }
}

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("offload-daemon-" + random_hex(4));
    fs::create_directories(dir_ / "docker");
    runner_ = std::make_unique<InProcessRunner>(dir_);
    // The user's docker config, with keys and a context that are not ours.
    user_config_ =
        "{\n\t\"auths\": {\n\t\t\"registry.example\": {}\n\t},\n\t\"currentContext\": \"mine\","
        "\n\t\"psFormat\": \"table {{.ID}}\"\n}";
    ASSERT_FALSE(write_file_atomic(dir_ / "docker" / "config.json", user_config_));
    ContextStore(dir_ / "docker").write_context("mine", "unix:///var/run/mine.sock", "mine");
    paths_ = std::make_unique<StatePaths>(dir_ / "docker");
    daemon_ = make_daemon();
    daemon_->start();
  }

  void TearDown() override {
    daemon_.reset();
    runner_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<daemon::Daemon> make_daemon() {
    OffloadConfig config;
    config.default_account = "test";
    daemon::SessionManager::Providers providers;
    providers["test"] = std::make_unique<TestProvider>(*runner_, released_);
    return std::make_unique<daemon::Daemon>(*paths_, config, std::move(providers));
  }

  // One exchange with docker.sock: send `request`, optionally half-close, read to end-of-file.
  std::string exchange(const std::string& request, bool half_close = true) {
    asio::io_context io;
    stream_protocol::socket s(io);
    s.connect(paths_->docker_socket.string());
    asio::write(s, asio::buffer(request));
    if (half_close) s.shutdown(stream_protocol::socket::shutdown_send);
    std::string out;
    char buf[4096];
    boost::system::error_code ec;
    while (!ec) out.append(buf, s.read_some(asio::buffer(buf), ec));
    return out;
  }

  std::string current_context() { return ContextStore(dir_ / "docker").current_context(); }

  fs::path dir_;
  std::string user_config_;
  std::unique_ptr<InProcessRunner> runner_;
  std::unique_ptr<StatePaths> paths_;
  std::atomic<int> released_{0};
  std::unique_ptr<daemon::Daemon> daemon_;
};

TEST_F(DaemonTest, SocketsArePrivate) {
  struct stat st {};
  ASSERT_EQ(::stat(paths_->dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(paths_->docker_socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(paths_->control_socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(DaemonTest, WithoutSessionEveryRequestGetsAJsonErrorSayingWhatToDo) {
  auto out = exchange(
      "HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
      "GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n\r\n");
  // Two pipelined requests, two answers, on the same connection.
  EXPECT_EQ(out.find("HTTP/1.1 503"), 0u) << out;
  auto second = out.find("HTTP/1.1 503", 1);
  ASSERT_NE(second, std::string::npos) << out;
  EXPECT_NE(out.find("application/json"), std::string::npos);
  EXPECT_NE(out.find("{\"message\":\"no offload session: run `docker offload start`", second),
            std::string::npos)
      << out;
}

TEST_F(DaemonTest, StartSwitchesTheContextAndTunnelsRequests) {
  runner_->target().set_behaviour(http_behaviour);
  auto started = daemon_->sessions().start({});
  EXPECT_EQ(started.previous_context(), "mine");
  EXPECT_EQ(started.status().state(), v1::DAEMON_STATE_STARTED);
  EXPECT_EQ(current_context(), kOffloadContextName);
  EXPECT_EQ(ContextStore(dir_ / "docker").context_host(kOffloadContextName),
            "unix://" + paths_->docker_socket.string());
  std::string config;
  ASSERT_FALSE(read_file(dir_ / "docker" / "config.json", config));
  EXPECT_NE(config.find("registry.example"), std::string::npos);
  EXPECT_NE(config.find("psFormat"), std::string::npos);
  EXPECT_TRUE(fs::exists(paths_->state_file));

  auto out = exchange(
      "GET /v1.41/version HTTP/1.1\r\nHost: docker\r\n\r\n"
      "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n");
  EXPECT_NE(out.find("200 OK"), std::string::npos) << out;
  EXPECT_NE(out.find("GET /v1.41/version HTTP/1.1"), std::string::npos) << out;
  EXPECT_NE(out.find("GET /_ping HTTP/1.1"), std::string::npos) << out;
}

TEST_F(DaemonTest, StdinEndOfFileReachesTheEngineThroughAnUpgrade) {
  runner_->target().set_behaviour(attach_behaviour);
  daemon_->sessions().start({});
  auto out = exchange(
      "POST /v1.41/containers/abc/attach?stdin=1&stdout=1&stream=1 HTTP/1.1\r\n"
      "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
      "data\n");
  EXPECT_EQ(out.find("HTTP/1.1 101 UPGRADED"), 0u) << out;
  EXPECT_NE(out.find("stdin was: data\n"), std::string::npos) << out;
}

TEST_F(DaemonTest, StopRestoresTheContextAndDestroysTheSession) {
  daemon_->sessions().start({});
  EXPECT_EQ(runner_->service().session_count(), 1u);
  auto stopped = daemon_->sessions().stop();
  EXPECT_TRUE(stopped.had_session());
  EXPECT_EQ(stopped.restored_context(), "mine");
  EXPECT_EQ(current_context(), "mine");
  EXPECT_EQ(runner_->service().session_count(), 0u);
  EXPECT_EQ(released_, 1);
  EXPECT_FALSE(fs::exists(paths_->state_file));
  // Every key of the user's config is as it was.
  std::string config;
  ASSERT_FALSE(read_file(dir_ / "docker" / "config.json", config));
  EXPECT_EQ(config, user_config_);
  EXPECT_NE(exchange("GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n").find("503"), std::string::npos);
}

TEST_F(DaemonTest, ACorruptDockerConfigStopsStartBeforeAnythingIsCreated) {
  std::string corrupt = "{\"currentContext\": \"mine\",";
  ASSERT_FALSE(write_file_atomic(dir_ / "docker" / "config.json", corrupt));
  try {
    daemon_->sessions().start({});
    FAIL() << "start succeeded with a corrupt config.json";
  } catch (const daemon::ControlError& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("untouched"), std::string::npos) << e.what();
  }
  std::string after;
  ASSERT_FALSE(read_file(dir_ / "docker" / "config.json", after));
  EXPECT_EQ(after, corrupt);
  EXPECT_EQ(runner_->backend().created, 0);
  EXPECT_EQ(daemon_->sessions().status().state(), v1::DAEMON_STATE_STOPPED);
}

TEST_F(DaemonTest, ACancelledStartLeavesNothingRunning) {
  try {
    daemon_->sessions().start({}, [] { return true; });
    FAIL() << "a cancelled start succeeded";
  } catch (const daemon::ControlError& e) {
    EXPECT_EQ(e.code, grpc::StatusCode::CANCELLED);
  }
  EXPECT_EQ(runner_->service().session_count(), 0u);
  EXPECT_EQ(released_, 1);
  EXPECT_EQ(current_context(), "mine");
  EXPECT_FALSE(fs::exists(paths_->state_file));
  EXPECT_EQ(daemon_->sessions().status().state(), v1::DAEMON_STATE_STOPPED);
}

TEST_F(DaemonTest, ASessionEndedOnTheRunnerIsReportedToDockerClients) {
  daemon_->sessions().start({});
  runner_->service().destroy_all("engine exited");
  for (int i = 0; i < 200 && daemon_->sessions().status().state() != v1::DAEMON_STATE_ENDED; ++i)
    std::this_thread::sleep_for(10ms);  // the event crosses a real gRPC stream
  EXPECT_EQ(daemon_->sessions().status().state(), v1::DAEMON_STATE_ENDED);
  EXPECT_EQ(daemon_->sessions().status().ended_reason(), "engine exited");
  auto out = exchange("GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n");
  EXPECT_NE(out.find("the offload session ended (engine exited)"), std::string::npos) << out;
  auto stopped = daemon_->sessions().stop();
  EXPECT_EQ(stopped.restored_context(), "mine");
  EXPECT_EQ(current_context(), "mine");
}

TEST_F(DaemonTest, ARestartedDaemonReattachesToTheSession) {
  runner_->target().set_behaviour(http_behaviour);
  daemon_->sessions().start({});
  daemon_.reset();  // like a crash: the session stays, state.json stays
  EXPECT_EQ(runner_->service().session_count(), 1u);
  daemon_ = make_daemon();
  daemon_->start();
  EXPECT_EQ(daemon_->sessions().status().state(), v1::DAEMON_STATE_STARTED);
  auto out = exchange("GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n");
  EXPECT_NE(out.find("GET /_ping"), std::string::npos) << out;
  EXPECT_EQ(daemon_->sessions().stop().restored_context(), "mine");
}

TEST_F(DaemonTest, ACorruptStateFileIsSetAsideAndTheDaemonStarts) {
  daemon_.reset();
  ASSERT_FALSE(write_file_atomic(paths_->state_file, "{not json"));
  daemon_ = make_daemon();
  daemon_->start();
  EXPECT_EQ(daemon_->sessions().status().state(), v1::DAEMON_STATE_STOPPED);
  EXPECT_FALSE(fs::exists(paths_->state_file));
  bool kept = false;
  for (auto& e : fs::directory_iterator(paths_->dir))
    kept |= e.path().filename().string().rfind("state.json.corrupt-", 0) == 0;
  EXPECT_TRUE(kept);
}

}  // namespace
}  // namespace offload::testing
