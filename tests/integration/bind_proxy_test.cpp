// The Docker API proxy with bind-mount synchronisation: a DockerEndpoint of a real session on an
// in-process runner, a fake engine that records every request it gets, and a fake BindSync that
// records calls and completes them from other threads (on demand where the test needs it).
// Create bodies are rewritten (also chunked ones) or passed byte for byte, refused creates are
// answered by the proxy alone, start waits for a flush, and the body of a wait response waits
// for one too while its head does not.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <condition_variable>
#include <deque>
#include <thread>

#include "offload/common/fs.h"
#include "offload/common/token.h"
#include "offload/daemon/bind_rewrite.h"
#include "offload/daemon/api_proxy.h"
#include "offload/daemon/bind_sync.h"
#include "offload/daemon/docker_endpoint.h"
#include "offload/daemon/session_manager.h"
#include "offload/runner/session.h"
#include "test_target.h"

namespace offload::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace bhttp = boost::beast::http;
using nlohmann::json;
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

// Polls `done` for up to 10 s: the condition crosses gRPC streams and other threads.
template <class F>
bool eventually(F done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

// The engine: answers each request with its own body (de-chunked by Beast) and records the
// request, raw bytes included. A wait gets its 200 head at once and its body when the test
// lets the containers exit, like dockerd; an Upgrade gets 101 and an echo.
class FakeEngine {
 public:
  struct Request {
    std::string raw;  // as received, head and body
    std::string method, target, body;
    std::string content_length;     // the field's value, "" if absent
    std::string transfer_encoding;  // the field's value, "" if absent
  };

  std::vector<Request> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::size_t count(std::string_view target_part) {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& r : requests_) n += r.target.find(target_part) != std::string::npos;
    return n;
  }
  bool wait_head_sent() { return wait_heads_ > 0; }

  // Every container "exits": waits answered so far and from now on get their body.
  void exit_containers() {
    std::lock_guard lock(mu_);
    exited_ = true;
    for (auto& t : waits_) asio::post(t->get_executor(), [t] { t->cancel(); });
  }

  asio::awaitable<void> serve(stream_protocol::socket s) {
    std::string buffer;
    char chunk[64 * 1024];
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(1 << 20);
      parser.body_limit(boost::none);
      parser.eager(true);
      std::size_t used = 0;
      while (!parser.is_done()) {
        boost::beast::error_code ec;
        std::size_t n = 0;
        if (used < buffer.size())
          n = parser.put(asio::buffer(buffer.data() + used, buffer.size() - used), ec);
        used += n;
        if (n == 0 && !ec) ec = bhttp::error::need_more;  // Beast may take nothing mid-chunk
        if (ec == bhttp::error::need_more) {
          auto [rec, n] = co_await s.async_read_some(asio::buffer(chunk), tok);
          if (rec) co_return;
          buffer.append(chunk, n);
          continue;
        }
        if (ec) co_return;
      }
      auto& msg = parser.get();
      Request r;
      r.raw = buffer.substr(0, used);
      buffer.erase(0, used);
      r.method = std::string(msg.method_string());
      r.target = std::string(msg.target());
      r.body = msg.body();
      r.content_length = std::string(msg[bhttp::field::content_length]);
      r.transfer_encoding = std::string(msg[bhttp::field::transfer_encoding]);
      {
        std::lock_guard lock(mu_);
        requests_.push_back(r);
      }
      if (msg[bhttp::field::upgrade] == "tcp") {
        co_await echo_upgraded(std::move(s), std::move(buffer));
        co_return;
      }
      if (r.target.find("/wait") != std::string::npos) {
        if (!co_await answer_wait(s)) co_return;
        continue;
      }
      std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                         std::to_string(r.body.size()) + "\r\n\r\n" + r.body;
      auto [wec, wn] = co_await asio::async_write(s, asio::buffer(resp), tok);
      if (wec) co_return;
    }
  }

 private:
  asio::awaitable<bool> answer_wait(stream_protocol::socket& s) {
    std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(head), tok);
    if (ec) co_return false;
    ++wait_heads_;
    auto timer = std::make_shared<asio::steady_timer>(s.get_executor());
    timer->expires_at(asio::steady_timer::time_point::max());
    bool exited;
    {
      std::lock_guard lock(mu_);
      exited = exited_;
      waits_.push_back(timer);
    }
    if (!exited) co_await timer->async_wait(tok);
    std::string body = "{\"StatusCode\":0}\n";
    char size[16];
    std::snprintf(size, sizeof size, "%zx", body.size());
    std::string chunks = std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n";
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(chunks), tok);
    co_return !wec;
  }

  static asio::awaitable<void> echo_upgraded(stream_protocol::socket s, std::string early) {
    std::string upgraded = "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
    co_await asio::async_write(s, asio::buffer(upgraded), tok);
    std::string in = std::move(early);
    char buf[4096];
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), tok);
      in.append(buf, n);
      if (ec) break;
    }
    co_await asio::async_write(s, asio::buffer("raw was: " + in), tok);
  }

  std::mutex mu_;
  std::vector<Request> requests_;
  std::atomic<int> wait_heads_{0};
  bool exited_ = false;
  std::vector<std::shared_ptr<asio::steady_timer>> waits_;
};

