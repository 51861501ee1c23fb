#include "offload/http/request_framer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace offload::http {
namespace {

using ::testing::ElementsAre;
using Event = RequestFramer::Event;

// What a proxy sees when it drives the framer the way the daemon does: read `piece` bytes at a
// time, call next() until need_more, forward each consumed prefix.
struct Trace {
  std::vector<std::string> events;  // "head", "body:N" (consecutive bodies merged), "end", ...
  std::vector<RequestHead> heads;
  std::string forwarded;  // every consumed byte, in order
  std::string body;       // body bytes (raw, incl. chunk framing) of all requests
  std::string rest;       // unconsumed bytes at the end (raw stream after an upgrade)
  int error_status = 0;
};

Trace run(std::string_view input, std::size_t piece, std::size_t max_head = 64 * 1024) {
  RequestFramer framer(max_head);
  Trace t;
  std::string pending;
  std::size_t fed = 0;
  for (int rounds = 0; rounds < 1'000'000; ++rounds) {
    if (fed < input.size()) {
      auto k = std::min(piece, input.size() - fed);
      pending.append(input.substr(fed, k));
      fed += k;
    }
    bool stop = false;
    for (;;) {
      auto r = framer.next(pending);
      EXPECT_LE(r.consumed, pending.size());
      if (r.consumed > pending.size()) return t;
      const std::string_view bytes(pending.data(), r.consumed);
      switch (r.event) {
        case Event::need_more:
          EXPECT_EQ(r.consumed, 0u);
          break;
        case Event::head:
          EXPECT_EQ(r.consumed, framer.head().head_size);
          t.heads.push_back(framer.head());
          t.events.push_back("head");
          break;
        case Event::body:
          EXPECT_GT(r.consumed, 0u);
          t.body += bytes;
          if (!t.events.empty() && t.events.back().rfind("body:", 0) == 0) {
            auto n = std::stoul(t.events.back().substr(5)) + r.consumed;
            t.events.back() = "body:" + std::to_string(n);
          } else {
            t.events.push_back("body:" + std::to_string(r.consumed));
          }
          break;
        case Event::message_end:
          EXPECT_EQ(r.consumed, 0u);
          t.events.push_back("end");
          break;
        case Event::upgraded:
          EXPECT_EQ(r.consumed, 0u);
          t.events.push_back("upgraded");
          stop = true;
          break;
        case Event::error:
          EXPECT_EQ(r.consumed, 0u);
          t.error_status = framer.error_status();
          EXPECT_FALSE(framer.error_message().empty());
          t.events.push_back("error:" + std::to_string(framer.error_status()));
          stop = true;
          break;
      }
      t.forwarded += bytes;
      pending.erase(0, r.consumed);
      if (stop || r.event == Event::need_more) break;
    }
    if (stop) break;
    if (fed == input.size()) break;
  }
  t.rest = pending + std::string(input.substr(fed));
  return t;
}

// Every way of cutting the input must frame it the same way.
void expect_same_for_all_pieces(std::string_view input, const std::vector<std::string>& events,
                                std::size_t max_head = 64 * 1024) {
  for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{5},
                            std::size_t{7}, std::size_t{16}, std::size_t{64}, input.size()}) {
    if (piece == 0) continue;
    SCOPED_TRACE("piece size " + std::to_string(piece));
    auto t = run(input, piece, max_head);
    EXPECT_EQ(t.events, events);
  }
}

const std::string kPing =
    "GET /_ping HTTP/1.1\r\n"
    "Host: api.moby.localhost\r\n"
    "User-Agent: Docker-Client/28.0.1 (linux)\r\n"
    "\r\n";

