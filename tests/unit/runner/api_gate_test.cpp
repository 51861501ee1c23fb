// ApiGate spliced between an in-memory FrameStream (the client: a hostile one writes raw HTTP
// into the tunnel) and one end of a socket pair whose other end plays dockerd. Everything runs on
// one io_context driven by the test, so "the engine has seen nothing" is checked after the loop
// has settled, not after a sleep. What is checked: what reaches the engine byte for byte, what
// the client gets back and in which order, when the engine sees end-of-file, and that the
// response framing (101 or not, HEAD, 1xx) stays in step with the requests.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <nlohmann/json.hpp>

#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "offload/runner/api_gate.h"
#include "offload/tunnel/pump.h"
#include "support/io_test_helpers.h"
#include "support/memory_frame_stream.h"

namespace offload::runner {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using asio::local::stream_protocol;
using offload::testing::frame_of;
using offload::testing::kTestToken;
using offload::testing::receive_frames;
using offload::testing::Received;
using offload::testing::run_until;
using offload::testing::send_frames;
using offload::testing::settle;
using tunnel::PumpEnd;
using tunnel::SpliceResult;
using tunnel::testing::MemoryFrameStream;

// --- Requests as a client writes them ------------------------------------------------------------

std::string post_json(std::string_view target, std::string_view body) {
  return "POST " + std::string(target) + " HTTP/1.1\r\nHost: docker\r\n"
         "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + std::string(body);
}

std::string chunked_post(std::string_view target, const std::vector<std::string>& chunks) {
  std::string out = "POST " + std::string(target) + " HTTP/1.1\r\nHost: docker\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const auto& c : chunks) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx", c.size());
    out += size;
    out += "\r\n" + c + "\r\n";
  }
  return out + "0\r\n\r\n";
}

const std::string kAllowedBody =
    R"({"Image":"busybox","Cmd":["echo","hi"],"HostConfig":{"Binds":["data:/data"],)"
    R"("NetworkMode":"default","Privileged":false}})";
const std::string kPrivilegedBody =
    R"({"Image":"busybox","Cmd":["sh"],"HostConfig":{"NetworkMode":"default","Privileged":true}})";
const std::string kAllowedCreate = post_json("/v1.41/containers/create?name=web", kAllowedBody);
const std::string kPrivilegedCreate = post_json("/v1.41/containers/create", kPrivilegedBody);
const std::string kPing = "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
const std::string kAttach =
    "POST /v1.41/containers/c0ffee/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
    "Host: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";

// --- Answers as dockerd writes them --------------------------------------------------------------

