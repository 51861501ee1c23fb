// The image cache's bookkeeping: its registry config, the access record it reads from the
// registry's log, the storage scan, which repositories go when the cap is passed, and the
// supervision of the registry process, all on a ManualClock with a fake process.
#include "offload/runner/image_cache.h"

#include <gtest/gtest.h>

#include <fstream>

#include "offload/common/fs.h"
#include "offload/common/token.h"

namespace offload::runner {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string hex(char c) { return std::string(64, c); }

// A registry storage tree as distribution 2.8 lays it out.
class Storage {
 public:
  explicit Storage(fs::path root) : root_(std::move(root)) {}
  void blob(char c, std::size_t bytes) {
    auto dir = v2() / "blobs" / "sha256" / hex(c).substr(0, 2) / hex(c);
    fs::create_directories(dir);
    std::ofstream(dir / "data") << std::string(bytes, 'x');
  }
  void link(const std::string& repo, const std::string& kind, char c) {
    auto dir = v2() / "repositories" / repo / kind / "sha256" / hex(c);
    fs::create_directories(dir);
    std::ofstream(dir / "link") << "sha256:" + hex(c);
  }
  // A repository holding manifest `m`, whose layers are `layers`.
  void image(const std::string& repo, char m, const std::string& layers) {
    link(repo, "_manifests/revisions", m);
    auto tag = v2() / "repositories" / repo / "_manifests" / "tags" / "latest" / "current";
    fs::create_directories(tag);
    std::ofstream(tag / "link") << "sha256:" + hex(m);
    for (char l : layers) link(repo, "_layers", l);
  }
  bool has_repo(const std::string& repo) const {
    return fs::exists(v2() / "repositories" / repo);
  }
  fs::path v2() const { return root_ / "docker" / "registry" / "v2"; }

 private:
  fs::path root_;
};

class ImageCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("image-cache-test-" + random_hex(4));
    fs::create_directories(dir_);
    options_.upstream = "http://127.0.0.1:5999";
    options_.dir = dir_;
    options_.address = boost::asio::ip::make_address_v4("10.213.255.254");
    options_.cap_bytes = 1000;
    options_.check_every = 30s;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A registry that lives until told to die; every call is recorded.
  RegistryControl fake() {
    RegistryControl c;
    c.start = [this]() -> pid_t {
      calls_.push_back("start");
      if (fail_starts_ > 0) {
        --fail_starts_;
        return -1;
      }
      alive_ = true;
      return ++next_pid_;
    };
    c.alive = [this](pid_t) { return alive_; };
    c.stop = [this](pid_t) {
      calls_.push_back("stop");
      alive_ = false;
    };
    c.upstream_answers = [this] { return upstream_up_; };
    c.collect_garbage = [this]() -> std::string {
      calls_.push_back("gc");
      // What garbage-collect does: delete blobs no repository links any more.
      auto scan = scan_storage(options_.storage());
      std::set<std::string> linked;
      for (const auto& [name, digests] : scan.repositories) linked.insert(digests.begin(), digests.end());
      for (const auto& [digest, size] : scan.blob_bytes)
        if (!linked.count(digest)) {
          auto h = digest.substr(7);
          fs::remove_all(Storage(options_.storage()).v2() / "blobs" / "sha256" / h.substr(0, 2) / h);
        }
      return {};
    };
    return c;
  }
  void log_served(const std::string& repo, int status = 200) {
    std::ofstream(options_.log_file(), std::ios::app)
        << R"({"http.request.method":"GET","http.response.status":)" << status
        << R"(,"level":"info","msg":"response completed","vars.name":")" << repo << "\"}\n";
  }

  fs::path dir_;
  ImageCacheOptions options_;
  ManualClock clock_;
  std::vector<std::string> calls_;
  bool alive_ = false;
  bool upstream_up_ = true;
  int fail_starts_ = 0;
  pid_t next_pid_ = 100;
};

TEST(ImageCacheConfig, RegistryConfigIsAPullThroughProxyListeningOnTheCacheAddressOnly) {
  ImageCacheOptions o;
  o.upstream = "https://registry-1.docker.io/";
  o.dir = "/var/lib/offload-runner/image-cache";
  o.address = boost::asio::ip::make_address_v4("10.213.255.254");
  o.port = 5000;
  auto yml = registry_config(o, "s3cret");
  EXPECT_NE(yml.find("remoteurl: \"https://registry-1.docker.io\"\n"), std::string::npos) << yml;
  EXPECT_NE(yml.find("addr: \"10.213.255.254:5000\""), std::string::npos) << yml;
  EXPECT_NE(yml.find("rootdirectory: \"/var/lib/offload-runner/image-cache/storage\""),
            std::string::npos);
  EXPECT_NE(yml.find("formatter: json"), std::string::npos);
  EXPECT_NE(yml.find("delete:\n    enabled: true"), std::string::npos);
  EXPECT_EQ(o.mirror_url(), "http://10.213.255.254:5000");
}