// Rewrites bind sources with the real bind_rewrite functions, the way the synchroniser does;
// answers and flush completions come from threads of its own.
class FakeBindSync final : public daemon::BindSync {
 public:
  ~FakeBindSync() override { join(); }

  // Where the copies live on the runner: inside the session's sync root, one directory per
  // source as offloadd's replicas make them, or the runner's API policy refuses the bind.
  std::string remote_root = "/runner/mnt";
  // Registers a copy's directory with the runner, as the replica's open does.
  std::function<void(const std::string& mount_id)> claim = [](const std::string&) {};
  static std::string mount_id(const std::string& source) { return sha256_hex(source).substr(0, 16); }

  void prepare_create(std::string body, std::function<void(Prepared)> done) override {
    Prepared p;
    auto parsed = json::parse(body, nullptr, false);
    try {
      auto mounts = daemon::find_bind_mounts(parsed);
      std::map<std::string, std::string> to;
      for (const auto& m : mounts) {
        if (m.source == refused_source) {
          p.ok = false;
          p.status = 400;
          p.message = "bind source path does not exist: " + m.source;
        }
        to[m.source] = remote_root + "/" + mount_id(m.source);
        claim(mount_id(m.source));
      }
      if (p.ok && !mounts.empty()) {
        daemon::replace_bind_sources(parsed, to);
        p.rewritten = true;
        p.body = parsed.dump();
        mounted = true;
      }
    } catch (const std::invalid_argument& e) {
      p.ok = false;
      p.status = 400;
      p.message = e.what();
    }
    std::lock_guard lock(mu_);
    creates_.push_back(std::move(body));
    threads_.emplace_back([done = std::move(done), p = std::move(p)] { done(p); });
  }

  void flush(std::function<void()> done) override {
    std::lock_guard lock(mu_);
    ++flushes_;
    if (hold_flushes)
      held_.push_back(std::move(done));
    else
      threads_.emplace_back(std::move(done));
  }

  bool has_mounts() const override { return mounted; }