std::string json_response(unsigned status, std::string_view reason, std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
         "\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}
const std::string kPong =
    "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n\r\nOK";
const std::string kCreated = json_response(201, "Created", R"({"Id":"c0ffee","Warnings":[]})");
const std::string kNoContent = "HTTP/1.1 204 No Content\r\nApi-Version: 1.41\r\n\r\n";
const std::string kSwitched =
    "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
    "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
const std::string kNoSuchContainer =
    json_response(404, "Not Found", "{\"message\":\"No such container: c0ffee\"}\n");

// The engine's side: a scripted dockerd. It frames requests with Beast, records every byte it
// receives, answers each complete request with what `answer` returns (nullopt: the test answers
// later with `answer_now`), and after a 101 only records. Like dockerd, on end-of-file it
// finishes the answers it owes and then closes the connection.
struct FakeEngine {
  using Request = bhttp::request<bhttp::string_body>;
  std::function<std::optional<std::string>(const Request&)> answer;

  std::string received;               // every byte, in order
  std::vector<std::string> requests;  // "METHOD target" of each complete request
  std::vector<std::string> bodies;    // their bodies
  int owed = 0;                       // requests answered with nullopt, not yet answered
  bool raw = false;                   // after a 101
  bool eof = false;                   // read end-of-file
  bool closed = false;                // closed its end
  std::string parse_error;

  std::string pending;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser;
};

// --- The fixture ---------------------------------------------------------------------------------

class ApiGateTest : public ::testing::Test {
 protected:
  ApiGateTest() {
    asio::local::connect_pair(gate_side, engine_side);
    std::tie(near, client) = MemoryFrameStream::make_pair(io.get_executor(), 2);
  }

  ~ApiGateTest() override {
    // Whatever a test left running ends with the call, or else with the sockets.
    boost::system::error_code ignored;
    engine_side.close(ignored);
    client->cancel("test over");
    auto ended = [&] { return !spliced || result.has_value(); };
    if (!run_until(io, ended, std::chrono::seconds(5))) {
      gate_side.close(ignored);
      run_until(io, ended, std::chrono::seconds(5));
    }
  }

  // The gate between the client's stream and the engine socket, as tunnel_engine_api has it.
  // Binds must lie in /sync; paths resolve to themselves (no file system).
  void start(bool client_reads = true, ApiPolicy policy = sync_policy()) {
    gate.emplace(gate_side, std::move(policy), "test");
    spliced = true;
    asio::co_spawn(io, tunnel::splice(gate_side, *near, gate->responses(), gate->requests()),
                   [this](std::exception_ptr e, SpliceResult r) {
                     if (e) std::rethrow_exception(e);
                     result = r;
                   });
    offload::testing::spawn(io, serve_engine());
    if (client_reads) client_starts_reading();
  }

  void client_starts_reading() {
    offload::testing::spawn(io, receive_frames(*client, at_client));
  }

  static ApiPolicy sync_policy() {
    ApiPolicy policy;
    policy.sync_root = "/sync";
    policy.resolve = identity_resolve();
    return policy;
  }

  static decltype(ApiPolicy::resolve) identity_resolve() {
    return [](const std::filesystem::path& p) -> std::optional<std::filesystem::path> {
      return p;
    };
  }

  // The client writes one frame; returns once the stream took it (back-pressure included).
  void send(std::string data, bool eof = false) {
    bool sent = false;
    offload::testing::spawn(
        io, send_frames(*client, {frame_of(data, eof)}, sent));
    ASSERT_TRUE(run_until(io, [&] { return sent || client->broken(); }))
        << "the gate does not take the client's frames";
  }

  bool client_got(std::size_t bytes) {
    return run_until(io, [&] { return at_client.data.size() >= bytes || at_client.done(); });
  }
  bool client_done() {
    return run_until(io, [&] { return at_client.done(); });
  }
  bool engine_got(std::size_t bytes) {
    return run_until(io, [&] { return engine.received.size() >= bytes || engine.eof; });
  }
  bool engine_saw_eof() {
    return run_until(io, [&] { return engine.eof; });
  }

  // Answers the oldest request the engine owes an answer.
  void answer_now(std::string reply) {
    ASSERT_GT(engine.owed, 0);
    --engine.owed;
    offload::testing::spawn(io, engine_write(std::move(reply)));
  }

  // The engine writes on its own (raw bytes after a 101).
  void engine_writes(std::string bytes) {
    offload::testing::spawn(io, engine_write(std::move(bytes)));
  }

  asio::awaitable<void> engine_write(std::string bytes) {
    if (engine.closed) co_return;
    auto [ec, n] = co_await asio::async_write(engine_side, asio::buffer(bytes), kTestToken);
    (void)n;
    if (ec) co_return;
    if (bytes.starts_with("HTTP/1.1 101")) engine.raw = true;
    close_engine_if_done();
  }

  void close_engine_if_done() {
    if (engine.eof && engine.owed == 0 && !engine.closed) {
      engine.closed = true;
      boost::system::error_code ignored;
      engine_side.shutdown(stream_protocol::socket::shutdown_send, ignored);
      engine_side.close(ignored);
    }
  }

  asio::awaitable<void> serve_engine() {
    std::string buffer(64 * 1024, '\0');
    for (;;) {
      auto [ec, n] = co_await engine_side.async_read_some(asio::buffer(buffer), kTestToken);
      engine.received.append(buffer.data(), n);
      if (ec) {
        engine.eof = true;
        close_engine_if_done();
        co_return;
      }
      if (engine.raw) continue;
      engine.pending.append(buffer.data(), n);
      while (!engine.raw && !engine.pending.empty()) {
        if (!engine.parser) {
          engine.parser.emplace();
          engine.parser->eager(true);
          engine.parser->body_limit(boost::none);
        }
        boost::beast::error_code pec;
        const std::size_t used = engine.parser->put(asio::buffer(engine.pending), pec);
        engine.pending.erase(0, used);
        if (pec == bhttp::error::need_more) break;
        if (pec) {
          engine.parse_error = pec.message();
          co_return;
        }
        if (!engine.parser->is_done()) {
          if (used == 0) break;
          continue;
        }
        FakeEngine::Request request = engine.parser->release();
        engine.parser.reset();
        engine.requests.push_back(std::string(request.method_string()) + " " +
                                  std::string(request.target()));
        engine.bodies.push_back(request.body());
        std::optional<std::string> reply =
            engine.answer ? engine.answer(request) : std::optional<std::string>(kPong);
        if (!reply) {
          ++engine.owed;
          continue;
        }
        auto [wec, wn] = co_await asio::async_write(engine_side, asio::buffer(*reply), kTestToken);
        (void)wn;
        if (wec) co_return;
        if (reply->starts_with("HTTP/1.1 101")) engine.raw = true;
      }
    }
  }

  // The client ends its side; the engine sees end-of-file, closes, and the splice ends cleanly.
  void end_cleanly() {
    send("", /*eof=*/true);
    ASSERT_TRUE(engine_saw_eof());
    ASSERT_TRUE(client_done());
    EXPECT_TRUE(at_client.eof);
    ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
    EXPECT_TRUE(result->clean()) << to_string(result->up) << ", " << to_string(result->down);
  }

  asio::io_context io;
  stream_protocol::socket gate_side{io}, engine_side{io};
  std::unique_ptr<MemoryFrameStream> near, client;
  std::optional<ApiGate> gate;
  bool spliced = false;
  std::optional<SpliceResult> result;
  // Filled by coroutines: kept here, so they outlive a test that failed half-way.
  FakeEngine engine;
  Received at_client;
};

// A Docker-style JSON error as the gate writes it, read back.
struct Refusal {
  unsigned status = 0;
  std::string connection, content_type, message;
  std::size_t size = 0;  // bytes of the whole response
};

// Parses one complete response at the start of `data`.
std::optional<Refusal> parse_response(std::string_view data) {
  bhttp::response_parser<bhttp::string_body> parser;
  parser.eager(true);
  boost::beast::error_code ec;
  const std::size_t used = parser.put(asio::buffer(data.data(), data.size()), ec);
  if (ec || !parser.is_done()) return std::nullopt;
  Refusal r;
  r.status = parser.get().result_int();
  r.connection = std::string(parser.get()[bhttp::field::connection]);
  r.content_type = std::string(parser.get()[bhttp::field::content_type]);
  auto body = nlohmann::json::parse(parser.get().body(), nullptr, false);
  if (body.is_object() && body.contains("message") && body["message"].is_string())
    r.message = body["message"].get<std::string>();
  r.size = used;
  return r;
}

// The client's bytes end with exactly one gate refusal after `before` (the engine's answers).
void expect_refusal_after(const std::string& got, const std::string& before, unsigned status,
                          std::string_view names) {
  ASSERT_TRUE(got.starts_with(before)) << got;
  auto refusal = parse_response(std::string_view(got).substr(before.size()));
  ASSERT_TRUE(refusal) << "no complete response after the engine's answers: " << got;
  EXPECT_EQ(refusal->status, status) << got;
  EXPECT_EQ(refusal->connection, "close");
  EXPECT_EQ(refusal->content_type, "application/json");
  EXPECT_NE(refusal->message.find(names), std::string::npos) << refusal->message;
  EXPECT_EQ(before.size() + refusal->size, got.size()) << "bytes after the refusal: " << got;
}

// --- Allowed requests pass byte for byte ---------------------------------------------------------

TEST_F(ApiGateTest, AnAllowedCreatePassesByteForByteWhateverTheFrames) {
  engine.answer = [](const FakeEngine::Request&) { return kCreated; };
  start();
  // Split inside the head, at the end of the head and inside the body.
  send(kAllowedCreate.substr(0, 20));
  send(kAllowedCreate.substr(20, kAllowedCreate.find("\r\n\r\n") + 4 - 20));
  ASSERT_TRUE(settle(io));
  EXPECT_EQ(engine.received, "") << "a judged request goes on only once its body is judged";
  send(kAllowedCreate.substr(kAllowedCreate.find("\r\n\r\n") + 4, 30));
  send(kAllowedCreate.substr(kAllowedCreate.find("\r\n\r\n") + 4 + 30));
  ASSERT_TRUE(client_got(kCreated.size()));
  EXPECT_EQ(engine.received, kAllowedCreate);
  EXPECT_EQ(at_client.data, kCreated);
  EXPECT_EQ(engine.requests, std::vector<std::string>{"POST /v1.41/containers/create?name=web"});
  end_cleanly();
  EXPECT_EQ(gate->refused(), 0u);
}

TEST_F(ApiGateTest, AnAllowedChunkedCreatePassesByteForByte) {
  engine.answer = [](const FakeEngine::Request&) { return kCreated; };
  start();
  const std::string body = kAllowedBody;
  const std::string request = chunked_post(
      "/containers/create", {body.substr(0, 7), body.substr(7, 40), body.substr(47)});
  // One byte at a time through the chunk framing, then the rest.
  const std::size_t head = request.find("\r\n\r\n") + 4;
  for (std::size_t i = 0; i < head + 12; ++i) send(request.substr(i, 1));
  ASSERT_TRUE(settle(io));
  EXPECT_EQ(engine.received, "");
  send(request.substr(head + 12));
  ASSERT_TRUE(client_got(kCreated.size()));
  EXPECT_EQ(engine.received, request);
  ASSERT_EQ(engine.bodies.size(), 1u);
  EXPECT_EQ(engine.bodies[0], body);
  EXPECT_EQ(at_client.data, kCreated);
  end_cleanly();
}

TEST_F(ApiGateTest, ListingAndStartingContainersPass) {
  engine.answer = [](const FakeEngine::Request& r) -> std::optional<std::string> {
    if (r.target().starts_with("/v1.41/containers/json")) return json_response(200, "OK", "[]");
    return kNoContent;
  };
  start();
  const std::string list = "GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: docker\r\n\r\n";
  const std::string start_it =
      "POST /v1.41/containers/x/start HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n";
  const std::string start_again = "POST /containers/x/start HTTP/1.1\r\nHost: docker\r\n\r\n";
  send(list + start_it + start_again);
  const std::string expected = json_response(200, "OK", "[]") + kNoContent + kNoContent;
  ASSERT_TRUE(client_got(expected.size()));
  EXPECT_EQ(at_client.data, expected);
  EXPECT_EQ(engine.received, list + start_it + start_again);
  end_cleanly();
  EXPECT_EQ(gate->refused(), 0u);
}

// --- The Docker socket -------------------------------------------------------------------------

TEST_F(ApiGateTest, ACreateBindingTheDockerSocketGetsTheGatedSocketAndIsJudgedAfter) {
  engine.answer = [](const FakeEngine::Request&) { return kCreated; };
  int served = 0;
  ApiPolicy policy = sync_policy();
  policy.api_socket = "/run/offload/s1/api/docker.sock";
  policy.serve_api_socket = [&served] { return ++served > 0; };
  start(true, policy);
  const std::string body =
      R"({"Image":"busybox","HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock"],)"
      R"("Mounts":[{"Type":"bind","Source":"/run/docker.sock","Target":"/d.sock"}]}})";
  send(chunked_post("/v1.41/containers/create", {body.substr(0, 30), body.substr(30)}));
  ASSERT_TRUE(client_got(kCreated.size()));
  EXPECT_EQ(served, 1);
  ASSERT_EQ(engine.bodies.size(), 1u);
  auto got = nlohmann::json::parse(engine.bodies[0]);
  EXPECT_EQ(got["HostConfig"]["Binds"][0], "/run/offload/s1/api/docker.sock:/var/run/docker.sock");
  EXPECT_EQ(got["HostConfig"]["Mounts"][0]["Source"], "/run/offload/s1/api/docker.sock");
  end_cleanly();
  EXPECT_EQ(gate->refused(), 0u);
}

TEST_F(ApiGateTest, ADockerSocketBindIsRefusedWhenTheGatedSocketCannotBeServed) {
  ApiPolicy policy = sync_policy();
  policy.api_socket = "/run/offload/s1/api/docker.sock";
  policy.serve_api_socket = [] { return false; };
  start(true, policy);
  send(post_json("/containers/create",
                 R"({"Image":"busybox","HostConfig":{"Binds":["/var/run/docker.sock:/s"]}})"));
  ASSERT_TRUE(engine_saw_eof());
  EXPECT_EQ(engine.received, "");
  ASSERT_TRUE(client_done());
  expect_refusal_after(at_client.data, "", 403, "-v /var/run/docker.sock");
}

// --- Refusals ------------------------------------------------------------------------------------

TEST_F(ApiGateTest, APrivilegedCreateNeverReachesTheEngine) {
  start();
  const std::size_t head = kPrivilegedCreate.find("\r\n\r\n") + 4;
  send(kPrivilegedCreate.substr(0, head + 10));
  ASSERT_TRUE(settle(io));
  EXPECT_EQ(engine.received, "");
  EXPECT_FALSE(engine.eof);
  EXPECT_EQ(at_client.data, "") << "nothing is decided before the body is complete";
  send(kPrivilegedCreate.substr(head + 10));
  // The engine sees the end of the requests and closes; the refusal follows its last byte.
  ASSERT_TRUE(engine_saw_eof());
  EXPECT_EQ(engine.received, "");
  ASSERT_TRUE(client_done());
  EXPECT_TRUE(at_client.eof) << "the client sees the connection end after the refusal";
  expect_refusal_after(at_client.data, "", 403, "--privileged");
  EXPECT_EQ(gate->refused(), 1u);
  // Whatever the client sends after it goes nowhere.
  send(kAllowedCreate);
  ASSERT_TRUE(settle(io));
  EXPECT_EQ(engine.received, "");
  send("", /*eof=*/true);
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
  EXPECT_TRUE(result->clean()) << to_string(result->up) << ", " << to_string(result->down);
}

TEST_F(ApiGateTest, APrivilegedChunkedCreateIsJudgedWhole) {
  start();
  // "Privileged":true is split across chunks; only the de-chunked body says it.
  const std::string body = kPrivilegedBody;
  const std::size_t at = body.find("Privileged") + 4;
  send(chunked_post("/containers/create", {body.substr(0, at), body.substr(at)}));
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  EXPECT_TRUE(engine.eof);
  expect_refusal_after(at_client.data, "", 403, "--privileged");
}

TEST_F(ApiGateTest, ARefusalComesAfterTheAnswersToEarlierPipelinedRequests) {
  engine.answer = [](const FakeEngine::Request&) { return std::nullopt; };  // answered below
  start();
  send(kPing + kPrivilegedCreate);
  ASSERT_TRUE(engine_saw_eof()) << "the gate half-closes the engine at the refusal";
  EXPECT_EQ(engine.received, kPing);
  ASSERT_TRUE(settle(io));
  EXPECT_EQ(at_client.data, "") << "the refusal must wait for the ping's answer";
  // The engine answers what it was asked before the refusal, then closes.
  answer_now(kPong);
  ASSERT_TRUE(client_done());
  EXPECT_TRUE(at_client.eof);
  expect_refusal_after(at_client.data, kPong, 403, "--privileged");
  EXPECT_EQ(engine.requests, std::vector<std::string>{"GET /_ping"});
}

TEST_F(ApiGateTest, AMalformedRequestIsRefusedWith400) {
  start();
  send(kPing);
  ASSERT_TRUE(client_got(kPong.size()));
  send("GET /containers/json HTTP/1.1\r\nHost docker\r\n\r\n");
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, kPing);
  EXPECT_TRUE(engine.eof);
  expect_refusal_after(at_client.data, kPong, 400, "cannot read this request");
}

