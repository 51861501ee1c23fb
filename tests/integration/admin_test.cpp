// The runner's admin socket and metrics in one process: a RunnerService with an in-process
// engine, the AdminServer on a temporary unix socket, offloadd's RunnerClient as the client.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <future>
#include <optional>
#include <thread>

#include "offload/common/token.h"
#include "offload/daemon/runner_client.h"
#include "offload/runner/admin.h"
#include "offload/runner/metrics.h"
#include "offload/runner/runner_service.h"
#include "offload/tunnel/pump.h"
#include "test_target.h"

namespace offload::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

// A sample of the Prometheus text: `name{labels} value`, or 0 when absent.
double sample(const std::string& text, const std::string& series) {
  auto at = text.find("\n" + series + " ");
  if (at == std::string::npos) return 0;
  return std::stod(text.substr(at + series.size() + 2));
}
double metric(const std::string& series) {
  return sample(runner::RunnerMetrics::global().text(), series);
}

// Answers every request with a small 200, like dockerd's /_ping.
asio::awaitable<void> ping_behaviour(stream_protocol::socket s) {
  std::string in;
  char buf[4096];
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tok);
    if (ec) co_return;
    in.append(buf, n);
    for (auto end = in.find("\r\n\r\n"); end != std::string::npos; end = in.find("\r\n\r\n")) {
      in.erase(0, end + 4);
      constexpr std::string_view kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK";
      auto [wec, wn] = co_await asio::async_write(s, asio::buffer(kOk), tok);
      if (wec) co_return;
    }
  }
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("offload-admin-" + random_hex(4));
    fs::create_directories(dir_);
    runner_ = std::make_unique<InProcessRunner>(dir_);
    runner_->target().set_behaviour(ping_behaviour);
    work_.emplace(io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    admin_.reset();
    work_.reset();
    io_.stop();
    thread_.join();
    runner_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<daemon::RunnerClient> new_session(const std::string& label) {
    auto client = std::make_unique<daemon::RunnerClient>(
        daemon::RunnerEndpoint{runner_->address(), runner_->identity.fingerprint, runner_->token});
    auto created = client->create_session(label, 10s);
    client->attach(created.session_id(), created.session_token());
    return client;
  }

  void start_admin(uid_t allowed = ::geteuid()) {
    admin_ = std::make_unique<runner::AdminServer>(dir_ / "admin" / "admin.sock",
                                                   runner_->service(), SystemClock::instance(),
                                                   allowed);
  }

  // One HTTP request through an engine tunnel; returns the response. The tunnel closes after.
  std::string ping_through_tunnel(daemon::RunnerClient& client) {
    stream_protocol::socket local(io_), app(io_);
    asio::local::connect_pair(local, app);
    auto stream = client.open_engine_tunnel("admin-test");
    std::promise<void> done;
    asio::co_spawn(
        asio::make_strand(io_),
        [stream, &done, local = std::move(local)]() mutable -> asio::awaitable<void> {
          co_await tunnel::splice(local, *stream);
          stream->release();
          co_await stream->async_wait_done(asio::use_awaitable);
          done.set_value();
        },
        asio::detached);
    constexpr std::string_view kPing = "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
    asio::write(app, asio::buffer(kPing));
    std::string response;
    char c = 0;
    while (!response.ends_with("\r\n\r\nOK")) {
      boost::system::error_code ec;
      asio::read(app, asio::buffer(&c, 1), ec);
      if (ec) break;
      response += c;
    }
    app.shutdown(stream_protocol::socket::shutdown_send);
    char rest[64];
    boost::system::error_code ec;
    while (!ec) app.read_some(asio::buffer(rest), ec);  // until the runner closes its side
    EXPECT_EQ(done.get_future().wait_for(10s), std::future_status::ready);
    return response;
  }

  fs::path dir_;
  std::unique_ptr<InProcessRunner> runner_;
  std::unique_ptr<runner::AdminServer> admin_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
};

