// Admin and observability of a real `offload-runner serve` (issue 12, item 4): a session with a
// real engine moves data through a tunnel; the Prometheus endpoint (curl) shows the counters
// move; `offload-runner sessions ls|inspect|rm` see and end it; the gRPC health service answers
// without a token; --log-format json writes JSON lines. Needs root and docker.io; skips otherwise.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <filesystem>
#include <future>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"
#include "offload/daemon/runner_client.h"
#include "offload/engine/engine.h"
#include "offload/runner/docker_backend.h"
#include "offload/tls/tls.h"
#include "offload/tunnel/pump.h"

using namespace offload;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
namespace fs = std::filesystem;
namespace asio = boost::asio;
using asio::local::stream_protocol;

namespace {

const fs::path kRunnerBin = OFFLOAD_RUNNER_BIN;

std::string slurp(const fs::path& path) {
  std::string text;
  (void)read_file(path, text);
  return text;
}

// A sample of the Prometheus text, or -1 when absent.
double sample(const std::string& text, const std::string& series) {
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

int free_port() {
  asio::io_context io;
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

class ObserveRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (auto missing = engine::check_prerequisites(); !missing.empty()) GTEST_SKIP() << missing;
    if (!find_program("curl")) GTEST_SKIP() << "needs curl (scripts/install-deps.sh)";
    const std::string tag = random_hex(4);
    dir_ = fs::temp_directory_path() / ("offload-observe-e2e-" + tag);
    run_dir_ = fs::path("/run") / ("offload-test-observe-" + tag);
    ASSERT_FALSE(ensure_private_dir(dir_));
    token_ = random_hex(24);
    ASSERT_FALSE(write_file_atomic(dir_ / "tokens", "e2e:" + token_ + "\n"));
    pool_ = "10.253." + std::to_string(::getpid() % 250) + ".0/24";
    work_.emplace(io_.get_executor());
    io_thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      for (int i = 0; i < 1200 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(100ms);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    work_.reset();
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
    if (!dir_.empty()) {
      runner::DockerSessionBackend backend(
          {dir_ / "state", run_dir_, asio::ip::make_network_v4(pool_), {}, {}});
      for (const auto& line : backend.destroy_leftovers()) std::cout << "[teardown] " << line << "\n";
      if (HasFailure()) std::cout << "[runner log]\n" << slurp(dir_ / "runner.out") << "\n";
      std::error_code ec;
      fs::remove_all(dir_, ec);
      fs::remove_all(run_dir_, ec);
    }
  }

  void start_runner() {
    metrics_port_ = free_port();
    SpawnOptions options;
    options.log_file = dir_ / "runner.out";
    std::string error;
    pid_ = spawn_process({kRunnerBin.string(), "serve", "--listen", "127.0.0.1:0", "--token-file",
                          (dir_ / "tokens").string(), "--state-dir", (dir_ / "state").string(),
                          "--run-dir", run_dir_.string(), "--address-pool", pool_, "--ready-file",
                          (dir_ / "ready.json").string(), "--metrics-address",
                          "127.0.0.1:" + std::to_string(metrics_port_), "--log-format", "json"},
                         options, error);
    ASSERT_GT(pid_, 0) << error;
    for (int i = 0; i < 1200; ++i) {
      auto doc = nlohmann::json::parse(slurp(dir_ / "ready.json"), nullptr, false);
      if (doc.is_object()) {
        address_ = doc.value("address", "");
        fingerprint_ = doc.value("fingerprint", "");
        return;
      }
      int status = 0;
      ASSERT_EQ(::waitpid(pid_, &status, WNOHANG), 0) << slurp(dir_ / "runner.out");
      std::this_thread::sleep_for(100ms);
    }
    FAIL() << "no ready file within 120 s";
  }

  std::string metrics() {
    auto r = run_command({"curl", "-sf", "--max-time", "10",
                          "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"});
    EXPECT_TRUE(r.ok()) << r.output;
    return "\n" + r.output;
  }

  CommandResult sessions(std::vector<std::string> args) {
    std::vector<std::string> argv = {kRunnerBin.string(), "sessions", "--admin-socket",
                                     (run_dir_ / "admin.sock").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
  }

  // GET /_ping through an engine tunnel, as the docker CLI's first request does.
  std::string ping_through_tunnel(daemon::RunnerClient& client) {
    stream_protocol::socket local(io_), app(io_);
    asio::local::connect_pair(local, app);
    auto stream = client.open_engine_tunnel("e2e");
    auto done = std::make_shared<std::promise<void>>();
    asio::co_spawn(
        asio::make_strand(io_),
        [stream, done, local = std::move(local)]() mutable -> asio::awaitable<void> {
          co_await tunnel::splice(local, *stream);
          stream->release();
          co_await stream->async_wait_done(asio::use_awaitable);
          done->set_value();
        },
        asio::detached);
    constexpr std::string_view kPing = "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
    asio::write(app, asio::buffer(kPing));
    std::string response;
    char c = 0;
    for (int i = 0; i < 4096 && !response.ends_with("\r\n\r\nOK"); ++i) {
      boost::system::error_code ec;
      asio::read(app, asio::buffer(&c, 1), ec);
      if (ec) break;
      response += c;
    }
    app.shutdown(stream_protocol::socket::shutdown_send);
    boost::system::error_code ec;
    char rest[256];
    while (!ec) app.read_some(asio::buffer(rest), ec);
    EXPECT_EQ(done->get_future().wait_for(30s), std::future_status::ready);
    return response;
  }

  // grpc.health.v1.Health/Check with no token: the serialized response (08 01 = SERVING).
  grpc::Status health_check(std::string& response_bytes) {
    auto channel = grpc::CreateChannel(address_, tls::pinned_channel_credentials(fingerprint_));
    grpc::GenericStub stub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    grpc::Slice empty("");  // HealthCheckRequest{service: ""} serializes to no bytes
    grpc::ByteBuffer request(&empty, 1), response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                   [&](grpc::Status st) { done.set_value(st); });
    auto status = done.get_future().get();
    std::vector<grpc::Slice> slices;
    response_bytes.clear();
    if (status.ok() && response.Dump(&slices).ok())
      for (const auto& s : slices)
        response_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    return status;
  }

  fs::path dir_, run_dir_;
  std::string token_, pool_, address_, fingerprint_;
  int metrics_port_ = 0;
  pid_t pid_ = 0;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread io_thread_;
};

TEST_F(ObserveRootTest, MetricsMoveAdminCommandsSeeAndEndTheSessionHealthAnswers) {
  start_runner();
  ASSERT_FALSE(address_.empty());

  // Health: answered without any token.
  std::string health;
  auto hst = health_check(health);
  ASSERT_TRUE(hst.ok()) << hst.error_message();
  EXPECT_EQ(health, std::string("\x08\x01", 2));  // status: SERVING

  auto before = metrics();
  EXPECT_EQ(sample(before, "offload_runner_sessions{state=\"running\"}"), 0);
  EXPECT_EQ(sample(before, "offload_runner_tunnels_total"), 0);

  daemon::RunnerClient client({address_, fingerprint_, token_});
  auto created = client.create_session("e2e-laptop", 120s);
  const std::string id = created.session_id();
  client.attach(id, created.session_token());
  EXPECT_THAT(ping_through_tunnel(client), HasSubstr("200 OK"));

  auto after = metrics();
  EXPECT_EQ(sample(after, "offload_runner_sessions{state=\"running\"}"), 1);
  EXPECT_EQ(sample(after, "offload_runner_session_starts_total{result=\"ok\"}"), 1);
  EXPECT_EQ(sample(after, "offload_runner_engine_start_seconds_count"), 1);
  EXPECT_EQ(sample(after, "offload_runner_tunnels_total"), 1);
  EXPECT_EQ(sample(after, "offload_runner_tunnels_open"), 0);
  EXPECT_GT(sample(after, "offload_runner_tunnel_bytes_total{direction=\"in\"}"), 0);
  EXPECT_GT(sample(after, "offload_runner_tunnel_bytes_total{direction=\"out\"}"), 0);
  EXPECT_GE(sample(after, "offload_runner_api_request_seconds_count"), 1);

  // sessions ls (table and JSON), inspect by prefix.
  auto ls = sessions({"ls"});
  ASSERT_TRUE(ls.ok()) << ls.output;
  EXPECT_THAT(ls.output, HasSubstr("SESSION ID"));
  EXPECT_THAT(ls.output, HasSubstr(id.substr(0, 12)));
  EXPECT_THAT(ls.output, HasSubstr("e2e-laptop"));
  auto ls_json = sessions({"ls", "--format", "json"});
  ASSERT_TRUE(ls_json.ok()) << ls_json.output;
  auto list = nlohmann::json::parse(ls_json.output, nullptr, false);
  ASSERT_TRUE(list.is_array()) << ls_json.output;
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], id);
  EXPECT_EQ(list[0]["account"], "e2e");
  EXPECT_EQ(list[0]["containers"]["total"], 0);
  EXPECT_EQ(list[0]["tunnels"]["total"], 1);
  EXPECT_GT(list[0]["tunnels"]["bytes_out"].get<std::uint64_t>(), 0u);
  auto inspect = sessions({"inspect", id.substr(0, 8)});
  ASSERT_TRUE(inspect.ok()) << inspect.output;
  auto doc = nlohmann::json::parse(inspect.output, nullptr, false);
  ASSERT_TRUE(doc.is_object()) << inspect.output;
  EXPECT_EQ(doc["id"], id);
  EXPECT_EQ(doc["client_label"], "e2e-laptop");
  auto missing = sessions({"inspect", "ffffffffff"});
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(missing.output, HasSubstr("no session ffffffffff"));

