// ApiProxy between a socket pair (the Docker client) and an in-memory FrameStream pair (the
// engine behind the runner), with a BindSync the test answers by hand: what the engine gets and
// when, what the client gets and when, and how failures in the middle of a held request end the
// connection. tests/integration/bind_proxy_test.cpp covers the same over the real gRPC tunnel.
#include <gtest/gtest.h>

#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "offload/daemon/api_proxy.h"
#include "offload/daemon/bind_sync_await.h"
#include "support/io_test_helpers.h"
#include "support/memory_frame_stream.h"

namespace offload::daemon {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using asio::local::stream_protocol;
using offload::testing::frame_of;
using offload::testing::read_socket;
using offload::testing::receive_frames;
using offload::testing::Received;
using offload::testing::run_until;
using offload::testing::send_frames;
using offload::testing::settle;
using offload::testing::write_socket;
using tunnel::PumpEnd;
using tunnel::testing::MemoryFrameStream;

// A synchroniser whose answers the test gives, from its own thread (never inline in a call).
class ManualBindSync final : public BindSync {
 public:
  void prepare_create(std::string body, std::function<void(Prepared)> done) override {
    creates.push_back(std::move(body));
    pending_creates_.push_back(std::move(done));
  }
  void flush(std::function<void()> done) override {
    ++flushes;
    pending_flushes_.push_back(std::move(done));
  }
  bool has_mounts() const override { return mounted; }
  std::vector<PathMapping> path_mappings() const override { return mappings; }

  bool create_pending() const { return !pending_creates_.empty(); }
  void answer_create(Prepared prepared) {
    auto done = std::move(pending_creates_.front());
    pending_creates_.pop_front();
    done(std::move(prepared));
  }
  std::size_t flushes_pending() const { return pending_flushes_.size(); }
  std::vector<PathMapping> mappings;
  void complete_flushes() {
    auto pending = std::move(pending_flushes_);
    pending_flushes_.clear();
    for (auto& done : pending) done();
  }

  std::vector<std::string> creates;
  int flushes = 0;
  bool mounted = false;