  void complete_flushes() {
    std::lock_guard lock(mu_);
    for (auto& done : held_) threads_.emplace_back(std::move(done));
    held_.clear();
  }
  int flushes() {
    std::lock_guard lock(mu_);
    return flushes_;
  }
  std::vector<std::string> creates() {
    std::lock_guard lock(mu_);
    return creates_;
  }
  void join() {
    complete_flushes();
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

  std::atomic<bool> mounted{false};
  std::atomic<bool> hold_flushes{false};
  std::string refused_source = "/does/not/exist";

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::vector<std::function<void()>> held_;
  std::vector<std::string> creates_;
  int flushes_ = 0;
};

class TestProvider final : public daemon::Provider {
 public:
  explicit TestProvider(InProcessRunner& runner) : runner_(runner) {}
  std::string type() const override { return "test"; }
  std::string description() const override { return "in-process runner"; }
  daemon::ProvisionedRunner provision(std::chrono::milliseconds) override {
    daemon::ProvisionedRunner p;
    p.endpoint = {runner_.address(), runner_.identity.fingerprint, runner_.token};
    return p;
  }
  void release(const daemon::ProvisionedRunner&) override {}

 private:
  InProcessRunner& runner_;
};

// A Docker client connection: blocking, one request at a time, keep-alive.
class Client {
 public:
  explicit Client(const fs::path& socket) : s_(io_) { s_.connect(socket.string()); }
  void send(std::string_view bytes) { asio::write(s_, asio::buffer(bytes)); }
  bhttp::response<bhttp::string_body> response() {
    bhttp::response<bhttp::string_body> r;
    bhttp::read(s_, buffer_, r);
    return r;
  }
  // Reads a response head only; the body stays for body().
  void head(bhttp::response_parser<bhttp::string_body>& parser) {
    bhttp::read_header(s_, buffer_, parser);
  }
  void body(bhttp::response_parser<bhttp::string_body>& parser) { bhttp::read(s_, buffer_, parser); }
  std::size_t unread() { return buffer_.size() + s_.available(); }
  void half_close() { s_.shutdown(stream_protocol::socket::shutdown_send); }
  std::string read_to_end() {
    std::string out = boost::beast::buffers_to_string(buffer_.data());
    buffer_.clear();
    char buf[4096];
    boost::system::error_code ec;
    while (!ec) out.append(buf, s_.read_some(asio::buffer(buf), ec));
    return out;
  }

 private:
  asio::io_context io_;
  stream_protocol::socket s_;
  boost::beast::flat_buffer buffer_;
};

std::string post(const std::string& target, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string chunked(const std::string& body, std::size_t piece) {
  std::string out;
  for (std::size_t i = 0; i < body.size(); i += piece) {
    auto part = body.substr(i, piece);
    char size[16];
    std::snprintf(size, sizeof size, "%zX", part.size());
    out += std::string(size) + ";ext=1\r\n" + part + "\r\n";
  }
  return out + "0\r\n\r\n";
}

const std::string kCreateWithBinds =
    R"({"Image":"alpine","Cmd":["ls","/src"],"HostConfig":{"Binds":["/home/me/src:/src:ro","cache:/cache"],"Mounts":[{"Type":"bind","Source":"/home/me/out","Target":"/out"}]}})";

class BindProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("offload-bindproxy-" + random_hex(4));
    fs::create_directories(dir_ / "docker");
    ASSERT_FALSE(write_file_atomic(dir_ / "docker" / "config.json", "{}"));
    runner_ = std::make_unique<InProcessRunner>(dir_);
    runner_->target().set_behaviour(
        [this](stream_protocol::socket s) { return engine_.serve(std::move(s)); });
    // TestEngine's sync root: next to the engine socket.
    sync_.remote_root = (dir_ / "sync").string();
    sync_.claim = [this](const std::string& id) {
      for (const auto& s : runner_->service().sessions()) s->syncs().claim(id, false, "");
    };
    paths_ = std::make_unique<StatePaths>(dir_ / "docker");
    ASSERT_FALSE(ensure_private_dir(paths_->dir));
    OffloadConfig config;
    config.default_account = "test";
    daemon::SessionManager::Providers providers;
    providers["test"] = std::make_unique<TestProvider>(*runner_);
    sessions_ = std::make_unique<daemon::SessionManager>(*paths_, config, std::move(providers),
                                                         io_.get_executor(), &streams_);
    sessions_->start({});
    endpoint_ = std::make_unique<daemon::DockerEndpoint>(io_, paths_->docker_socket, *sessions_);
    endpoint_->set_bind_sync(&sync_);
    endpoint_->start();
    work_.emplace(io_.get_executor());
    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { io_.run(); });
  }

  void TearDown() override {
    sync_.join();
    if (endpoint_) endpoint_->stop();
    streams_.cancel_all("test over");
    streams_.wait_empty(5s);
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    endpoint_.reset();
    if (sessions_) sessions_->stop();
    sessions_.reset();
    runner_.reset();
    fs::remove_all(dir_);
  }

  Client client() { return Client(paths_->docker_socket); }

  fs::path dir_;
  FakeEngine engine_;
  FakeBindSync sync_;
  std::unique_ptr<InProcessRunner> runner_;
  std::unique_ptr<StatePaths> paths_;
  tunnel::StreamRegistry streams_;
  std::unique_ptr<daemon::SessionManager> sessions_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::unique_ptr<daemon::DockerEndpoint> endpoint_;
  std::vector<std::thread> threads_;
};

