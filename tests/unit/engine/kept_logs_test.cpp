#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "offload/common/token.h"
#include "offload/engine/kept_logs.h"

namespace offload::engine {
namespace {
namespace fs = std::filesystem;

class KeptLogsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("offload-kept-" + random_hex(4));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  fs::path dir_;
};

TEST_F(KeptLogsTest, KeepsTheTailOfTheLogPrivately) {
  std::ofstream(dir_ / "dockerd.log") << "line one\nline two\nfailed to start daemon: boom\n";
  auto kept = keep_dockerd_log(dir_ / "dockerd.log", dir_ / "failed", "abcdef0123", 20, 30);
  EXPECT_EQ(kept, dir_ / "failed" / "abcdef0123.dockerd.log");
  // The last 30 bytes, from the first whole line in them.
  EXPECT_EQ(read(kept),
            "[... the first 18 bytes were not kept ...]\nfailed to start daemon: boom\n");
  EXPECT_EQ(fs::status(kept).permissions() & fs::perms::all, fs::perms(0600));
  EXPECT_EQ(fs::status(dir_ / "failed").permissions() & fs::perms::all, fs::perms(0700));
}

TEST_F(KeptLogsTest, KeepsOnlyTheNewestN) {
  std::ofstream(dir_ / "dockerd.log") << "x\n";
  for (int i = 0; i < 5; ++i) {
    auto kept = keep_dockerd_log(dir_ / "dockerd.log", dir_ / "failed", "s" + std::to_string(i), 3);
    // Distinct modification times in the past, oldest first (no sleep: set them).
    fs::last_write_time(kept, fs::file_time_type::clock::now() - std::chrono::seconds(10 - i));
  }
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir_ / "failed"))
    left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"s2.dockerd.log", "s3.dockerd.log", "s4.dockerd.log"}));
}

TEST_F(KeptLogsTest, NothingToKeepWithoutALog) {
  EXPECT_EQ(keep_dockerd_log(dir_ / "missing.log", dir_ / "failed", "s"), fs::path());
  EXPECT_FALSE(fs::exists(dir_ / "failed"));
}

}  // namespace
}  // namespace offload::engine
