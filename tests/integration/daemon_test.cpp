// offloadd in process, with an in-process runner over loopback TLS: the docker.sock endpoint,
// the context switch, half-close through an Upgrade, session end, stop and re-attach.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <future>
#include <netinet/in.h>
#include <sys/socket.h>
#include <thread>

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

// A TCP relay in front of the runner that the test can cut, like a network that goes away and
// comes back: while cut, existing connections are closed and new ones refused. Plain blocking
// sockets and threads: it must be obviously right, it is the test's instrument.
class CuttableRelay {
 public:
  explicit CuttableRelay(const std::string& target) : target_(target) {
    auto colon = target.rfind(':');
    target_port_ = std::stoi(target.substr(colon + 1));
    listen(0);
  }
  ~CuttableRelay() {
    cut();
    for (auto& t : threads_) t.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void cut() {
    std::lock_guard lock(mu_);
    if (listener_ >= 0) {
      ::shutdown(listener_, SHUT_RDWR);
      ::close(listener_);
      listener_ = -1;
    }
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);  // the pumps close them
    fds_.clear();
  }
  void restore() { listen(port_); }

 private:
  static int connect_to(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }
  void listen(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind");
    ::listen(fd, 16);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    std::lock_guard lock(mu_);
    listener_ = fd;
    threads_.emplace_back([this, fd] { accept_loop(fd); });
  }
  void accept_loop(int listener) {
    for (;;) {
      int client = ::accept(listener, nullptr, nullptr);
      if (client < 0) return;
      int upstream = connect_to(target_port_);
      if (upstream < 0) {
        ::close(client);
        continue;
      }
      std::lock_guard lock(mu_);
      fds_.push_back(client);
      fds_.push_back(upstream);
      threads_.emplace_back([client, upstream] { pump(client, upstream); });
      threads_.emplace_back([client, upstream] { pump(upstream, client); });
    }
  }
  static void pump(int from, int to) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(from, buf, sizeof buf);
      if (n <= 0) break;
      if (::send(to, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
    }
    ::shutdown(to, SHUT_RDWR);
    ::shutdown(from, SHUT_RDWR);
  }

  std::string target_;
  int target_port_ = 0;
  int port_ = 0;
  std::mutex mu_;
  int listener_ = -1;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
};

class TestProvider final : public daemon::Provider {
 public:
  explicit TestProvider(InProcessRunner& runner, std::atomic<int>& released,
                        std::string address = {})
      : runner_(runner), released_(released), address_(std::move(address)) {}
  std::string type() const override { return "test"; }
  std::string description() const override { return "in-process runner"; }
  daemon::ProvisionedRunner provision(std::chrono::milliseconds) override {
    daemon::ProvisionedRunner p;
    p.endpoint = {address_.empty() ? runner_.address() : address_, runner_.identity.fingerprint,
                  runner_.token};
    return p;
  }
  void release(const daemon::ProvisionedRunner&) override { ++released_; }

 private:
  InProcessRunner& runner_;
  std::atomic<int>& released_;
  std::string address_;
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