TEST_F(ApiGateTest, AContentLengthWithTransferEncodingIsRefusedWith400) {
  // The classic request smuggling shape: the gate and the engine must never disagree about
  // where a request ends, so neither reading is chosen.
  start();
  send("POST /containers/x/start HTTP/1.1\r\nHost: docker\r\nContent-Length: 5\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + kPrivilegedCreate);
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  expect_refusal_after(at_client.data, "", 400, "cannot read this request");
}

TEST_F(ApiGateTest, AHeadLargerThanTheLimitIsRefusedWith431) {
  start();
  std::string head = "GET /containers/json HTTP/1.1\r\nHost: docker\r\n";
  while (head.size() < 80 * 1024) head += "X-Filler: " + std::string(100, 'a') + "\r\n";
  send(head);  // never ends: the gate must not wait for the rest
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  expect_refusal_after(at_client.data, "", 431, "larger than");
}

TEST_F(ApiGateTest, AJudgedBodyOverTheLimitIsRefusedWith413WithoutReadingItAll) {
  start();
  // Announces 64 MiB; the gate refuses once it would hold more than kMaxJudgedBodyBytes.
  const std::string head =
      "POST /containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n"
      "Content-Length: " + std::to_string(64u << 20) + "\r\n\r\n";
  send(head + "{\"Image\":\"busybox\",\"Labels\":{\"a\":\"");
  const std::string filler(tunnel::kChunkSize, 'a');
  std::size_t body_sent = 0;
  while (at_client.data.empty() && body_sent < (64u << 20)) {
    send(filler);
    body_sent += filler.size();
    ASSERT_TRUE(settle(io));
  }
  EXPECT_GT(body_sent, kMaxJudgedBodyBytes - 2 * filler.size());
  EXPECT_LE(body_sent, kMaxJudgedBodyBytes + 2 * filler.size())
      << "the refusal came only after " << body_sent << " bytes";
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  EXPECT_TRUE(engine.eof);
  expect_refusal_after(at_client.data, "", 413, "16 MiB");
}

TEST_F(ApiGateTest, AChunkedJudgedBodyOverTheLimitIsRefusedWith413) {
  start();
  char size[32];
  std::snprintf(size, sizeof size, "%zx", std::size_t{64u << 20});
  send("POST /v1.41/volumes/create HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n" +
       std::string(size) + "\r\n");
  const std::string filler(tunnel::kChunkSize, ' ');
  std::size_t body_sent = 0;
  while (at_client.data.empty() && body_sent < (64u << 20)) {
    send(filler);
    body_sent += filler.size();
    ASSERT_TRUE(settle(io));
  }
  EXPECT_LE(body_sent, kMaxJudgedBodyBytes + 2 * filler.size());
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  expect_refusal_after(at_client.data, "", 413, "16 MiB");
}

TEST_F(ApiGateTest, AJudgedBodyOfExactlyTheLimitIsJudged) {
  // The limit is on the body: the head that comes with it does not count.
  engine.answer = [](const FakeEngine::Request&) { return kCreated; };
  start();
  std::string body = R"({"Image":"busybox","Labels":{"a":")";
  const std::string tail = R"("}})";
  body += std::string(kMaxJudgedBodyBytes - body.size() - tail.size(), 'a') + tail;
  ASSERT_EQ(body.size(), kMaxJudgedBodyBytes);
  const std::string request = post_json("/containers/create", body);
  for (std::size_t at = 0; at < request.size(); at += tunnel::kChunkSize)
    send(request.substr(at, tunnel::kChunkSize));
  ASSERT_TRUE(client_got(kCreated.size()));
  EXPECT_EQ(at_client.data, kCreated);
  EXPECT_EQ(engine.received.size(), request.size());
  EXPECT_TRUE(engine.received == request);
  EXPECT_EQ(gate->refused(), 0u);
}