TEST(RequestFramer, SimpleGet) {
  auto t = run(kPing, kPing.size());
  EXPECT_THAT(t.events, ElementsAre("head", "end"));
  ASSERT_EQ(t.heads.size(), 1u);
  const auto& h = t.heads[0];
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/_ping");
  EXPECT_EQ(h.version, 11u);
  EXPECT_EQ(h.head_size, kPing.size());
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.upgrade);
  EXPECT_FALSE(h.chunked);
  EXPECT_FALSE(h.content_length.has_value());
  EXPECT_EQ(h.path(), "/_ping");
  ASSERT_EQ(h.fields.size(), 2u);
  EXPECT_EQ(h.fields[0].first, "Host");
  EXPECT_EQ(h.fields[0].second, "api.moby.localhost");
  EXPECT_EQ(h.fields[1].second, "Docker-Client/28.0.1 (linux)");
  EXPECT_EQ(t.forwarded, kPing);
  EXPECT_EQ(t.rest, "");
  expect_same_for_all_pieces(kPing, {"head", "end"});
}

TEST(RequestFramer, HeadThenGetPingPipelined) {
  const std::string head_ping = "HEAD /_ping HTTP/1.1\r\nHost: api.moby.localhost\r\n\r\n";
  auto t = run(head_ping + kPing, 4096);
  EXPECT_THAT(t.events, ElementsAre("head", "end", "head", "end"));
  ASSERT_EQ(t.heads.size(), 2u);
  EXPECT_EQ(t.heads[0].method, "HEAD");
  EXPECT_EQ(t.heads[1].method, "GET");
  EXPECT_EQ(t.heads[0].head_size, head_ping.size());
}

TEST(RequestFramer, QueryAndVersionPrefixAreNotPartOfPath) {
  const std::string req =
      "GET /v1.41/containers/json?all=1&filters=%7B%7D HTTP/1.1\r\nHost: docker\r\n\r\n";
  auto t = run(req, req.size());
  ASSERT_EQ(t.heads.size(), 1u);
  const auto& h = t.heads[0];
  EXPECT_EQ(h.target, "/v1.41/containers/json?all=1&filters=%7B%7D");
  EXPECT_EQ(h.path(), "/containers/json");
  EXPECT_EQ(h.field("HOST"), "docker");
  EXPECT_EQ(h.field("host"), "docker");
  EXPECT_EQ(h.field("X-Missing"), "");
}

TEST(RequestFramer, PathEdgeCases) {
  RequestHead h;
  auto path_of = [&](std::string target) {
    h.target = std::move(target);
    return h.path();
  };
  EXPECT_EQ(path_of("/v1.24/containers/abc/attach?stream=1"), "/containers/abc/attach");
  EXPECT_EQ(path_of("/v1/info"), "/info");
  EXPECT_EQ(path_of("/version"), "/version");  // a route, not a version prefix
  EXPECT_EQ(path_of("/v1.41"), "/v1.41");
  EXPECT_EQ(path_of("/v/info"), "/v/info");
  EXPECT_EQ(path_of("/_ping"), "/_ping");
  EXPECT_EQ(path_of("http://docker/v1.41/info?x=1"), "/info");
  EXPECT_EQ(path_of("http://docker"), "/");
}

TEST(RequestFramer, PostWithContentLengthSplitAnyWay) {
  const std::string body = R"({"Image":"busybox","Cmd":["sh"],"HostConfig":{"Binds":["/src:/dst"]}})";
  const std::string req = "POST /v1.41/containers/create?name=web HTTP/1.1\r\n"
                          "Host: api.moby.localhost\r\n"
                          "Content-Type: application/json\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  auto t = run(req, 1);
  EXPECT_THAT(t.events, ElementsAre("head", "body:" + std::to_string(body.size()), "end"));
  EXPECT_EQ(t.body, body);
  EXPECT_EQ(t.forwarded, req);
  ASSERT_EQ(t.heads.size(), 1u);
  EXPECT_EQ(t.heads[0].content_length, body.size());
  EXPECT_EQ(t.heads[0].path(), "/containers/create");
  expect_same_for_all_pieces(req, {"head", "body:" + std::to_string(body.size()), "end"});
}