json expected_rewrite(const std::string& remote_root) {
  auto body = json::parse(kCreateWithBinds);
  body["HostConfig"]["Binds"][0] =
      remote_root + "/" + FakeBindSync::mount_id("/home/me/src") + ":/src:ro";
  body["HostConfig"]["Mounts"][0]["Source"] = remote_root + "/" + FakeBindSync::mount_id("/home/me/out");
  return body;
}

TEST_F(BindProxyTest, CreateWithBindsReachesTheEngineRewritten) {
  auto c = client();
  c.send(post("/v1.43/containers/create?name=x", kCreateWithBinds));
  auto r = c.response();
  EXPECT_EQ(r.result_int(), 200);
  EXPECT_EQ(json::parse(r.body()), expected_rewrite(sync_.remote_root)) << r.body();

  ASSERT_EQ(sync_.creates().size(), 1u);
  EXPECT_EQ(sync_.creates()[0], kCreateWithBinds);  // the synchroniser got the original
  auto seen = engine_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/v1.43/containers/create?name=x");
  EXPECT_EQ(json::parse(seen[0].body), expected_rewrite(sync_.remote_root));
  EXPECT_EQ(seen[0].content_length, std::to_string(seen[0].body.size()));
  // The other fields are as the client sent them.
  EXPECT_NE(seen[0].raw.find("Content-Type: application/json\r\n"), std::string::npos);
  EXPECT_NE(seen[0].raw.find("Host: docker\r\n"), std::string::npos);
}

TEST_F(BindProxyTest, ChunkedCreateIsDechunkedAndRewritten) {
  auto c = client();
  std::string request =
      "POST /containers/create HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n"
      "Content-Type: application/json\r\n\r\n" +
      chunked(kCreateWithBinds, 17);
  // In pieces, so that heads and chunk boundaries may straddle reads.
  for (std::size_t i = 0; i < request.size(); i += 23) c.send(request.substr(i, 23));
  auto r = c.response();
  EXPECT_EQ(r.result_int(), 200);
  auto seen = engine_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(json::parse(seen[0].body), expected_rewrite(sync_.remote_root));
  EXPECT_EQ(seen[0].content_length, std::to_string(seen[0].body.size()));
  EXPECT_EQ(seen[0].transfer_encoding, "");
  EXPECT_EQ(seen[0].raw.find("chunked"), std::string::npos) << seen[0].raw;
  ASSERT_EQ(sync_.creates().size(), 1u);
  EXPECT_EQ(sync_.creates()[0], kCreateWithBinds);
}

