// PathRestorer and ResponseRewriter: replica paths in the engine's answers become the user's
// paths again, wherever the reads split them, and nothing else changes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "offload/daemon/path_restore.h"

using namespace offload::daemon;
using nlohmann::json;

namespace {

const std::string kReplica = "/var/lib/offload-runner/sessions/abc/sync/m1";
const std::string kReplicaFile = "/var/lib/offload-runner/sessions/abc/sync/m2";

std::vector<PathMapping> mappings() {
  return {
      {kReplica, "/home/me/proj", ""},
      // A create that named a subdirectory spelled with a trailing slash.
      {kReplica + "/sub", "/home/me/proj/sub", "/home/me/proj/sub/"},
      {kReplicaFile, "/home/me/a \"quoted\" <file>", ""},
  };
}

std::string restore(const std::string& text) {
  PathRestorer r(mappings());
  return r.feed(text) + r.finish();
}

// The engine's inspect answer, trimmed to what shows sources.
std::string inspect_json(const std::string& bind_source, const std::string& mount_source) {
  return json{{"Id", "c1"},
              {"HostConfig",
               {{"Binds", {bind_source + ":/src:ro"}},
                {"Mounts", {{{"Type", "bind"}, {"Source", mount_source}, {"Target", "/m"}}}}}},
              {"Mounts", {{{"Type", "bind"}, {"Source", mount_source}, {"Destination", "/m"}}}}}
      .dump();
}

TEST(PathRestorer, ReplicaSourcesBecomeLocalInEveryField) {
  auto out = json::parse(restore(inspect_json(kReplica, kReplica)));
  EXPECT_EQ(out["HostConfig"]["Binds"][0], "/home/me/proj:/src:ro");
  EXPECT_EQ(out["HostConfig"]["Mounts"][0]["Source"], "/home/me/proj");
  EXPECT_EQ(out["Mounts"][0]["Source"], "/home/me/proj");
  EXPECT_EQ(out["Id"], "c1");
}

TEST(PathRestorer, BindsKeepTheSpellingOfTheCreateAndMountsTheCleanPath) {
  auto out = json::parse(restore(inspect_json(kReplica + "/sub", kReplica + "/sub")));
  EXPECT_EQ(out["HostConfig"]["Binds"][0], "/home/me/proj/sub/:/src:ro");
  EXPECT_EQ(out["Mounts"][0]["Source"], "/home/me/proj/sub");
}

TEST(PathRestorer, PathsInsideAReplicaFollowItsRoot) {
  EXPECT_EQ(restore(R"({"Source":")" + kReplica + R"(/deep/er"})"),
            R"({"Source":"/home/me/proj/deep/er"})");
}

TEST(PathRestorer, LocalPathsAreEscapedAsGoWritesJson) {
  auto text = restore(R"({"Source":")" + kReplicaFile + R"("})");
  EXPECT_EQ(text, R"({"Source":"/home/me/a \"quoted\" \u003cfile\u003e"})");
  EXPECT_EQ(json::parse(text)["Source"], "/home/me/a \"quoted\" <file>");
}

TEST(PathRestorer, OnlyWholePathsAtTheStartOfAStringAreReplaced) {
  // A longer mount id, a path that only contains the replica, one followed by other text.
  for (const std::string& text :
       {R"({"Source":")" + kReplica + R"(9"})", R"({"Source":"/x)" + kReplica + R"("})",
        R"({"Env":["P=)" + kReplica + R"("]})", R"({"Source":")" + kReplica + R"(.bak"})"})
    EXPECT_EQ(restore(text), text);
}

TEST(PathRestorer, EverySplitOfTheStreamGivesTheSameText) {
  const std::string text = inspect_json(kReplica, kReplica + "/sub") + "\n" +
                           inspect_json(kReplicaFile, kReplica) + "\n";
  const std::string whole = restore(text);
  ASSERT_NE(whole, text);
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    PathRestorer r(mappings());
    std::string out = r.feed(text.substr(0, cut));
    out += r.feed(text.substr(cut));
    out += r.finish();
    ASSERT_EQ(out, whole) << "cut at " << cut;
  }
  // Byte by byte, too: only what may still be a replica path is held back.
  PathRestorer r(mappings());
  std::string out;
  for (char c : text) out += r.feed(std::string(1, c));
  EXPECT_EQ(out + r.finish(), whole);
}

TEST(PathRestorer, HoldsBackNothingThatCannotBeAReplicaPath) {
  PathRestorer r(mappings());
  EXPECT_EQ(r.feed("{\"Type\":\"mount\"}\n"), "{\"Type\":\"mount\"}\n");
  EXPECT_EQ(r.feed("{\"Source\":\"/var/lib/off"), "{\"Source\":\"");
  EXPECT_EQ(r.feed("ice\"}"), "/var/lib/office\"}");
}