TEST_F(AdminTest, ListsInspectsByPrefixAndCountsTunnelTraffic) {
  const double tunnels_before = metric("offload_runner_tunnels_total");
  const double in_before = metric("offload_runner_tunnel_bytes_total{direction=\"in\"}");
  const double api_before = metric("offload_runner_api_request_seconds_count");
  const double started_before = metric("offload_runner_session_starts_total{result=\"ok\"}");
  auto client = new_session("laptop-1");
  EXPECT_EQ(metric("offload_runner_session_starts_total{result=\"ok\"}"), started_before + 1);
  EXPECT_NE(ping_through_tunnel(*client).find("200 OK"), std::string::npos);

  start_admin();
  EXPECT_EQ(fs::status(dir_ / "admin" / "admin.sock").permissions() & fs::perms::all,
            fs::perms(0600));
  EXPECT_EQ(fs::status(dir_ / "admin").permissions() & fs::perms::all, fs::perms(0700));
  auto stub = runner::connect_admin(dir_ / "admin" / "admin.sock");
  v1::ListSessionsResponse list;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub->ListSessions(&ctx, {}, &list).ok());
  }
  ASSERT_EQ(list.sessions_size(), 1);
  const auto& listed = list.sessions(0);
  EXPECT_EQ(listed.id(), client->session_id());
  EXPECT_EQ(listed.account(), "test");
  EXPECT_EQ(listed.client_label(), "laptop-1");
  EXPECT_EQ(listed.containers_total(), 0);
  EXPECT_EQ(listed.tunnels_total(), 1u);
  constexpr std::string_view kPing = "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
  EXPECT_EQ(listed.tunnel_bytes_in(), kPing.size());
  EXPECT_GT(listed.tunnel_bytes_out(), 0u);
  EXPECT_EQ(listed.cpu_seconds(), -1);  // no cgroup for an in-process engine

  // The process's metrics moved with it.
  EXPECT_EQ(metric("offload_runner_tunnels_total"), tunnels_before + 1);
  EXPECT_EQ(metric("offload_runner_tunnel_bytes_total{direction=\"in\"}"),
            in_before + static_cast<double>(kPing.size()));
  EXPECT_EQ(metric("offload_runner_api_request_seconds_count"), api_before + 1);

  v1::InspectSessionRequest request;
  request.set_id(client->session_id().substr(0, 5));
  v1::AdminSession inspected;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->InspectSession(&ctx, request, &inspected).ok());
  EXPECT_EQ(inspected.id(), client->session_id());

  request.set_id("zz");
  grpc::ClientContext ctx2;
  auto st = stub->InspectSession(&ctx2, request, &inspected);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("no session zz"), std::string::npos);
}

TEST_F(AdminTest, RmEndsTheSessionAndItsClientSeesTheReason) {
  auto client = new_session("laptop-2");
  auto other = new_session("laptop-3");
  start_admin();
  // The client follows its session's events, as offloadd does.
  grpc::ClientContext events_ctx;
  client->authorize(events_ctx);
  auto events = client->stub().Events(&events_ctx, v1::EventsRequest{});
  v1::SessionEvent event;
  ASSERT_TRUE(events->Read(&event));
  EXPECT_EQ(event.state(), v1::SESSION_STATE_RUNNING);

  const double admin_before = metric("offload_runner_session_ends_total{reason=\"admin\"}");
  auto stub = runner::connect_admin(dir_ / "admin" / "admin.sock");
  v1::RemoveSessionsRequest rm;
  rm.add_ids(client->session_id().substr(0, 12));
  rm.add_ids("nosuchsession");
  rm.set_reason("maintenance at 18:00");
  v1::RemoveSessionsResponse removed;
  grpc::ClientContext ctx;
  ASSERT_TRUE(stub->RemoveSessions(&ctx, rm, &removed).ok());
  ASSERT_EQ(removed.results_size(), 2);
  EXPECT_EQ(removed.results(0).id(), client->session_id());
  EXPECT_EQ(removed.results(0).error(), "");
  EXPECT_NE(removed.results(1).error().find("no session nosuchsession"), std::string::npos);

  std::string reason;
  for (int i = 0; i < 10 && events->Read(&event); ++i)
    if (event.state() == v1::SESSION_STATE_ENDED) reason = event.reason();
  EXPECT_EQ(reason, "maintenance at 18:00");
  EXPECT_TRUE(runner_->backend().last != nullptr);
  EXPECT_EQ(runner_->service().session_count(), 1u);  // the other one lives on
  EXPECT_NE(runner_->service().find_session(other->session_id()), nullptr);
  EXPECT_EQ(metric("offload_runner_session_ends_total{reason=\"admin\"}"), admin_before + 1);
}

TEST_F(AdminTest, RefusesPeersOtherThanTheAllowedUid) {
  start_admin(::geteuid() + 4242);  // as a non-root peer would be refused by a root runner
  auto stub = runner::connect_admin(dir_ / "admin" / "admin.sock");
  v1::ListSessionsResponse list;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 3s);
  auto st = stub->ListSessions(&ctx, {}, &list);
  EXPECT_FALSE(st.ok());
  EXPECT_GE(admin_->refused(), 1);
}

TEST_F(AdminTest, ASecondServerOnALiveSocketIsRefused) {
  start_admin();
  EXPECT_THROW(runner::AdminServer(dir_ / "admin" / "admin.sock", runner_->service(),
                                   SystemClock::instance(), ::geteuid()),
               std::runtime_error);
}

}  // namespace
}  // namespace offload::testing
