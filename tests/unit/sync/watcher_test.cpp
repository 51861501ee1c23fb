#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <functional>

#include "offload/sync/watcher.h"
#include "sync_test_util.h"

using namespace offload::sync;
using offload::sync::test_util::TempDir;
using offload::sync::test_util::write_file;
namespace fs = std::filesystem;

namespace {

// Everything the watcher reports until `done` holds, or a deadline passes (events normally
// arrive within microseconds; the deadline only bounds a failing test).
WatchBatch collect(Watcher& w, const std::function<bool(const WatchBatch&)>& done,
                   std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  WatchBatch all;
  auto until = std::chrono::steady_clock::now() + deadline;
  while (!done(all)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{w.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    auto b = w.drain();
    all.dirty.insert(b.dirty.begin(), b.dirty.end());
    all.moves.insert(all.moves.end(), b.moves.begin(), b.moves.end());
    all.rescan = all.rescan || b.rescan;
  }
  return all;
}

std::function<bool(const WatchBatch&)> dirty_has(std::vector<std::string> paths) {
  return [paths](const WatchBatch& b) {
    for (const auto& p : paths)
      if (!b.dirty.count(p)) return false;
    return true;
  };
}

using Move = std::pair<std::string, std::string>;

std::string describe(const WatchBatch& b) {
  std::string s = "dirty:";
  for (const auto& d : b.dirty) s += " " + d;
  s += " moves:";
  for (const auto& [f, t] : b.moves) s += " " + f + "->" + t;
  return s;
}

}  // namespace

TEST(Watcher, ReportsCreateModifyDelete) {
  TempDir t;
  write_file(t / "existing", "1");
  Watcher w(t.path(), {});
  ASSERT_FALSE(w.error()) << w.error().message();

  write_file(t / "new", "x");
  auto b = collect(w, dirty_has({"new"}));
  EXPECT_TRUE(b.dirty.count("new")) << describe(b);
  EXPECT_FALSE(b.rescan);

  write_file(t / "existing", "2");
  b = collect(w, dirty_has({"existing"}));
  EXPECT_TRUE(b.dirty.count("existing")) << describe(b);

  fs::remove(t / "existing");
  b = collect(w, dirty_has({"existing"}));
  EXPECT_TRUE(b.dirty.count("existing")) << describe(b);

  ::chmod((t / "new").c_str(), 0600);
  b = collect(w, dirty_has({"new"}));
  EXPECT_TRUE(b.dirty.count("new")) << describe(b);
}

TEST(Watcher, RenameWithinTreeIsAMove) {
  TempDir t;
  write_file(t / "a", "x");
  fs::create_directory(t / "sub");
  Watcher w(t.path(), {});
  ASSERT_FALSE(w.error());
  fs::rename(t / "a", t / "sub/b");
  auto b = collect(w, [](const WatchBatch& b) { return !b.moves.empty(); });
  ASSERT_EQ(b.moves.size(), 1u) << describe(b);
  EXPECT_EQ(b.moves[0], Move("a", "sub/b"));
}

TEST(Watcher, NewDirectoryWithFilesIsWatchedAndReported) {
  TempDir t;
  Watcher w(t.path(), {});
  ASSERT_FALSE(w.error());
  // Created faster than the watcher can add a watch on "d": its contents come from the listing.
  fs::create_directories(t / "d/e");
  write_file(t / "d/f", "1");
  write_file(t / "d/e/g", "2");
  auto b = collect(w, dirty_has({"d", "d/f", "d/e", "d/e/g"}));
  EXPECT_TRUE(dirty_has({"d", "d/f", "d/e", "d/e/g"})(b)) << describe(b);

  // And later changes in there are seen.
  write_file(t / "d/e/h", "3");
  b = collect(w, dirty_has({"d/e/h"}));
  EXPECT_TRUE(b.dirty.count("d/e/h")) << describe(b);
}

TEST(Watcher, DirectoryMovedWithinTreeKeepsCorrectPaths) {
  TempDir t;
  fs::create_directories(t / "old/inner");
  write_file(t / "old/inner/f", "1");
  Watcher w(t.path(), {});
  ASSERT_FALSE(w.error());

  fs::rename(t / "old", t / "new");
  auto b = collect(w, [](const WatchBatch& b) { return !b.moves.empty(); });
  ASSERT_EQ(b.moves.size(), 1u) << describe(b);
  EXPECT_EQ(b.moves[0], Move("old", "new"));

  write_file(t / "new/inner/g", "2");
  b = collect(w, dirty_has({"new/inner/g"}));
  EXPECT_TRUE(b.dirty.count("new/inner/g")) << describe(b);
  for (const auto& d : b.dirty) EXPECT_FALSE(d.starts_with("old")) << d;
}

TEST(Watcher, ChangesBeforeADirectoryMoveNameTheNewPlace) {
  TempDir t;
  fs::create_directory(t / "old");
  Watcher w(t.path(), {});
  ASSERT_FALSE(w.error());
  // Both events wait in the queue together: the file's path must follow the move.
  write_file(t / "old/f", "1");
  fs::rename(t / "old", t / "new");
  auto b = collect(w, [](const WatchBatch& b) { return !b.moves.empty() && b.dirty.count("new/f"); });
  EXPECT_TRUE(b.dirty.count("new/f")) << describe(b);
  EXPECT_FALSE(b.dirty.count("old/f")) << describe(b);
}

TEST(Watcher, DirectoryMovedOutIsDirtyAndNoLongerWatched) {
  TempDir outside;
  TempDir t;
  fs::create_directories(t / "d/sub");
  Watcher w(t.path(), {});
  ASSERT_FALSE(w.error());
  fs::rename(t / "d", outside / "d");
  auto b = collect(w, dirty_has({"d"}));
  EXPECT_TRUE(b.dirty.count("d")) << describe(b);
  EXPECT_TRUE(b.moves.empty()) << describe(b);

  // Changes out there are not ours any more; a sentinel inside shows the queue was drained.
  write_file(outside / "d/sub/x", "1");
  write_file(t / "sentinel", "s");
  b = collect(w, dirty_has({"sentinel"}));
  EXPECT_TRUE(b.dirty.count("sentinel"));
  EXPECT_EQ(b.dirty.size(), 1u) << describe(b);
}

TEST(Watcher, DirectoryMovedInReportsItsContentsAndIsWatched) {
  TempDir outside;
  fs::create_directories(outside / "in/sub");
  write_file(outside / "in/a", "a");
  write_file(outside / "in/sub/b", "b");
  TempDir t;
  Watcher w(t.path(), {});
  ASSERT_FALSE(w.error());
  fs::rename(outside / "in", t / "in");
  auto b = collect(w, dirty_has({"in", "in/a", "in/sub", "in/sub/b"}));
  EXPECT_TRUE(dirty_has({"in", "in/a", "in/sub", "in/sub/b"})(b)) << describe(b);
  EXPECT_TRUE(b.moves.empty());

  write_file(t / "in/sub/c", "c");
  b = collect(w, dirty_has({"in/sub/c"}));
  EXPECT_TRUE(b.dirty.count("in/sub/c")) << describe(b);
}

TEST(Watcher, TempAndExcludedPathsAreLeftOut) {
  TempDir t;
  fs::create_directory(t / "build");
  Watcher w(t.path(), IgnoreRules::parse("build\n*.log\n"));
  ASSERT_FALSE(w.error());
  write_file(t / ".offload-sync-abc", "half");
  write_file(t / "build/out.o", "o");
  write_file(t / "x.log", "l");
  fs::create_directory(t / "build/deeper");
  // The synchroniser's own atomic write: temp file renamed over the target shows as the target.
  write_file(t / ".offload-sync-def", "whole");
  fs::rename(t / ".offload-sync-def", t / "target");
  write_file(t / "sentinel", "s");
  auto b = collect(w, dirty_has({"target", "sentinel"}));
  EXPECT_EQ(b.dirty, (std::set<std::string>{"sentinel", "target"})) << describe(b);
  EXPECT_TRUE(b.moves.empty()) << describe(b);
}

TEST(Watcher, OnlyNameReportsJustThatName) {
  TempDir t;
  write_file(t / "app.conf", "1");
  Watcher w(t.path(), {}, "app.conf");
  ASSERT_FALSE(w.error());
  write_file(t / "other", "x");
  fs::create_directory(t / "dir");
  // Editors save by writing a new file and renaming it over the old one.
  write_file(t / "app.conf.swp", "2");
  fs::rename(t / "app.conf.swp", t / "app.conf");
  auto b = collect(w, dirty_has({"app.conf"}));
  EXPECT_EQ(b.dirty, (std::set<std::string>{"app.conf"})) << describe(b);
  EXPECT_TRUE(b.moves.empty());

  // Moving it away is reported as that name too (it is gone).
  fs::rename(t / "app.conf", t / "app.conf.bak");
  b = collect(w, dirty_has({"app.conf"}));
  EXPECT_EQ(b.dirty, (std::set<std::string>{"app.conf"})) << describe(b);
}

TEST(Watcher, DeletedDirectoryAndErrors) {
  TempDir t;
  fs::create_directories(t / "d/e");
  write_file(t / "d/e/f", "1");
  Watcher w(t.path(), {});
  ASSERT_FALSE(w.error());
  fs::remove_all(t / "d");
  auto b = collect(w, dirty_has({"d", "d/e", "d/e/f"}));
  EXPECT_TRUE(dirty_has({"d", "d/e", "d/e/f"})(b)) << describe(b);
  // A new directory under the old name is watched afresh.
  fs::create_directory(t / "d");
  b = collect(w, dirty_has({"d"}));
  write_file(t / "d/new", "n");
  b = collect(w, dirty_has({"d/new"}));
  EXPECT_TRUE(b.dirty.count("d/new")) << describe(b);

  Watcher missing(t / "absent", {});
  EXPECT_TRUE(missing.error());
}

TEST(Watcher, RootRemovedAsksForRescan) {
  TempDir base;
  fs::create_directory(base / "root");
  Watcher w(base / "root", {});
  ASSERT_FALSE(w.error());
  fs::rename(base / "root", base / "elsewhere");
  auto b = collect(w, [](const WatchBatch& b) { return b.rescan; });
  EXPECT_TRUE(b.rescan);
}
