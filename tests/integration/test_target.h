// An in-process stand-in for a session engine: a unix-socket server whose behaviour per
// connection the test chooses, plus a SessionBackend that hands it to the runner.
#pragma once

#include <boost/asio.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <optional>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "offload/runner/data_channel_server.h"
#include "offload/runner/runner_service.h"
#include "offload/runner/session_backend.h"
#include "offload/tls/tls.h"

namespace offload::testing {

namespace asio = boost::asio;
using asio::local::stream_protocol;

// What the target does with each accepted connection (runs on the target's own io thread).
using ConnectionBehaviour = std::function<asio::awaitable<void>(stream_protocol::socket)>;

class TestTarget {
 public:
  explicit TestTarget(std::filesystem::path socket_path);
  ~TestTarget();
  void set_behaviour(ConnectionBehaviour b);
  const std::filesystem::path& path() const { return path_; }
  int accepted() const { return accepted_; }

 private:
  asio::awaitable<void> accept_loop();
  std::filesystem::path path_;
  asio::io_context io_;
  stream_protocol::acceptor acceptor_;
  std::mutex mu_;
  ConnectionBehaviour behaviour_;
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// Echoes everything; on end-of-file half-closes its own side after echoing all.
asio::awaitable<void> echo_behaviour(stream_protocol::socket s);

class TestEngine final : public runner::SessionEngine {
 public:
  explicit TestEngine(std::filesystem::path socket) : socket_(std::move(socket)) {}
  std::filesystem::path api_socket() const override { return socket_; }
  // Next to the test target's socket: the test's own directory, removed with it.
  std::filesystem::path sync_root() const override { return socket_.parent_path() / "sync"; }
  boost::asio::ip::address published_address() const override {
    return boost::asio::ip::make_address("127.0.0.1");
  }
  void watch(PortsCallback on_ports, RunningCallback on_running) override {
    std::lock_guard lock(mu_);
    on_change_ = std::move(on_ports);
    on_running_ = std::move(on_running);
    on_change_(ports_);
    on_running_(running_);
  }
  // How many "containers" run now.
  void set_running(std::size_t n) {
    std::lock_guard lock(mu_);
    running_ = n;
    if (on_running_) on_running_(running_);
  }
  // What the test's "containers" publish now (ports on 127.0.0.1).
  void set_ports(std::vector<v1::PublishedPort> ports) {
    std::lock_guard lock(mu_);
    ports_ = std::move(ports);
    if (on_change_) on_change_(ports_);
  }
  void describe(v1::SessionInfo& info) override {
    info.set_engine_version("test");
    info.set_engine_api_version("1.41");
  }
  bool alive() override { return true; }
  std::vector<v1::Container> list_containers(bool) override { return {}; }
  std::vector<v1::Image> list_images() override { return {}; }
  std::vector<std::string> destroy(const std::string&) override {
    destroyed = true;
    return {"test engine"};
  }
  bool destroyed = false;

 private:
  std::filesystem::path socket_;
  std::mutex mu_;
  std::vector<v1::PublishedPort> ports_;
  PortsCallback on_change_;
  std::size_t running_ = 0;
  RunningCallback on_running_;
};

class TestBackend final : public runner::SessionBackend {
 public:
  explicit TestBackend(std::filesystem::path socket) : socket_(std::move(socket)) {}
  std::unique_ptr<runner::SessionEngine> create(const std::string&) override {
    ++created;
    auto engine = std::make_unique<TestEngine>(socket_);
    last = engine.get();
    return engine;
  }
  std::atomic<int> created{0};
  TestEngine* last = nullptr;  // the most recent session's engine, for set_ports()

 private:
  std::filesystem::path socket_;
};

// A RunnerService on a loopback TLS port with a TestTarget as every session's engine.
class InProcessRunner {
 public:
  // `configure` adjusts the runner's options (accounts, limits) before the service starts.
  // It serves the data channel too (as offload-runner does by default) unless
  // `data_channel` is null.
  explicit InProcessRunner(const std::filesystem::path& dir,
                           std::function<void(runner::RunnerOptions&)> configure = {},
                           std::optional<runner::DataChannelSettings> data_channel =
                               runner::DataChannelSettings{});
  ~InProcessRunner();
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  TestTarget& target() { return target_; }
  TestBackend& backend() { return backend_; }
  runner::RunnerService& service() { return *service_; }
  // Null when started without one.
  runner::DataChannelServer* data_channel() { return data_channel_.get(); }
  tls::Identity identity;
  std::string token;

 private:
  TestTarget target_;
  TestBackend backend_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::unique_ptr<runner::RunnerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<runner::DataChannelServer> data_channel_;
  int port_ = 0;
};

}  // namespace offload::testing
