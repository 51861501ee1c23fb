#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "offload/sync/scanner.h"
#include "sync_test_util.h"

using namespace offload::sync;
using offload::sync::test_util::TempDir;
using offload::sync::test_util::write_file;
namespace fs = std::filesystem;

namespace {

const std::string* skip_reason(const ScanResult& r, const std::string& path) {
  for (const auto& s : r.skipped)
    if (s.path == path) return &s.reason;
  return nullptr;
}

// Binds a unix socket at `path`; the file stays after the descriptor is closed.
void make_socket(const fs::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.string().size(), sizeof addr.sun_path);
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ::close(fd);
}

}  // namespace

TEST(Scanner, RecordsFilesDirectoriesAndSymlinksWithoutFollowing) {
  TempDir outside;
  write_file(outside / "secret", "s");
  TempDir t;
  fs::create_directory(t / "sub");
  ::chmod((t / "sub").c_str(), 0750);
  write_file(t / "sub/f.txt", "hello");
  ::chmod((t / "sub/f.txt").c_str(), 04751);
  test_util::set_mtime_ns(t / "sub/f.txt", 1700000000123456789);
  fs::create_symlink(outside.path(), t / "out-link");
  fs::create_symlink("sub", t / "dir-link");
  fs::create_symlink("../nowhere/dangling", t / "dangling");
  ::chmod(t.path().c_str(), 0711);

  auto r = scan_tree(t.path(), {});
  std::vector<std::string> paths;
  for (const auto& [p, e] : r.entries) paths.push_back(p);
  EXPECT_EQ(paths, (std::vector<std::string>{"", "dangling", "dir-link", "out-link", "sub",
                                             "sub/f.txt"}));
  EXPECT_TRUE(r.skipped.empty());

  const Entry& root = r.entries.at("");
  EXPECT_EQ(root.type, EntryType::directory);
  EXPECT_EQ(root.mode, 0711u);

  const Entry& f = r.entries.at("sub/f.txt");
  EXPECT_EQ(f.path, "sub/f.txt");
  EXPECT_EQ(f.type, EntryType::file);
  EXPECT_EQ(f.size, 5u);
  EXPECT_EQ(f.mode, 0751u);  // the file is 04751: set-id bits are never reported (never synced)
  EXPECT_EQ(f.mtime_ns, 1700000000123456789);

  EXPECT_EQ(r.entries.at("sub").type, EntryType::directory);
  EXPECT_EQ(r.entries.at("sub").mode, 0750u);
  EXPECT_EQ(r.entries.at("sub").size, 0u);

  EXPECT_EQ(r.entries.at("out-link").type, EntryType::symlink);
  EXPECT_EQ(r.entries.at("out-link").link_target, outside.path().string());
  EXPECT_EQ(r.entries.at("dir-link").link_target, "sub");
  EXPECT_EQ(r.entries.at("dangling").link_target, "../nowhere/dangling");
  EXPECT_EQ(r.entries.count("out-link/secret"), 0u);
  EXPECT_EQ(r.entries.count("dir-link/f.txt"), 0u);
}

TEST(Scanner, LongSymlinkTargetIsReadWhole) {
  TempDir t;
  std::string target(3000, 'x');
  fs::create_symlink(target, t / "long");
  EXPECT_EQ(scan_tree(t.path(), {}).entries.at("long").link_target, target);
}