TEST_F(BindProxyTest, CreateWithoutBindsPassesByteForByte) {
  auto c = client();
  std::string body =
      R"({"Image":"alpine",  "HostConfig":{"Binds":["cache:/cache"],"Mounts":[{"Type":"volume","Source":"v","Target":"/v"}]}})";
  std::string request = "POST /v1.43/containers/create HTTP/1.1\r\nHost: docker\r\n"
                        "X-Odd-Field:   kept  \r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n" + body;
  c.send(request);
  EXPECT_EQ(c.response().result_int(), 200);
  auto seen = engine_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].raw, request);
  EXPECT_EQ(sync_.creates().size(), 1u);

  // Chunked, too: unchanged means the original bytes, chunk framing included.
  std::string chunked_request =
      "POST /containers/create HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n" +
      chunked(body, 10);
  c.send(chunked_request);
  EXPECT_EQ(c.response().body(), body);
  seen = engine_.requests();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].raw, chunked_request);
}

TEST_F(BindProxyTest, RefusedCreateIsAnsweredByTheProxyAndNeverReachesTheEngine) {
  auto c = client();
  std::string body = R"({"Image":"alpine","HostConfig":{"Binds":["/does/not/exist:/x"]}})";
  c.send(post("/containers/create", body));
  auto r = c.response();
  EXPECT_EQ(r.result_int(), 400);
  EXPECT_EQ(r[bhttp::field::content_type], "application/json");
  EXPECT_EQ(json::parse(r.body()),
            (json{{"message", "bind source path does not exist: /does/not/exist"}}));
  EXPECT_TRUE(r.keep_alive());
  EXPECT_EQ(sync_.creates().size(), 1u);

  // A malformed Binds entry: the synchroniser's message reaches the client.
  c.send(post("/containers/create", R"({"HostConfig":{"Binds":["/a:/b:ro:x"]}})"));
  r = c.response();
  EXPECT_EQ(r.result_int(), 400);
  EXPECT_NE(r.body().find("invalid volume specification: '/a:/b:ro:x'"), std::string::npos);

  // The connection goes on, and the engine only ever saw the ping.
  c.send("GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n");
  EXPECT_EQ(c.response().result_int(), 200);
  auto seen = engine_.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/_ping");
}

TEST_F(BindProxyTest, StartWaitsForTheFlushWhileMountsAreSynchronised) {
  auto c = client();
  // Without mounts, start goes straight through.
  c.send(post("/containers/abc/start", ""));
  EXPECT_EQ(c.response().result_int(), 200);
  EXPECT_EQ(sync_.flushes(), 0);

  sync_.mounted = true;
  sync_.hold_flushes = true;
  c.send(post("/v1.43/containers/abc/start", ""));
  ASSERT_TRUE(eventually([&] { return sync_.flushes() == 1; }));
  // The proxy holds the start until the flush completes.
  EXPECT_EQ(engine_.count("/v1.43/containers/abc/start"), 0u);
  sync_.complete_flushes();
  EXPECT_EQ(c.response().result_int(), 200);
  EXPECT_EQ(engine_.count("/v1.43/containers/abc/start"), 1u);
}

TEST_F(BindProxyTest, WaitHeadComesAtOnceButItsBodyOnlyAfterAFlush) {
  sync_.mounted = true;
  sync_.hold_flushes = true;
  auto c = client();
  c.send(post("/v1.43/containers/abc/wait?condition=next-exit", ""));
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(boost::none);
  c.head(parser);  // before the container exits, so before any flush
  EXPECT_EQ(parser.get().result_int(), 200);
  EXPECT_EQ(sync_.flushes(), 0);

  engine_.exit_containers();
  ASSERT_TRUE(eventually([&] { return sync_.flushes() == 1; }));
  // The exit status is at the proxy, waiting for the flush: nothing of it reached the client.
  EXPECT_EQ(c.unread(), 0u);
  sync_.complete_flushes();
  c.body(parser);
  EXPECT_EQ(parser.get().body(), "{\"StatusCode\":0}\n");

  // The connection is plain again: a ping after it is not held.
  c.send("GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n");
  EXPECT_EQ(c.response().result_int(), 200);
  EXPECT_EQ(sync_.flushes(), 1);
}