TEST(PathRestorer, NoMappingsPassesEverything) {
  PathRestorer r({});
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.feed("\"/var/lib/offload-runner"), "\"/var/lib/offload-runner");
}

// ---- responses --------------------------------------------------------------------------

std::string dechunk(std::string_view body) {
  std::string out;
  for (;;) {
    auto nl = body.find("\r\n");
    std::size_t size = std::stoul(std::string(body.substr(0, nl)), nullptr, 16);
    body.remove_prefix(nl + 2);
    if (size == 0) return out;
    out.append(body.substr(0, size));
    body.remove_prefix(size + 2);
  }
}


TEST(ResponseRewriter, ALengthBodyIsRewrittenWithItsNewLength) {
  const std::string body = inspect_json(kReplica, kReplica);
  const std::string response = "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: "
                               "application/json\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body;
  const std::string expected_body = restore(body);
  const std::string expected = "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: "
                               "application/json\r\nContent-Length: " +
                               std::to_string(expected_body.size()) + "\r\n\r\n" + expected_body;
  for (std::size_t cut = 0; cut <= response.size(); ++cut) {
    ResponseRewriter rw(mappings(), 1 << 20);
    auto a = rw.feed(response.substr(0, cut));
    EXPECT_EQ(a.consumed, cut);
    if (cut < response.size()) {
      EXPECT_EQ(a.out, "") << "a held body goes out whole";
    }
    auto b = rw.feed(response.substr(cut));
    ASSERT_EQ(a.out + b.out, expected) << "cut at " << cut;
    EXPECT_TRUE(rw.done());
  }
}

TEST(ResponseRewriter, AChunkedStreamIsRewrittenAsItComes) {
  const std::string e1 = R"({"status":"start","Source":")" + kReplica + "\"}\n";
  const std::string e2 = R"({"status":"die","Source":")" + kReplicaFile + "\"}\n";
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n";
  auto chunk = [](const std::string& s) {
    char size[16];
    std::snprintf(size, sizeof size, "%zx", s.size());
    return std::string(size) + "\r\n" + s + "\r\n";
  };
  ResponseRewriter rw(mappings(), 16);  // the cap is for held bodies, not streams
  auto first = rw.feed(head + chunk(e1));
  ASSERT_TRUE(first.out.starts_with(head));
  // The event is out at once, before the stream goes on.
  EXPECT_EQ(dechunk(first.out.substr(head.size()) + "0\r\n\r\n"), restore(e1));
  auto second = rw.feed(chunk(e2) + "0\r\n\r\nHTTP/1.1 200 OK\r\n");
  EXPECT_TRUE(rw.done());
  EXPECT_EQ(second.consumed, chunk(e2).size() + 5) << "the next response is not this one's";
  EXPECT_EQ(dechunk(second.out), restore(e2));

  // Split anywhere, the decoded body is the same.
  const std::string response = head + chunk(e1.substr(0, 50)) + chunk(e1.substr(50)) +
                               chunk(e2) + "0\r\nX-Trailer: 1\r\n\r\n";
  for (std::size_t cut = 0; cut <= response.size(); ++cut) {
    ResponseRewriter r(mappings(), 16);
    auto a = r.feed(response.substr(0, cut));
    auto b = r.feed(response.substr(cut));
    std::string out = a.out + b.out;
    ASSERT_TRUE(r.done()) << cut;
    ASSERT_TRUE(out.starts_with(head));
    EXPECT_EQ(dechunk(out.substr(head.size())), restore(e1 + e2)) << "cut at " << cut;
    EXPECT_TRUE(out.ends_with("0\r\nX-Trailer: 1\r\n\r\n"));
  }
}

TEST(ResponseRewriter, ErrorsLargeBodiesAndUnknownFramingPassUnchanged) {
  const std::string body = R"({"message":")" + kReplica + R"("})";
  const std::string length = "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  for (const std::string& response :
       {"HTTP/1.1 404 Not Found\r\n" + length + body,
        "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + body}) {
    ResponseRewriter rw(mappings(), 1 << 20);
    auto fed = rw.feed(response);
    EXPECT_EQ(fed.out, response);
    EXPECT_TRUE(rw.passing_through());
  }
  // Over the cap: not held, not changed.
  const std::string large = "HTTP/1.1 200 OK\r\n" + length + body;
  ResponseRewriter rw(mappings(), body.size() - 1);
  EXPECT_EQ(rw.feed(large).out, large);
  EXPECT_TRUE(rw.passing_through());
}

TEST(ResponseRewriter, AMalformedChunkPassesTheRestThrough) {
  ResponseRewriter rw(mappings(), 1 << 20);
  auto fed = rw.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nrest");
  EXPECT_TRUE(rw.passing_through());
  EXPECT_TRUE(fed.out.ends_with("zz\r\nrest"));
}

}  // namespace