TEST(Scanner, SpecialFilesAreSkippedWithAReason) {
  TempDir t;
  ASSERT_EQ(::mkfifo((t / "fifo").c_str(), 0644), 0);
  make_socket(t / "sock");
  bool have_device = ::mknod((t / "null").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0;
  write_file(t / "plain", "x");

  auto r = scan_tree(t.path(), {});
  EXPECT_EQ(r.entries.count("fifo"), 0u);
  EXPECT_EQ(r.entries.count("sock"), 0u);
  EXPECT_EQ(r.entries.count("null"), 0u);
  EXPECT_EQ(r.entries.count("plain"), 1u);
  ASSERT_NE(skip_reason(r, "fifo"), nullptr);
  EXPECT_EQ(*skip_reason(r, "fifo"), "fifo");
  ASSERT_NE(skip_reason(r, "sock"), nullptr);
  EXPECT_EQ(*skip_reason(r, "sock"), "socket");
  if (have_device) {
    ASSERT_NE(skip_reason(r, "null"), nullptr);
    EXPECT_EQ(*skip_reason(r, "null"), "device");
  }
}

TEST(Scanner, ExcludedAndTempPathsAreLeftOut) {
  TempDir t;
  fs::create_directories(t / "build/obj");
  write_file(t / "build/obj/a.o", "o");
  write_file(t / "main.c", "c");
  write_file(t / "debug.log", "l");
  write_file(t / std::string(".offload-sync-1234"), "half");
  fs::create_directory(t / "src");
  write_file(t / "src/.offload-sync-x", "half");
  write_file(t / "src/x.c", "c");

  auto r = scan_tree(t.path(), IgnoreRules::parse("build\n*.log\n"));
  std::vector<std::string> paths;
  for (const auto& [p, e] : r.entries) paths.push_back(p);
  EXPECT_EQ(paths, (std::vector<std::string>{"", "main.c", "src", "src/x.c"}));
  EXPECT_TRUE(r.skipped.empty());
}

TEST(Scanner, ReincludedPathBelowExcludedDirectoryKeepsItsParent) {
  TempDir t;
  fs::create_directories(t / "docs/deep");
  write_file(t / "docs/other.md", "o");
  write_file(t / "docs/deep/keep.md", "k");
  write_file(t / "docs/deep/drop.md", "d");

  auto r = scan_tree(t.path(), IgnoreRules::parse("docs\n!docs/deep/keep.md\n"));
  std::vector<std::string> paths;
  for (const auto& [p, e] : r.entries) paths.push_back(p);
  // The excluded directories are recorded (only as directories) so the re-included file has
  // a parent on the other side.
  EXPECT_EQ(paths, (std::vector<std::string>{"", "docs", "docs/deep", "docs/deep/keep.md"}));
}

TEST(Scanner, MissingRootThrows) {
  TempDir t;
  EXPECT_THROW(scan_tree(t / "absent", {}), std::system_error);
  write_file(t / "file", "x");
  EXPECT_THROW(scan_tree(t / "file", {}), std::system_error);
}

TEST(Scanner, StatEntry) {
  TempDir t;
  fs::create_directory(t / "d");
  write_file(t / "d/f", "abc");
  test_util::set_mtime_ns(t / "d/f", 1600000000000000001);
  fs::create_symlink("d", t / "l");
  ASSERT_EQ(::mkfifo((t / "fifo").c_str(), 0644), 0);
  write_file(t / "x.log", "l");
  write_file(t / ".offload-sync-zz", "t");
  auto rules = IgnoreRules::parse("*.log\n");

  auto f = stat_entry(t.path(), "d/f", rules);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->path, "d/f");
  EXPECT_EQ(f->size, 3u);
  EXPECT_EQ(f->mtime_ns, 1600000000000000001);

  auto l = stat_entry(t.path(), "l", rules);
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->type, EntryType::symlink);
  EXPECT_EQ(l->link_target, "d");

  auto root = stat_entry(t.path(), "", rules);
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(root->type, EntryType::directory);

  Skipped s;
  EXPECT_FALSE(stat_entry(t.path(), "absent", rules, &s).has_value());
  EXPECT_FALSE(stat_entry(t.path(), "d/absent/deeper", rules, &s).has_value());
  EXPECT_FALSE(stat_entry(t.path(), ".offload-sync-zz", rules, &s).has_value());

  s = {};
  EXPECT_FALSE(stat_entry(t.path(), "fifo", rules, &s).has_value());
  EXPECT_EQ(s.path, "fifo");
  EXPECT_EQ(s.reason, "fifo");

  s = {};
  EXPECT_FALSE(stat_entry(t.path(), "x.log", rules, &s).has_value());
  EXPECT_EQ(s.reason, "excluded");

  // Never through a symlink, never outside.
  s = {};
  EXPECT_FALSE(stat_entry(t.path(), "l/f", rules, &s).has_value());
  EXPECT_FALSE(s.reason.empty());
  s = {};
  EXPECT_FALSE(stat_entry(t.path(), "../" + t.path().filename().string(), rules, &s).has_value());
  EXPECT_EQ(s.reason, "invalid path");
}