TEST_F(ApiGateTest, AJudgedBodyOneByteOverTheLimitIsRefused) {
  start();
  const std::string request =
      post_json("/containers/create", std::string(kMaxJudgedBodyBytes + 1, ' '));
  for (std::size_t at = 0; at < request.size(); at += tunnel::kChunkSize)
    send(request.substr(at, tunnel::kChunkSize));
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  expect_refusal_after(at_client.data, "", 413, "16 MiB");
}

TEST_F(ApiGateTest, ABuildWithHostNetworkingIsRefused) {
  start();
  const std::string tar(10240, '\0');
  send("POST /v1.41/build?t=x&networkmode=host&rm=1 HTTP/1.1\r\nHost: docker\r\n"
       "Content-Type: application/x-tar\r\nContent-Length: 10240\r\n\r\n" + tar);
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  expect_refusal_after(at_client.data, "", 403, "--network=host");
}

TEST_F(ApiGateTest, ABuildWithItsParametersInAFormBodyIsRefused) {
  // dockerd's FormValue reads an urlencoded body as well as the query.
  start();
  const std::string body = "networkmode=host";
  send("POST /build HTTP/1.1\r\nHost: docker\r\nContent-Type: Application/X-WWW-Form-Urlencoded; "
       "charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  expect_refusal_after(at_client.data, "", 403, "form body");
}

TEST_F(ApiGateTest, ABuildWithAMultipartBodyIsRefused) {
  start();
  const std::string body = "--x\r\nContent-Disposition: form-data; name=\"networkmode\"\r\n\r\nhost"
                           "\r\n--x--\r\n";
  send("POST /v1.41/build HTTP/1.1\r\nHost: docker\r\nContent-Type: Multipart/Form-Data; "
       "boundary=x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  expect_refusal_after(at_client.data, "", 403, "form body");
}

TEST_F(ApiGateTest, ABuildOnTheDefaultNetworkPassesByteForByte) {
  engine.answer = [](const FakeEngine::Request&) {
    return json_response(200, "OK", "{\"stream\":\"Step 1/1 : FROM busybox\\n\"}\r\n");
  };
  start();
  const std::string tar(10240, '\0');
  const std::string request =
      "POST /v1.41/build?t=x&networkmode=default HTTP/1.1\r\nHost: docker\r\n"
      "Content-Type: application/x-tar\r\nContent-Length: 10240\r\n\r\n" + tar;
  send(request);
  ASSERT_TRUE(engine_got(request.size()));
  EXPECT_TRUE(engine.received == request);
  ASSERT_TRUE(client_got(1));
  end_cleanly();
}

// --- Upgrades: raw bytes only after the engine's 101 ---------------------------------------------

TEST_F(ApiGateTest, AfterA101BytesPassRawBothWaysEvenWhenTheyLookLikeRequests) {
  engine.answer = [](const FakeEngine::Request&) { return std::nullopt; };
  start();
  // Stdin sent with the attach request, before any answer: it waits for the engine's verdict.
  send(kAttach + kPrivilegedCreate);
  ASSERT_TRUE(engine_got(kAttach.size()));
  ASSERT_TRUE(settle(io));
  EXPECT_EQ(engine.received, kAttach) << "bytes after an upgrade request wait for its answer";
  answer_now(kSwitched);
  ASSERT_TRUE(engine_got(kAttach.size() + kPrivilegedCreate.size()));
  EXPECT_EQ(engine.received, kAttach + kPrivilegedCreate);
  ASSERT_TRUE(client_got(kSwitched.size()));
  EXPECT_EQ(at_client.data, kSwitched);

  // Later stdin, and output that looks like HTTP, pass unjudged.
  const std::string more = chunked_post("/containers/create", {kPrivilegedBody});
  send(more);
  ASSERT_TRUE(engine_got(kAttach.size() + kPrivilegedCreate.size() + more.size()));
  EXPECT_EQ(engine.received, kAttach + kPrivilegedCreate + more);
  const std::string output = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\x01\x00\x00";
  engine_writes(output);
  ASSERT_TRUE(client_got(kSwitched.size() + output.size()));
  EXPECT_EQ(at_client.data, kSwitched + output);
  EXPECT_EQ(gate->refused(), 0u);
  end_cleanly();
}

TEST_F(ApiGateTest, AnUpgradeTheEngineAnswersItselfSmugglesNoRequestPastTheJudge) {
  // The engine answers the attach with a 404 and stays an HTTP server: what the client sent
  // after `Upgrade:` is requests, and the privileged create among them is refused.
  engine.answer = [](const FakeEngine::Request& r) -> std::optional<std::string> {
    if (r.target().find("/attach") != std::string::npos) return kNoSuchContainer;
    return kCreated;
  };
  start();
  send(kAttach + kPrivilegedCreate);
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, kAttach) << "the engine saw the smuggled request";
  EXPECT_TRUE(engine.eof);
  expect_refusal_after(at_client.data, kNoSuchContainer, 403, "--privileged");
}

TEST_F(ApiGateTest, AfterAnUpgradeTheEngineAnsweredItselfRequestsAreFramedAgain) {
  engine.answer = [](const FakeEngine::Request& r) -> std::optional<std::string> {
    if (r.target().find("/attach") != std::string::npos) return kNoSuchContainer;
    if (r.target().find("/containers/json") != std::string::npos)
      return json_response(200, "OK", "[]");
    return kCreated;
  };
  start();
  const std::string list = "GET /containers/json HTTP/1.1\r\nHost: docker\r\n\r\n";
  send(kAttach);
  ASSERT_TRUE(client_got(kNoSuchContainer.size()));
  // Sent after the 404 arrived, in separate frames: still requests, still judged.
  send(list);
  send(kAllowedCreate);
  const std::string answers = kNoSuchContainer + json_response(200, "OK", "[]") + kCreated;
  ASSERT_TRUE(client_got(answers.size()));
  EXPECT_EQ(at_client.data, answers);
  EXPECT_EQ(engine.received, kAttach + list + kAllowedCreate);
  send(kPrivilegedCreate.substr(0, 50));
  send(kPrivilegedCreate.substr(50));
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, kAttach + list + kAllowedCreate);
  expect_refusal_after(at_client.data, answers, 403, "--privileged");
}