TEST(RequestFramer, ContentLengthBodyIsReportedAsItArrives) {
  const std::string head = "POST /build HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
  RequestFramer framer;
  std::string buf = head + "abc";
  auto r = framer.next(buf);
  ASSERT_EQ(r.event, Event::head);
  ASSERT_EQ(r.consumed, head.size());
  buf.erase(0, r.consumed);
  r = framer.next(buf);
  EXPECT_EQ(r.event, Event::body);
  EXPECT_EQ(r.consumed, 3u);
  buf.erase(0, r.consumed);
  r = framer.next(buf);
  EXPECT_EQ(r.event, Event::need_more);
  // The next request's bytes must not be taken as body.
  buf = "defghij" + kPing;
  r = framer.next(buf);
  EXPECT_EQ(r.event, Event::body);
  EXPECT_EQ(r.consumed, 7u);
  buf.erase(0, r.consumed);
  EXPECT_EQ(framer.next(buf).event, Event::message_end);
  EXPECT_EQ(framer.head().method, "POST");  // still the finished request's head
  r = framer.next(buf);
  EXPECT_EQ(r.event, Event::head);
  EXPECT_EQ(r.consumed, kPing.size());
  EXPECT_EQ(framer.head().method, "GET");
}

TEST(RequestFramer, ZeroContentLengthHasNoBody) {
  const std::string req = "POST /v1.41/containers/abc/start HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
  expect_same_for_all_pieces(req, {"head", "end"});
}

TEST(RequestFramer, ChunkedBodyByteByByteWithTrailers) {
  const std::string chunked =
      "5;name=value\r\nhello\r\n"
      "A\r\n0123456789\r\n"
      "0\r\n"
      "X-Checksum: abc\r\n"
      "X-Other: 1\r\n"
      "\r\n";
  const std::string req = "POST /v1.41/build?t=app HTTP/1.1\r\n"
                          "Host: api.moby.localhost\r\n"
                          "Transfer-Encoding: chunked\r\n"
                          "Content-Type: application/x-tar\r\n\r\n" + chunked;
  auto t = run(req + kPing, 1);
  EXPECT_THAT(t.events, ElementsAre("head", "body:" + std::to_string(chunked.size()), "end",
                                    "head", "end"));
  EXPECT_EQ(t.body, chunked);
  EXPECT_EQ(t.forwarded, req + kPing);
  ASSERT_EQ(t.heads.size(), 2u);
  EXPECT_TRUE(t.heads[0].chunked);
  EXPECT_FALSE(t.heads[0].content_length.has_value());
  expect_same_for_all_pieces(req + kPing, {"head", "body:" + std::to_string(chunked.size()),
                                           "end", "head", "end"});
}

TEST(RequestFramer, ChunkedBodyThatIsOnlyTheLastChunk) {
  const std::string req = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  expect_same_for_all_pieces(req, {"head", "body:5", "end"});
}

TEST(RequestFramer, PipelinedRequestsInOneBuffer) {
  const std::string post = "POST /v1.41/containers/abc/wait HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
  const std::string chunked =
      "POST /v1.41/build HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  const std::string head = "HEAD /_ping HTTP/1.1\r\n\r\n";
  const std::string partial = "GET /v1.41/info HTTP/1.1\r\nHost: d";
  const std::string all = kPing + post + chunked + head + partial;
  auto t = run(all, all.size());
  EXPECT_THAT(t.events, ElementsAre("head", "end", "head", "body:2", "end", "head", "body:13",
                                    "end", "head", "end"));
  ASSERT_EQ(t.heads.size(), 4u);
  EXPECT_EQ(t.heads[1].path(), "/containers/abc/wait");
  EXPECT_EQ(t.heads[2].path(), "/build");
  EXPECT_EQ(t.heads[3].method, "HEAD");
  EXPECT_EQ(t.rest, partial);
  EXPECT_EQ(t.forwarded + t.rest, all);
}