TEST(ImageCacheConfig, UpstreamMustBeABaseUrl) {
  EXPECT_EQ(check_upstream("https://registry-1.docker.io"), "");
  EXPECT_EQ(check_upstream("http://127.0.0.1:5000/"), "");
  EXPECT_NE(check_upstream("registry-1.docker.io"), "");
  EXPECT_NE(check_upstream("ftp://x"), "");
  EXPECT_NE(check_upstream("https://host/v2/"), "");
  EXPECT_NE(check_upstream("https://user:pw@host"), "");
  EXPECT_NE(check_upstream("http://host:port"), "");
  EXPECT_NE(check_upstream("https://"), "");
}

TEST(ImageCacheConfig, OnlySuccessfulResponsesNamingARepositoryCountAsUse) {
  EXPECT_EQ(repository_served(
                R"({"http.response.status":200,"level":"info","msg":"response completed","vars.name":"library/busybox"})"),
            "library/busybox");
  EXPECT_EQ(repository_served(
                R"({"http.response.status":404,"msg":"response completed","vars.name":"library/busybox"})"),
            std::nullopt);
  EXPECT_EQ(repository_served(R"({"http.response.status":200,"msg":"response completed"})"),
            std::nullopt);  // GET /v2/
  EXPECT_EQ(repository_served(
                R"({"msg":"Challenge established with upstream","vars.name":"library/busybox"})"),
            std::nullopt);
  EXPECT_EQ(repository_served("panic: response completed"), std::nullopt);
}

TEST_F(ImageCacheTest, ScanFindsRepositoriesTheirBlobsAndTheTotal) {
  Storage s(options_.storage());
  s.blob('a', 100);
  s.blob('b', 200);
  s.blob('m', 10);
  s.image("library/one", 'm', "ab");
  auto scan = scan_storage(options_.storage());
  ASSERT_EQ(scan.repositories.size(), 1u);
  const auto& digests = scan.repositories.at("library/one");
  EXPECT_EQ(digests, (std::set<std::string>{"sha256:" + hex('a'), "sha256:" + hex('b'),
                                            "sha256:" + hex('m')}));
  EXPECT_EQ(scan.blob_bytes.at("sha256:" + hex('b')), 200u);
  // Blob data plus the link files (71 bytes each: 4 links).
  EXPECT_EQ(scan.total_bytes, 310u + 4 * 71);
}

TEST_F(ImageCacheTest, EvictionTakesTheLeastRecentlyUsedUntilTheRestFitsAndKeepsSharedBlobs) {
  Storage s(options_.storage());
  for (char c : std::string("abcdxyz")) s.blob(c, 400);
  s.image("old", 'x', "a");      // a only here
  s.image("middle", 'y', "bc");  // c shared with new
  s.image("new", 'z', "cd");
  auto scan = scan_storage(options_.storage());
  std::map<std::string, Clock::time_point> used = {
      {"old", clock_.now()}, {"middle", clock_.now() + 1s}, {"new", clock_.now() + 2s}};
  // Fits: nothing goes.
  EXPECT_TRUE(plan_eviction(scan, used, scan.total_bytes).empty());
  // 800 bytes too many: "old" frees a and x (800).
  EXPECT_EQ(plan_eviction(scan, used, scan.total_bytes - 800), std::vector<std::string>{"old"});
  // One byte more: "middle" also goes, freeing b and y but not c (new links it).
  EXPECT_EQ(plan_eviction(scan, used, scan.total_bytes - 801),
            (std::vector<std::string>{"old", "middle"}));
  // A repository never seen served is older than any seen.
  used.erase("new");
  EXPECT_EQ(plan_eviction(scan, used, scan.total_bytes - 1), std::vector<std::string>{"new"});
}