TEST_F(ApiGateTest, AHeadAnswerWithoutItsBodyKeepsTheResponsesInStep) {
  // HEAD /_ping is answered with a Content-Length and no body (what the docker CLI sends first).
  // If the gate read the next answer's bytes as that body, it would miss the 101 that follows.
  const std::string head_pong =
      "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n\r\n";
  engine.answer = [&](const FakeEngine::Request& r) -> std::optional<std::string> {
    if (r.method() == bhttp::verb::head) return head_pong;
    if (r.target().find("/attach") != std::string::npos) return kSwitched;
    return json_response(200, "OK", "[]");
  };
  start();
  const std::string head = "HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n";
  const std::string list = "GET /containers/json HTTP/1.1\r\nHost: docker\r\n\r\n";
  send(head + list + head + kAttach + kPrivilegedCreate);
  const std::string answers = head_pong + json_response(200, "OK", "[]") + head_pong + kSwitched;
  ASSERT_TRUE(engine_got(head.size() * 2 + list.size() + kAttach.size() +
                         kPrivilegedCreate.size()));
  EXPECT_EQ(engine.received, head + list + head + kAttach + kPrivilegedCreate);
  ASSERT_TRUE(client_got(answers.size()));
  EXPECT_EQ(at_client.data, answers);
  EXPECT_EQ(gate->refused(), 0u);
  end_cleanly();
}