TEST_F(BindProxyTest, WaitIsNotHeldWithoutMounts) {
  auto c = client();
  engine_.exit_containers();
  c.send(post("/containers/abc/wait", ""));
  auto r = c.response();
  EXPECT_EQ(r.body(), "{\"StatusCode\":0}\n");
  EXPECT_EQ(sync_.flushes(), 0);
}

TEST_F(BindProxyTest, AKeepAliveConnectionCarriesTheWholeRun) {
  auto c = client();
  c.send("GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n");
  EXPECT_EQ(c.response().result_int(), 200);
  c.send(post("/v1.43/containers/create", kCreateWithBinds));
  EXPECT_EQ(json::parse(c.response().body()), expected_rewrite(sync_.remote_root));
  EXPECT_TRUE(sync_.has_mounts());
  engine_.exit_containers();
  c.send(post("/v1.43/containers/abc/wait?condition=next-exit", ""));
  EXPECT_EQ(c.response().body(), "{\"StatusCode\":0}\n");
  c.send(post("/v1.43/containers/abc/start", "{}"));
  EXPECT_EQ(c.response().body(), "{}");
  c.send("GET /v1.43/containers/json HTTP/1.1\r\nHost: docker\r\n\r\n");
  EXPECT_EQ(c.response().result_int(), 200);
  EXPECT_EQ(sync_.flushes(), 2);  // one for the wait body, one for the start

  auto seen = engine_.requests();
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[0].target, "/_ping");
  EXPECT_EQ(seen[1].target, "/v1.43/containers/create");
  EXPECT_EQ(seen[2].target, "/v1.43/containers/abc/wait?condition=next-exit");
  EXPECT_EQ(seen[3].target, "/v1.43/containers/abc/start");
  EXPECT_EQ(seen[4].target, "/v1.43/containers/json");
  EXPECT_EQ(runner_->target().accepted(), 1);
}

TEST_F(BindProxyTest, UpgradedConnectionsStayRawBothWays) {
  sync_.mounted = true;
  auto c = client();
  // Bytes after the Upgrade look like requests the proxy would hold; they must pass as they are.
  std::string after = post("/containers/create", kCreateWithBinds) + post("/containers/a/start", "");
  c.send("POST /v1.43/containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\n"
         "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" +
         after);
  c.half_close();
  auto out = c.read_to_end();
  EXPECT_EQ(out.find("HTTP/1.1 101 UPGRADED"), 0u) << out;
  EXPECT_NE(out.find("raw was: " + after), std::string::npos) << out;
  EXPECT_TRUE(sync_.creates().empty());
  EXPECT_EQ(sync_.flushes(), 0);
}

TEST_F(BindProxyTest, CreateBodiesOverTheCapAreNotHeldAndTheRunnerRefusesThem) {
  auto c = client();
  // Chunked, so the size shows only while the body arrives.
  json big = json::parse(kCreateWithBinds);
  big["Labels"]["padding"] = std::string(daemon::kMaxCreateBodyBytes + 1024, 'x');
  std::string body = big.dump();
  std::string request =
      "POST /containers/create HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n" +
      chunked(body, 1 << 20);
  std::thread writer([&] { c.send(request); });
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(boost::none);
  c.body(parser);
  writer.join();
  // offloadd does not hold it for the synchroniser; the runner cannot judge a body that large
  // and refuses it before the engine sees a byte.
  EXPECT_TRUE(sync_.creates().empty());
  EXPECT_EQ(parser.get().result_int(), 413u);
  EXPECT_NE(parser.get().body().find("larger than the offload runner judges"), std::string::npos)
      << parser.get().body();
  EXPECT_TRUE(engine_.requests().empty());
}

}  // namespace
}  // namespace offload::testing