TEST(RequestFramer, DockerAttachUpgradeLeavesRawStream) {
  const std::string req =
      "POST /v1.41/containers/abc/attach?stderr=1&stdin=1&stdout=1&stream=1 HTTP/1.1\r\n"
      "Host: api.moby.localhost\r\n"
      "User-Agent: Docker-Client/28.0.1 (linux)\r\n"
      "Content-Length: 0\r\n"
      "Connection: Upgrade\r\n"
      "Content-Type: text/plain\r\n"
      "Upgrade: tcp\r\n"
      "\r\n";
  const std::string raw = "echo hi\n\x01\x00\x00\x00GET / HTTP/1.1\r\n";
  auto t = run(req + raw, 4096);
  EXPECT_THAT(t.events, ElementsAre("head", "upgraded"));
  ASSERT_EQ(t.heads.size(), 1u);
  EXPECT_TRUE(t.heads[0].upgrade);
  EXPECT_EQ(t.heads[0].upgrade_protocol, "tcp");
  EXPECT_EQ(t.heads[0].path(), "/containers/abc/attach");
  EXPECT_EQ(t.forwarded, req);
  EXPECT_EQ(t.rest, raw);
  expect_same_for_all_pieces(req + raw, {"head", "upgraded"});
}

TEST(RequestFramer, UpgradeWithoutContentLength) {
  const std::string req =
      "POST /v1.41/containers/abc/attach?stderr=1&stdin=1&stdout=1&stream=1 HTTP/1.1\r\n"
      "Connection: Upgrade\r\n"
      "Upgrade: tcp\r\n"
      "\r\n";
  RequestFramer framer;
  auto r = framer.next(req);
  ASSERT_EQ(r.event, Event::head);
  EXPECT_EQ(r.consumed, req.size());
  EXPECT_EQ(framer.next("").event, Event::upgraded);
  // The framer refuses to interpret anything after the switch.
  EXPECT_EQ(framer.next(kPing).event, Event::upgraded);
  EXPECT_EQ(framer.next(kPing).consumed, 0u);
}

TEST(RequestFramer, ExecStartUpgradeWithBodyPassesBodyFirst) {
  const std::string body = R"({"Detach":false,"Tty":true,"ConsoleSize":[24,80]})";
  const std::string req = "POST /v1.41/exec/e1/start HTTP/1.1\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n"
                          "Connection: Upgrade\r\n"
                          "Content-Type: application/json\r\n"
                          "Upgrade: tcp\r\n\r\n" + body;
  const std::string raw = "ls\r";
  auto t = run(req + raw, 3);
  EXPECT_THAT(t.events,
              ElementsAre("head", "body:" + std::to_string(body.size()), "end", "upgraded"));
  EXPECT_EQ(t.body, body);
  EXPECT_EQ(t.rest, raw);
  expect_same_for_all_pieces(req + raw,
                             {"head", "body:" + std::to_string(body.size()), "end", "upgraded"});
}

TEST(RequestFramer, BuildkitSessionH2c) {
  const std::string req =
      "POST /session HTTP/1.1\r\n"
      "Host: api.moby.localhost\r\n"
      "Connection: Upgrade\r\n"
      "Upgrade: h2c\r\n"
      "X-Docker-Expose-Session-Grpc-Method: /moby.filesync.v1.FileSync/DiffCopy\r\n"
      "X-Docker-Expose-Session-Name: app\r\n"
      "X-Docker-Expose-Session-Sharedkey: abc\r\n"
      "X-Docker-Expose-Session-Uuid: 9f2k\r\n"
      "\r\n";
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  auto t = run(req + preface, 4096);
  EXPECT_THAT(t.events, ElementsAre("head", "upgraded"));
  ASSERT_EQ(t.heads.size(), 1u);
  EXPECT_EQ(t.heads[0].upgrade_protocol, "h2c");
  EXPECT_EQ(t.heads[0].path(), "/session");
  EXPECT_EQ(t.heads[0].field("x-docker-expose-session-uuid"), "9f2k");
  EXPECT_EQ(t.rest, preface);
}