  // sessions rm: the client sees the session end with the operator's reason.
  grpc::ClientContext events_ctx;
  client.authorize(events_ctx);
  auto events = client.stub().Events(&events_ctx, v1::EventsRequest{});
  v1::SessionEvent event;
  ASSERT_TRUE(events->Read(&event));
  auto rm = sessions({"rm", id.substr(0, 10), "--reason", "e2e maintenance"});
  ASSERT_TRUE(rm.ok()) << rm.output;
  EXPECT_THAT(rm.output, HasSubstr(id));
  std::string reason;
  for (int i = 0; i < 20 && events->Read(&event); ++i)
    if (event.state() == v1::SESSION_STATE_ENDED) reason = event.reason();
  EXPECT_EQ(reason, "e2e maintenance");
  auto ended = metrics();
  EXPECT_EQ(sample(ended, "offload_runner_session_ends_total{reason=\"admin\"}"), 1);
  EXPECT_EQ(sample(ended, "offload_runner_sessions{state=\"running\"}"), 0);
  EXPECT_EQ(sample(ended, "offload_runner_sessions{state=\"stopping\"}"), 0);
  auto empty = sessions({"ls", "--format", "json"});
  EXPECT_EQ(nlohmann::json::parse(empty.output, nullptr, false), nlohmann::json::array());

  // The admin socket is root's alone.
  struct stat st {};
  ASSERT_EQ(::stat((run_dir_ / "admin.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // --log-format json: every line is one JSON object with time, level, message and fields.
  std::istringstream log(slurp(dir_ / "runner.out"));
  std::string line;
  int lines = 0, with_session = 0;
  while (std::getline(log, line)) {
    auto entry = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(entry.is_object()) << line;
    EXPECT_TRUE(entry.contains("time") && entry.contains("level") && entry.contains("message") &&
                entry.contains("fields"))
        << line;
    ++lines;
    with_session += entry["fields"].contains("session");
  }
  EXPECT_GT(lines, 3);
  EXPECT_GT(with_session, 0);
}

}  // namespace