TEST_F(ApiGateTest, AnInterimAnswerIsNotTheFinalOne) {
  // A 100 Continue before the real answer: the 101 that follows belongs to the attach.
  engine.answer = [](const FakeEngine::Request& r) -> std::optional<std::string> {
    if (r.target().find("/attach") != std::string::npos) return kSwitched;
    return "HTTP/1.1 100 Continue\r\n\r\n" + kNoContent;
  };
  start();
  const std::string put =
      "PUT /containers/c0ffee/archive?path=/tmp HTTP/1.1\r\nHost: docker\r\n"
      "Content-Type: application/x-tar\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd";
  send(put + kAttach + kPrivilegedCreate);
  ASSERT_TRUE(engine_got(put.size() + kAttach.size() + kPrivilegedCreate.size()));
  EXPECT_EQ(engine.received, put + kAttach + kPrivilegedCreate);
  EXPECT_EQ(gate->refused(), 0u);
  end_cleanly();
}

TEST_F(ApiGateTest, AnUpgradeOnAJudgedRouteIsJudgedFirst) {
  // A create that also asks for an upgrade: its body is judged like any other create.
  start();
  std::string request = kPrivilegedCreate;
  request.insert(request.find("\r\n") + 2, "Connection: Upgrade\r\nUpgrade: tcp\r\n");
  send(request);
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, "");
  expect_refusal_after(at_client.data, "", 403, "--privileged");
}