TEST(RequestFramer, UpgradeNeedsBothHeadersAndHttp11) {
  auto t = run("GET /x HTTP/1.1\r\nUpgrade: tcp\r\n\r\n", 4096);
  EXPECT_THAT(t.events, ElementsAre("head", "end"));
  EXPECT_FALSE(t.heads[0].upgrade);
  EXPECT_EQ(t.heads[0].upgrade_protocol, "");
  t = run("GET /x HTTP/1.1\r\nConnection: Upgrade\r\n\r\n", 4096);
  EXPECT_THAT(t.events, ElementsAre("head", "end"));
  t = run("GET /x HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n", 4096);
  EXPECT_THAT(t.events, ElementsAre("head", "end"));
  t = run("GET /x HTTP/1.1\r\nConnection: keep-alive, upgrade\r\nUpgrade: tcp\r\n\r\n", 4096);
  EXPECT_THAT(t.events, ElementsAre("head", "upgraded"));
}

TEST(RequestFramer, KeepAliveFollowsHttpVersion) {
  auto keep_alive = [](const std::string& req) {
    auto t = run(req, req.size());
    EXPECT_EQ(t.heads.size(), 1u);
    return !t.heads.empty() && t.heads[0].keep_alive;
  };
  EXPECT_TRUE(keep_alive("GET / HTTP/1.1\r\n\r\n"));
  EXPECT_FALSE(keep_alive("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
  EXPECT_FALSE(keep_alive("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_TRUE(keep_alive("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto t = run("GET / HTTP/1.0\r\n\r\n", 100);
  EXPECT_EQ(t.heads[0].version, 10u);
}

TEST(RequestFramer, OversizedHeadIs431) {
  const std::string req =
      "GET /x HTTP/1.1\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  expect_same_for_all_pieces(req, {"error:431"}, 1024);
  // A head that never ends is refused as soon as the limit is reached, not buffered forever.
  const std::string endless = "GET /x HTTP/1.1\r\n" + std::string(1024, 'a');
  expect_same_for_all_pieces(endless, {"error:431"}, 1024);
  const std::string long_line = "GET /" + std::string(2000, 'a') + " HTTP/1.1\r\n\r\n";
  expect_same_for_all_pieces(long_line, {"error:431"}, 1024);
}

TEST(RequestFramer, HeadExactlyAtTheLimitIsAccepted) {
  std::string req = "GET /x HTTP/1.1\r\nX-Pad: \r\n\r\n";
  req.insert(req.size() - 4, std::string(1024 - req.size(), 'p'));
  ASSERT_EQ(req.size(), 1024u);
  expect_same_for_all_pieces(req, {"head", "end"}, 1024);
  req.insert(req.size() - 4, "p");
  expect_same_for_all_pieces(req, {"error:431"}, 1024);
}

TEST(RequestFramer, GarbageIs400) {
  const std::string tls_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  auto t = run(tls_hello, tls_hello.size());
  EXPECT_THAT(t.events, ElementsAre("error:400"));
  // Detected before the head would be complete.
  t = run("GET / HTTP/1.1\r\nBad Header: x\r\n", 1000);
  EXPECT_THAT(t.events, ElementsAre("error:400"));
  expect_same_for_all_pieces("GET / HTTP/2.0\r\n\r\n", {"error:400"});
  // Bare LF line ends: Beast only notices once it sees the whole input at once; fed in pieces
  // it waits for a CRLFCRLF that never comes (the caller's head limit or timeout ends that).
  EXPECT_THAT(run("GET / HTTP/1.1\n\n", 100).events, ElementsAre("error:400"));
  expect_same_for_all_pieces("GET  HTTP/1.1\r\n\r\n", {"error:400"});
  expect_same_for_all_pieces("\r\nGET / HTTP/1.1\r\n\r\n", {"error:400"});
}

TEST(RequestFramer, ObsFoldIsRejected) {
  const std::string req = "GET / HTTP/1.1\r\nX-Folded: a\r\n  b\r\n\r\n";
  expect_same_for_all_pieces(req, {"error:400"});
  // Whitespace inside a value is fine.
  expect_same_for_all_pieces("GET / HTTP/1.1\r\nX-Spaced: a \t b\r\n\r\n", {"head", "end"});
}

TEST(RequestFramer, TransferEncodingOtherThanChunkedIs501) {
  expect_same_for_all_pieces("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", {"error:501"});
  expect_same_for_all_pieces("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                             {"error:501"});
  expect_same_for_all_pieces("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                             {"error:501"});
  auto t = run("POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", 100);
  EXPECT_THAT(t.events, ElementsAre("head", "body:5", "end"));
}

TEST(RequestFramer, ContentLengthWithChunkedIs400) {
  expect_same_for_all_pieces(
      "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", {"error:400"});
  expect_same_for_all_pieces(
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", {"error:400"});
  expect_same_for_all_pieces(
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", {"error:400"});
  expect_same_for_all_pieces("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                             {"error:400"});
}

TEST(RequestFramer, BadChunkIs400) {
  const std::string req = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n";
  expect_same_for_all_pieces(req, {"head", "error:400"});
  // The good chunk before the broken one is still body.
  const std::string no_crlf =
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n";
  expect_same_for_all_pieces(no_crlf, {"head", "body:6", "error:400"});
}

TEST(RequestFramer, EndlessChunkHeaderIs431) {
  const std::string req = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=" +
                          std::string(600, 'x');
  expect_same_for_all_pieces(req, {"head", "error:431"}, 512);
}

TEST(RequestFramer, ErrorIsSticky) {
  RequestFramer framer;
  auto r = framer.next("NOT HTTP\r\n\r\n");
  ASSERT_EQ(r.event, Event::error);
  EXPECT_EQ(framer.error_status(), 400);
  EXPECT_THAT(framer.error_message(), ::testing::HasSubstr("malformed"));
  EXPECT_EQ(framer.next(kPing).event, Event::error);
  EXPECT_EQ(framer.next(kPing).consumed, 0u);
}

TEST(RequestFramer, NeedMoreOnEmptyInput) {
  RequestFramer framer;
  auto r = framer.next("");
  EXPECT_EQ(r.event, Event::need_more);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(framer.error_status(), 0);
}

TEST(JsonErrorResponse, GetExactOutput) {
  EXPECT_EQ(json_error_response(503, "no offload session: run \"docker offload start\"", false,
                                false),
            "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 63\r\n"
            "Connection: close\r\n"
            "\r\n"
            "{\"message\":\"no offload session: run \\\"docker offload start\\\"\"}\n");
}

TEST(JsonErrorResponse, HeadKeepsContentLengthButNoBody) {
  EXPECT_EQ(json_error_response(503, "no offload session: run \"docker offload start\"", true,
                                true),
            "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 63\r\n"
            "Connection: keep-alive\r\n"
            "\r\n");
}

TEST(JsonErrorResponse, EscapesAndOddStatuses) {
  auto r = json_error_response(400, "bad\nline\x01", false, false);
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  EXPECT_THAT(r, ::testing::EndsWith("{\"message\":\"bad\\nline\\u0001\"}\n"));
  r = json_error_response(598, "x", false, false);
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 598 Error\r\n"));
  r = json_error_response(42, "x", false, false);
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 500 Internal Server Error\r\n"));
  r = json_error_response(204, "x", false, true);
  EXPECT_EQ(r, "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n");
}

}  // namespace
}  // namespace offload::http