TEST_F(ImageCacheTest, TheRegistryIsRestartedWithBackoffWhenItDies) {
  ImageCache cache(options_, clock_, fake());
  cache.tick();
  EXPECT_EQ(calls_, std::vector<std::string>{"start"});
  EXPECT_TRUE(cache.status().running);
  alive_ = false;  // it died
  cache.tick();
  EXPECT_FALSE(cache.status().running);
  EXPECT_NE(cache.status().problem.find("exited"), std::string::npos);
  cache.tick();
  EXPECT_EQ(calls_.size(), 1u) << "restarted before its backoff passed";
  clock_.advance(1s);
  cache.tick();
  EXPECT_EQ(calls_.size(), 2u);
  EXPECT_TRUE(cache.status().running);
  EXPECT_EQ(cache.status().problem, "");
  // It dies again at once: the wait doubles.
  alive_ = false;
  cache.tick();
  clock_.advance(1s);
  cache.tick();
  EXPECT_EQ(calls_.size(), 2u);
  clock_.advance(1s);
  cache.tick();
  EXPECT_EQ(calls_.size(), 3u);
  // A start that fails also waits (4 s now).
  alive_ = false;
  fail_starts_ = 1;
  cache.tick();
  clock_.advance(4s);
  cache.tick();  // fails
  EXPECT_EQ(calls_.size(), 4u);
  clock_.advance(7s);
  cache.tick();
  EXPECT_EQ(calls_.size(), 4u);
  clock_.advance(1s);
  cache.tick();
  EXPECT_EQ(calls_.size(), 5u);
  EXPECT_TRUE(cache.status().running);
  cache.stop();
  EXPECT_EQ(calls_.back(), "stop");
}

TEST_F(ImageCacheTest, OverTheCapTheLeastRecentlyServedRepositoryIsEvicted) {
  Storage s(options_.storage());
  options_.cap_bytes = 3000;  // two images need ~4000
  ImageCache cache(options_, clock_, fake());
  cache.tick();  // measured: empty
  for (char c : std::string("abxy")) s.blob(c, 1000);
  s.image("library/first", 'x', "a");
  s.image("library/second", 'y', "b");
  // "second" was served first, then "first": "second" is the least recently used.
  log_served("library/second");
  clock_.advance(1s);
  cache.tick();
  log_served("library/first");
  log_served("library/second", 404);  // a miss is no use
  clock_.advance(1s);
  cache.tick();
  EXPECT_EQ(calls_, std::vector<std::string>{"start"});
  clock_.advance(28s);
  cache.tick();
  // Registry stopped, "second" removed, garbage collected, registry back.
  EXPECT_EQ(calls_, (std::vector<std::string>{"start", "stop", "gc", "start"}));
  EXPECT_TRUE(s.has_repo("library/first"));
  EXPECT_FALSE(s.has_repo("library/second"));
  EXPECT_FALSE(fs::exists(s.v2() / "blobs" / "sha256" / "bb" / hex('b')));
  EXPECT_TRUE(fs::exists(s.v2() / "blobs" / "sha256" / "aa" / hex('a')));
  EXPECT_LE(cache.status().used_bytes, 3000u);
  EXPECT_TRUE(cache.status().running);
}

TEST_F(ImageCacheTest, TheCapIsCheckedOnTheTimerAndEvictionWaitsForTheUpstream) {
  Storage s(options_.storage());
  ImageCache cache(options_, clock_, fake());
  cache.tick();  // measured: empty
  EXPECT_EQ(calls_, std::vector<std::string>{"start"});
  for (char c : std::string("abxy")) s.blob(c, 1000);
  s.image("library/first", 'x', "a");
  s.image("library/second", 'y', "b");
  log_served("library/first");
  log_served("library/second");
  clock_.advance(29s);
  cache.tick();
  EXPECT_EQ(calls_.size(), 1u) << "measured before check_every";
  EXPECT_EQ(cache.status().used_bytes, 0u);
  upstream_up_ = false;
  clock_.advance(1s);
  cache.tick();
  EXPECT_GT(cache.status().used_bytes, 1000u);
  EXPECT_EQ(calls_.size(), 1u) << "stopped the registry while its upstream is down";
  EXPECT_NE(cache.status().problem.find("waits until the upstream"), std::string::npos);
  EXPECT_TRUE(s.has_repo("library/first"));
  upstream_up_ = true;
  clock_.advance(30s);
  cache.tick();
  EXPECT_EQ(calls_, (std::vector<std::string>{"start", "stop", "gc", "start"}));
  EXPECT_FALSE(s.has_repo("library/first"));
  EXPECT_FALSE(s.has_repo("library/second"));
  EXPECT_EQ(cache.status().problem, "");
}

TEST_F(ImageCacheTest, StatusSaysWhyTheRegistryKeepsDyingWhenTheUpstreamIsDown) {
  ImageCache cache(options_, clock_, fake());
  // Before the first round: what the operator configured, not running.
  EXPECT_EQ(cache.status().upstream, "http://127.0.0.1:5999");
  EXPECT_EQ(cache.status().cap_bytes, 1000u);
  EXPECT_FALSE(cache.status().running);
  cache.tick();
  upstream_up_ = false;
  alive_ = false;  // distribution 2.8 exits when its upstream does not answer at start-up
  cache.tick();
  EXPECT_NE(cache.status().problem.find("cannot start while the upstream http://127.0.0.1:5999 "
                                        "does not answer"),
            std::string::npos)
      << cache.status().problem;
}

}  // namespace
}  // namespace offload::runner