TEST_F(ApiGateTest, ABodilessUpgradeOnAJudgedRouteReachesTheEngine) {
  // No body, so the framer ends it with `upgraded` rather than `message_end`: the gate must
  // still judge and forward it, or wait forever for an answer to a request the engine never got.
  engine.answer = [](const FakeEngine::Request& r) -> std::optional<std::string> {
    if (r.target().find("/containers/create") != std::string::npos)
      return json_response(400, "Bad Request", "{\"message\":\"config cannot be empty\"}\n");
    return kPong;
  };
  start();
  const std::string request =
      "POST /containers/create HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
      "Upgrade: tcp\r\n\r\n";
  send(request + kPrivilegedCreate);
  ASSERT_TRUE(client_done());
  EXPECT_EQ(engine.received, request);
  expect_refusal_after(
      at_client.data,
      json_response(400, "Bad Request", "{\"message\":\"config cannot be empty\"}\n"), 403,
      "--privileged");
}

// --- The connection ends, whoever ends it --------------------------------------------------------

TEST_F(ApiGateTest, TheEngineClosingBeforeItAnswersAnUpgradeEndsTheConnection) {
  engine.answer = [](const FakeEngine::Request&) { return std::nullopt; };
  start();
  send(kAttach + kPrivilegedCreate);
  ASSERT_TRUE(engine_got(kAttach.size()));
  boost::system::error_code ignored;
  engine_side.close(ignored);  // dockerd went away
  ASSERT_TRUE(client_done());
  EXPECT_TRUE(at_client.eof);
  EXPECT_EQ(at_client.data, "");
  send("", /*eof=*/true);
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
}