  std::unique_ptr<daemon::Daemon> make_daemon(std::string runner_address = {},
                                              std::chrono::milliseconds client_ttl = {}) {
    OffloadConfig config;
    config.default_account = "test";
    if (client_ttl.count() > 0) config.client_ttl = client_ttl;
    daemon::SessionManager::Providers providers;
    providers["test"] = std::make_unique<TestProvider>(*runner_, released_, runner_address);
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

TEST_F(DaemonTest, AStartThatFailsAfterTheSessionWasCreatedRollsItBack) {
  // state.json cannot be written (a directory is in its way): the session exists on the runner
  // by then, and the failed start must destroy it and release the runner.
  fs::create_directories(paths_->state_file / "in-the-way");
  try {
    daemon_->sessions().start({});
    FAIL() << "start succeeded without its state file";
  } catch (const daemon::ControlError& e) {
    EXPECT_EQ(e.code, grpc::StatusCode::INTERNAL);
    EXPECT_NE(std::string(e.what()).find("state.json"), std::string::npos) << e.what();
  }
  EXPECT_EQ(runner_->backend().created, 1);
  EXPECT_EQ(runner_->service().session_count(), 0u);
  EXPECT_EQ(released_, 1);
  EXPECT_EQ(current_context(), "mine");
  EXPECT_EQ(daemon_->sessions().status().state(), v1::DAEMON_STATE_STOPPED);
  fs::remove_all(paths_->state_file);
  // Nothing of the failed start stands in the way of the next one.
  EXPECT_EQ(daemon_->sessions().start({}).status().state(), v1::DAEMON_STATE_STARTED);
  EXPECT_EQ(daemon_->sessions().stop().restored_context(), "mine");
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

bool wait_state(daemon::SessionManager& sessions, v1::DaemonState state) {
  for (int i = 0; i < 1500; ++i) {  // bounded: 30 s
    if (sessions.status().state() == state) return true;
    std::this_thread::sleep_for(20ms);  // the state crosses real gRPC streams and TCP
  }
  return false;
}

TEST_F(DaemonTest, ANetworkCutIsSurvivedByReconnecting) {
  runner_->target().set_behaviour(http_behaviour);
  CuttableRelay relay(runner_->address());
  daemon_.reset();
  daemon_ = make_daemon(relay.address());
  daemon_->start();
  daemon_->sessions().start({});
  EXPECT_NE(exchange("GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n").find("GET /_ping"),
            std::string::npos);

  relay.cut();
  ASSERT_TRUE(wait_state(daemon_->sessions(), v1::DAEMON_STATE_RECONNECTING));
  auto status = daemon_->sessions().status();
  EXPECT_FALSE(status.reconnect_error().empty());
  // Meanwhile a Docker client gets a clear answer, not a hang.
  auto out = exchange("GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n");
  EXPECT_NE(out.find("503"), std::string::npos) << out;
  EXPECT_NE(out.find("reconnecting"), std::string::npos) << out;
  EXPECT_EQ(runner_->service().session_count(), 1u);  // the session lives on

  relay.restore();
  ASSERT_TRUE(wait_state(daemon_->sessions(), v1::DAEMON_STATE_STARTED));
  EXPECT_NE(exchange("GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n").find("GET /_ping"),
            std::string::npos);
  EXPECT_EQ(daemon_->sessions().stop().restored_context(), "mine");
}

TEST_F(DaemonTest, ASessionThatEndedWhileUnreachableIsReportedAsEnded) {
  CuttableRelay relay(runner_->address());
  daemon_.reset();
  daemon_ = make_daemon(relay.address());
  daemon_->start();
  daemon_->sessions().start({});
  relay.cut();
  ASSERT_TRUE(wait_state(daemon_->sessions(), v1::DAEMON_STATE_RECONNECTING));
  runner_->service().destroy_all("client TTL expired");
  relay.restore();
  ASSERT_TRUE(wait_state(daemon_->sessions(), v1::DAEMON_STATE_ENDED));
  auto notices = daemon_->sessions().take_notices();
  ASSERT_FALSE(notices.empty());
  EXPECT_NE(notices.back().find("ended"), std::string::npos);
  EXPECT_TRUE(daemon_->sessions().take_notices().empty());  // each notice once
  EXPECT_EQ(daemon_->sessions().stop().restored_context(), "mine");
}

TEST_F(DaemonTest, ACutLongerThanTheClientTtlEndsTheSessionOnTheRunner) {
  // Sessions that outlive their client by one second only.
  CuttableRelay relay(runner_->address());
  daemon_.reset();
  daemon_ = make_daemon(relay.address(), std::chrono::seconds(1));
  daemon_->start();
  daemon_->sessions().start({});
  ASSERT_EQ(runner_->service().session_count(), 1u);
  relay.cut();
  // The runner notices its client is gone, waits out the TTL and tears the session down on its
  // own: nothing is left even though the client never comes back.
  bool gone = false;
  for (int i = 0; i < 1500 && !gone; ++i) {  // bounded: 30 s
    gone = runner_->service().session_count() == 0;
    if (!gone) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(gone);
  relay.restore();
  ASSERT_TRUE(wait_state(daemon_->sessions(), v1::DAEMON_STATE_ENDED));
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