 private:
  std::deque<std::function<void(Prepared)>> pending_creates_;
  std::vector<std::function<void()>> pending_flushes_;
};

std::string post(const std::string& target, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

const std::string kPing = "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
const std::string kCreateBody =
    R"({"Image":"alpine","HostConfig":{"Binds":["/home/me/src:/src"]}})";
const std::string kRewrittenBody =
    R"({"Image":"alpine","HostConfig":{"Binds":["/runner/mnt/home/me/src:/src"]}})";
const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
const std::string kWaitHead =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
const std::string kWaitBody = "11\r\n{\"StatusCode\":0}\n\r\n0\r\n\r\n";

std::optional<bhttp::response<bhttp::string_body>> parse_response(const std::string& raw) {
  bhttp::response_parser<bhttp::string_body> parser;
  parser.eager(true);
  boost::beast::error_code ec;
  parser.put(asio::buffer(raw), ec);
  if (ec || !parser.is_done()) return std::nullopt;
  return parser.release();
}

// The proxy splices `local` with `near`; the test is the client on `app` and the engine (behind
// the runner) on `engine`.
class ApiProxyTest : public ::testing::Test {
 protected:
  ApiProxyTest() {
    asio::local::connect_pair(local, app);
    std::tie(near, engine) = MemoryFrameStream::make_pair(io.get_executor());
  }

  ~ApiProxyTest() override {
    boost::system::error_code ignored;
    app.close(ignored);
    engine->cancel("test over");
    // A synchroniser answer the proxy still waits for would keep the connection (and its
    // io_context work) alive.
    while (sync.create_pending()) sync.answer_create({});
    sync.complete_flushes();
    if (!run_until(io, [&] { return result.has_value(); }, std::chrono::seconds(5))) {
      local.close(ignored);  // a test that failed: nothing may still wait when all this goes
      run_until(io, [&] { return result.has_value(); }, std::chrono::seconds(5));
    }
  }

  void start(BindSync* bind_sync) {
    proxy.emplace(local, *near, bind_sync, 7);
    asio::co_spawn(io, proxy->run(), [this](std::exception_ptr e, tunnel::SpliceResult r) {
      if (e) std::rethrow_exception(e);
      result = r;
    });
    spawn(receive_frames(*engine, at_engine));
    spawn(read_socket(app, at_client));
  }
  void start() { start(&sync); }

  void spawn(asio::awaitable<void> task) { offload::testing::spawn(io, std::move(task)); }

  // The client sends `bytes`; returns once the proxy did all it can with them.
  bool client_sends(std::string bytes) {
    written = false;
    spawn(write_socket(app, std::move(bytes), false, written));
    return run_until(io, [&] { return written; }) && settle(io);
  }
  bool engine_sends(std::vector<std::string> pieces) {
    std::vector<tunnel::TunnelFrame> frames;
    for (const auto& p : pieces) frames.push_back(frame_of(p));
    sent = false;
    spawn(send_frames(*engine, std::move(frames), sent));
    return run_until(io, [&] { return sent; }) && settle(io);
  }
  bool engine_got(const std::string& bytes) {
    return run_until(io, [&] { return at_engine.data.size() >= bytes.size(); }) &&
           at_engine.data == bytes;
  }
  bool client_got(const std::string& bytes) {
    return run_until(io, [&] { return at_client.data.size() >= bytes.size(); }) &&
           at_client.data == bytes;
  }

  asio::io_context io;
  stream_protocol::socket local{io}, app{io};
  std::unique_ptr<MemoryFrameStream> near, engine;
  ManualBindSync sync;
  std::optional<ApiProxy> proxy;
  std::optional<tunnel::SpliceResult> result;
  // What the coroutines record lives here, not in a test's body: it must outlive every
  // coroutine, also those of a test that failed half-way (the destructor runs them to the end).
  Received at_engine, at_client;
  bool written = false, sent = false;
};

BindSync::Prepared rewritten(std::string body) {
  BindSync::Prepared p;
  p.rewritten = true;
  p.body = std::move(body);
  return p;
}

TEST_F(ApiProxyTest, ACreateIsHeldForTheSynchroniserAndGoesOutRewritten) {
  start();
  const std::string request = post("/v1.43/containers/create?name=x", kCreateBody);
  // In two reads, the second ending the body: the create is judged only once it is whole.
  ASSERT_TRUE(client_sends(request.substr(0, 40)));
  ASSERT_TRUE(client_sends(request.substr(40)));
  ASSERT_EQ(sync.creates, std::vector<std::string>{kCreateBody});
  EXPECT_EQ(at_engine.data, "") << "nothing of the create before the synchroniser answers";

  sync.answer_create(rewritten(kRewrittenBody));
  const std::string expected = "POST /v1.43/containers/create?name=x HTTP/1.1\r\nHost: docker\r\n"
                               "Content-Type: application/json\r\nContent-Length: " +
                               std::to_string(kRewrittenBody.size()) + "\r\n\r\n" +
                               kRewrittenBody;
  EXPECT_TRUE(engine_got(expected)) << at_engine.data;

  // The answer and the next request pass as they are.
  ASSERT_TRUE(engine_sends({kOk}));
  EXPECT_TRUE(client_got(kOk));
  ASSERT_TRUE(client_sends(kPing));
  EXPECT_TRUE(engine_got(expected + kPing));
  EXPECT_EQ(proxy->requests(), 2u);
}

TEST_F(ApiProxyTest, ACreateTheSynchroniserLeavesAloneGoesOutByteForByte) {
  start();
  const std::string request = kPing + post("/containers/create", kCreateBody);
  ASSERT_TRUE(client_sends(request));
  // The ping in the same read goes out before the create is judged.
  EXPECT_TRUE(engine_got(kPing));
  ASSERT_TRUE(sync.create_pending());
  sync.answer_create({});
  EXPECT_TRUE(engine_got(request));
}

TEST_F(ApiProxyTest, ARefusedCreateIsAnsweredByTheProxyAndNeverReachesTheEngine) {
  start();
  ASSERT_TRUE(client_sends(post("/containers/create", kCreateBody)));
  BindSync::Prepared refused;
  refused.ok = false;
  refused.status = 400;
  refused.message = "bind source path does not exist: /home/me/src";
  sync.answer_create(refused);
  ASSERT_TRUE(run_until(io, [&] { return parse_response(at_client.data).has_value(); }))
      << at_client.data;
  auto response = *parse_response(at_client.data);
  EXPECT_EQ(response.result_int(), 400);
  EXPECT_EQ(response[bhttp::field::content_type], "application/json");
  EXPECT_EQ(response.body(),
            R"({"message":"bind source path does not exist: /home/me/src"})" "\n");
  EXPECT_TRUE(response.keep_alive());

  // The connection goes on; the engine only ever sees the ping.
  ASSERT_TRUE(client_sends(kPing));
  EXPECT_TRUE(engine_got(kPing));
  EXPECT_FALSE(result);
}

TEST_F(ApiProxyTest, StartWaitsForAFlushOnlyWhileMountsAreSynchronised) {
  start();
  const std::string start1 = post("/containers/abc/start", "");
  ASSERT_TRUE(client_sends(start1));
  EXPECT_TRUE(engine_got(start1));
  EXPECT_EQ(sync.flushes, 0);
  ASSERT_TRUE(engine_sends({kOk}));

  sync.mounted = true;
  const std::string start2 = post("/v1.43/containers/abc/start", "");
  ASSERT_TRUE(client_sends(kPing + start2));
  EXPECT_EQ(sync.flushes, 1);
  EXPECT_EQ(at_engine.data, start1 + kPing) << "what came before the start is not held";
  sync.complete_flushes();
  EXPECT_TRUE(engine_got(start1 + kPing + start2));
}

TEST_F(ApiProxyTest, AWaitResponsesBodyIsHeldUntilAFlushButItsHeadIsNot) {
  sync.mounted = true;
  start();
  const std::string wait = post("/v1.43/containers/abc/wait?condition=next-exit", "");
  ASSERT_TRUE(client_sends(wait));
  EXPECT_TRUE(engine_got(wait));
  ASSERT_TRUE(engine_sends({kWaitHead}));
  EXPECT_TRUE(client_got(kWaitHead));
  EXPECT_EQ(sync.flushes, 0) << "the container has not exited yet";

  ASSERT_TRUE(engine_sends({kWaitBody}));
  EXPECT_EQ(sync.flushes, 1);
  EXPECT_EQ(at_client.data, kWaitHead) << "the exit status waits for the flush";
  sync.complete_flushes();
  EXPECT_TRUE(client_got(kWaitHead + kWaitBody));

  // Head and body in one frame: the head still goes out at once.
  ASSERT_TRUE(client_sends(wait));
  ASSERT_TRUE(engine_sends({kWaitHead + kWaitBody}));
  EXPECT_EQ(sync.flushes, 2);
  EXPECT_EQ(at_client.data, kWaitHead + kWaitBody + kWaitHead);
  sync.complete_flushes();
  EXPECT_TRUE(client_got(kWaitHead + kWaitBody + kWaitHead + kWaitBody));

  // An error answer has nothing to wait for; nor has the answer to another request.
  const std::string not_found = "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}";
  ASSERT_TRUE(client_sends(wait));
  ASSERT_TRUE(engine_sends({not_found}));
  ASSERT_TRUE(client_sends(kPing));
  ASSERT_TRUE(engine_sends({kOk}));
  EXPECT_EQ(sync.flushes, 2);
  EXPECT_TRUE(client_got(kWaitHead + kWaitBody + kWaitHead + kWaitBody + not_found + kOk));
}

TEST_F(ApiProxyTest, InspectAnswersShowTheLocalBindSourceAndOtherAnswersPassUnchanged) {
  sync.mappings = {{"/srv/offload/sync/m1", "/home/me/src", ""}};
  start();
  const std::string inspect = "GET /v1.41/containers/abc/json HTTP/1.1\r\nHost: docker\r\n\r\n";
  const std::string body = R"({"HostConfig":{"Binds":["/srv/offload/sync/m1:/src"]}})";
  const std::string local = R"({"HostConfig":{"Binds":["/home/me/src:/src"]}})";
  auto answer = [](const std::string& b) {
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(b.size()) + "\r\n\r\n" + b;
  };
  ASSERT_TRUE(client_sends(inspect));
  EXPECT_TRUE(engine_got(inspect));
  // In two frames: the body is held until it is whole.
  ASSERT_TRUE(engine_sends({answer(body).substr(0, 40), answer(body).substr(40)}));
  EXPECT_TRUE(client_got(answer(local)));

  // The answer to a container's logs is the container's own output: never rewritten.
  const std::string logs = "GET /v1.41/containers/abc/logs HTTP/1.1\r\nHost: docker\r\n\r\n";
  ASSERT_TRUE(client_sends(logs));
  ASSERT_TRUE(engine_sends({answer(body)}));
  EXPECT_TRUE(client_got(answer(local) + answer(body)));
}

TEST_F(ApiProxyTest, AStreamThatBreaksWhileACreateIsHeldEndsTheConnection) {
  start();
  ASSERT_TRUE(client_sends(post("/containers/create", kCreateBody)));
  ASSERT_TRUE(sync.create_pending());
  engine->cancel("runner gone");
  // The client learns at once; the proxy itself waits for the synchroniser's answer.
  ASSERT_TRUE(run_until(io, [&] { return at_client.done(); }));
  EXPECT_TRUE(at_client.eof);
  ASSERT_TRUE(settle(io));
  EXPECT_FALSE(result);
  sync.answer_create(rewritten(kRewrittenBody));
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
  EXPECT_EQ(result->up, PumpEnd::stream_error);
  EXPECT_EQ(result->down, PumpEnd::stream_error);
  EXPECT_EQ(at_engine.data, "");
  EXPECT_FALSE(local.is_open());
}

TEST_F(ApiProxyTest, AFailedWriteOfTheRewrittenCreateEndsTheConnection) {
  near->fail_nth_write(1);
  start();
  ASSERT_TRUE(client_sends(post("/containers/create", kCreateBody)));
  sync.answer_create(rewritten(kRewrittenBody));
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
  EXPECT_EQ(result->up, PumpEnd::stream_error);
  EXPECT_EQ(result->down, PumpEnd::stream_error);
  EXPECT_EQ(near->break_reason(), "injected write failure");
  ASSERT_TRUE(run_until(io, [&] { return at_client.done() && at_engine.done(); }));
  EXPECT_TRUE(at_client.eof);
  EXPECT_TRUE(at_engine.failed);
  EXPECT_EQ(at_engine.data, "");
}

TEST_F(ApiProxyTest, AClientGoneMidCreateLeavesTheEngineWhatItSent) {
  start();
  const std::string partial = post("/containers/create", kCreateBody).substr(0, 120);
  ASSERT_TRUE(client_sends(partial));
  EXPECT_EQ(at_engine.data, "");
  app.shutdown(stream_protocol::socket::shutdown_send);
  ASSERT_TRUE(run_until(io, [&] { return at_engine.done(); }));
  EXPECT_TRUE(at_engine.eof);
  EXPECT_EQ(at_engine.data, partial);
  EXPECT_TRUE(sync.creates.empty());
  // The engine answers the incomplete request and ends; so does the connection, cleanly.
  std::vector<tunnel::TunnelFrame> frames{frame_of(kOk), frame_of("", true)};
  spawn(send_frames(*engine, std::move(frames), sent));
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
  EXPECT_TRUE(result->clean());
  EXPECT_TRUE(client_got(kOk));
}

TEST_F(ApiProxyTest, WithoutASynchroniserRequestsOnlyPass) {
  start(nullptr);
  const std::string requests = post("/containers/create", kCreateBody) +
                               post("/containers/abc/start", "") + post("/containers/a/wait", "");
  ASSERT_TRUE(client_sends(requests));
  EXPECT_TRUE(engine_got(requests));
  EXPECT_EQ(at_engine.frame_sizes.size(), 1u) << "one read, forwarded whole";
  ASSERT_TRUE(engine_sends({kWaitHead + kWaitBody}));
  EXPECT_TRUE(client_got(kWaitHead + kWaitBody));
  EXPECT_EQ(proxy->requests(), 3u);
}

// The BindSync adapters: the synchroniser calls back on its own thread; the coroutine resumes on
// its io_context's thread, with the synchroniser's answer.
TEST(BindSyncAwait, AnswersFromTheSynchronisersThreadResumeTheCoroutineOnItsOwn) {
  asio::io_context io;
  ManualBindSync sync;
  std::thread synchroniser;
  std::vector<std::thread::id> resumed_on;
  std::string prepared_body;
  // Named: the coroutine refers to the lambda's captures, which must outlive it.
  auto connection = [&]() -> asio::awaitable<void> {
    auto prepared = co_await async_prepare_create(sync, "{}");
    resumed_on.push_back(std::this_thread::get_id());
    prepared_body = prepared.body;
    co_await async_flush(sync);
    resumed_on.push_back(std::this_thread::get_id());
  };
  offload::testing::spawn(io, connection());
  // Runs until the coroutine waits on the synchroniser; then the synchroniser's thread answers
  // while this one runs the io_context.
  ASSERT_GE(io.poll(), 1u);
  ASSERT_TRUE(sync.create_pending());
  synchroniser = std::thread([&] { sync.answer_create(rewritten("{\"rewritten\":1}")); });
  bool resumed = run_until(io, [&] { return resumed_on.size() == 1; });
  synchroniser.join();
  ASSERT_TRUE(resumed);
  EXPECT_EQ(prepared_body, "{\"rewritten\":1}");
  ASSERT_EQ(sync.flushes_pending(), 1u);
  synchroniser = std::thread([&] { sync.complete_flushes(); });
  resumed = run_until(io, [&] { return resumed_on.size() == 2; });
  synchroniser.join();
  ASSERT_TRUE(resumed);
  EXPECT_EQ(resumed_on[0], std::this_thread::get_id());
  EXPECT_EQ(resumed_on[1], std::this_thread::get_id());
}

}  // namespace
}  // namespace offload::daemon