TEST_F(ApiGateTest, AClientThatGoesAwayWhileAnUpgradeWaitsEndsTheSplice) {
  // The gate waits for the engine's answer to an upgrade; the client's call ends meanwhile.
  // Nothing may stay parked: the engine connection must be let go.
  engine.answer = [](const FakeEngine::Request&) { return std::nullopt; };
  start();
  send(kAttach);
  ASSERT_TRUE(engine_got(kAttach.size()));
  ASSERT_TRUE(settle(io));
  client->cancel("the client went away");
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }))
      << "the splice is still parked on the upgrade";
  EXPECT_FALSE(result->clean());
  ASSERT_TRUE(run_until(io, [&] { return engine.eof; })) << "the engine connection stays open";
}

TEST_F(ApiGateTest, AClientThatGoesAwayAfterABodilessJudgedUpgradeEndsTheSplice) {
  // Same, when the engine never answers because it never got the request.
  engine.answer = [](const FakeEngine::Request&) { return std::nullopt; };
  start();
  send("POST /containers/create HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
       "Upgrade: tcp\r\n\r\n");
  ASSERT_TRUE(settle(io));
  client->cancel("the client went away");
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }))
      << "the splice is still parked on the upgrade";
}

TEST_F(ApiGateTest, AnEngineHangingUpWhileTheClientLagsLeavesTheGateIdle) {
  // The engine answers a listing, then hangs up without answering the attach, while the client
  // reads nothing: the hang-up wakes the gate's wait, but only the end-of-file behind the
  // listing, read once the client catches up, decides. Meanwhile nothing spins.
  const std::string listing = json_response(200, "OK", "[" + std::string(200 * 1024, ' ') + "]");
  engine.answer = [&](const FakeEngine::Request& r) -> std::optional<std::string> {
    if (r.target().find("/attach") != std::string::npos) return std::nullopt;
    return listing;
  };
  start(/*client_reads=*/false);
  const std::string list = "GET /containers/json HTTP/1.1\r\nHost: docker\r\n\r\n";
  send(list + kAttach + kPrivilegedCreate);
  ASSERT_TRUE(engine_got(list.size() + kAttach.size()));
  ASSERT_TRUE(settle(io));
  ASSERT_TRUE(near->write_waiting()) << "the listing should fill the client's stream";
  boost::system::error_code ignored;
  engine_side.close(ignored);
  EXPECT_TRUE(settle(io)) << "the gate spins on the engine's hang-up";
  EXPECT_FALSE(result.has_value());
  client_starts_reading();
  ASSERT_TRUE(client_done());
  EXPECT_TRUE(at_client.eof);
  EXPECT_TRUE(at_client.data == listing);
  EXPECT_EQ(engine.received, list + kAttach);
  send("", /*eof=*/true);
  ASSERT_TRUE(run_until(io, [&] { return result.has_value(); }));
}

}  // namespace
}  // namespace offload::runner
