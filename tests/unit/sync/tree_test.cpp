#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "offload/sync/tree.h"
#include "sync_test_util.h"

using namespace offload::sync;
using offload::sync::test_util::lstat_of;
using offload::sync::test_util::read_file;
using offload::sync::test_util::TempDir;
using offload::sync::test_util::write_file;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<Tree> open_tree(const fs::path& root, Tree::Options options = {}) {
  std::unique_ptr<Tree> tree;
  auto ec = Tree::open(root, options, tree);
  EXPECT_FALSE(ec) << ec.message();
  return tree;
}

std::error_code write(Tree& tree, const std::string& path, const std::string& content,
                      std::uint32_t mode = 0644, std::int64_t mtime_ns = 1700000000000000000) {
  FileWriter w;
  if (auto ec = tree.begin_file(path, w)) return ec;
  // In two pieces, as the wire delivers it.
  if (auto ec = w.append(content.substr(0, content.size() / 2))) return ec;
  if (auto ec = w.append(content.substr(content.size() / 2))) return ec;
  return w.commit(mode, mtime_ns);
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool has_temp_file(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (is_temp_name(e.path().filename().string())) return true;
  return false;
}

std::int64_t mtime_of(const fs::path& p) {
  auto st = lstat_of(p);
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

}  // namespace

TEST(Tree, OpenFailsForMissingRoot) {
  TempDir t;
  std::unique_ptr<Tree> tree;
  EXPECT_TRUE(Tree::open(t / "absent", {}, tree));
  EXPECT_EQ(tree, nullptr);
}

TEST(Tree, WritesFileAtomicallyWithModeAndMtime) {
  TempDir t;
  auto tree = open_tree(t.path());
  write_file(t / "f", "old content");
  ino_t old_inode = lstat_of(t / "f").st_ino;

  FileWriter w;
  ASSERT_FALSE(tree->begin_file("f", w));
  ASSERT_FALSE(w.append("new "));
  ASSERT_FALSE(w.append("data"));
  // Until the commit, the old file is whole and the data waits in a temp file next to it.
  EXPECT_EQ(read_file(t / "f"), "old content");
  EXPECT_TRUE(has_temp_file(t.path()));
  ASSERT_FALSE(w.commit(0751, 1700000000123456789));
  EXPECT_FALSE(has_temp_file(t.path()));

  EXPECT_EQ(read_file(t / "f"), "new data");
  auto st = lstat_of(t / "f");
  EXPECT_EQ(st.st_mode & 07777, 0751u);
  EXPECT_EQ(mtime_of(t / "f"), 1700000000123456789);
  EXPECT_NE(st.st_ino, old_inode);  // replaced by rename
  EXPECT_TRUE(w.commit(0644, 0));   // only once
  EXPECT_TRUE(w.append("x"));
}

TEST(Tree, UncommittedWriterLeavesNothing) {
  TempDir t;
  auto tree = open_tree(t.path());
  write_file(t / "f", "keep");
  {
    FileWriter w;
    ASSERT_FALSE(tree->begin_file("f", w));
    ASSERT_FALSE(w.append("partial"));
    FileWriter moved = std::move(w);  // ownership moves with the writer
  }
  EXPECT_EQ(names_in(t.path()), (std::vector<std::string>{"f"}));
  EXPECT_EQ(read_file(t / "f"), "keep");
}

TEST(Tree, InPlaceRewriteKeepsTheInode) {
  TempDir t;
  auto tree = open_tree(t.path(), {.in_place_files = true});
  write_file(t / "f", "a much longer old content");
  ino_t inode = lstat_of(t / "f").st_ino;
  ASSERT_FALSE(write(*tree, "f", "short", 0600, 1600000000000000007));
  EXPECT_EQ(read_file(t / "f"), "short");
  auto st = lstat_of(t / "f");
  EXPECT_EQ(st.st_ino, inode);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(mtime_of(t / "f"), 1600000000000000007);
  EXPECT_FALSE(has_temp_file(t.path()));

  // Absent target: simply created.
  ASSERT_FALSE(write(*tree, "new", "n"));
  EXPECT_EQ(read_file(t / "new"), "n");
}

TEST(Tree, InPlaceNeverWritesThroughSymlinkOrHardLink) {
  TempDir outside;
  write_file(outside / "victim", "original");
  write_file(outside / "linked", "original");
  TempDir t;
  auto tree = open_tree(t.path(), {.in_place_files = true});
  fs::create_symlink(outside / "victim", t / "sym");
  fs::create_hard_link(outside / "linked", t / "hard");

  ASSERT_FALSE(write(*tree, "sym", "evil"));
  ASSERT_FALSE(write(*tree, "hard", "evil"));
  EXPECT_EQ(read_file(outside / "victim"), "original");
  EXPECT_EQ(read_file(outside / "linked"), "original");
  EXPECT_FALSE(fs::is_symlink(t / "sym"));
  EXPECT_EQ(read_file(t / "sym"), "evil");
  EXPECT_EQ(read_file(t / "hard"), "evil");
}

TEST(Tree, FileReplacesDirectoryAndSymlink) {
  TempDir outside;
  write_file(outside / "victim", "original");
  TempDir t;
  auto tree = open_tree(t.path());
  fs::create_directories(t / "d/sub");
  write_file(t / "d/sub/x", "x");
  fs::create_symlink(outside / "victim", t / "s");

  ASSERT_FALSE(write(*tree, "d", "now a file"));
  ASSERT_FALSE(write(*tree, "s", "now a file too"));
  EXPECT_EQ(read_file(t / "d"), "now a file");
  EXPECT_FALSE(fs::is_symlink(t / "s"));
  EXPECT_EQ(read_file(t / "s"), "now a file too");
  EXPECT_EQ(read_file(outside / "victim"), "original");
}

TEST(Tree, ParentMustExist) {
  TempDir t;
  auto tree = open_tree(t.path());
  FileWriter w;
  EXPECT_EQ(tree->begin_file("no/such/f", w), std::errc::no_such_file_or_directory);
}

TEST(Tree, OwnerIsAppliedToEverythingCreated) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  TempDir t;
  auto tree = open_tree(t.path(), {.uid = 1234, .gid = 2345});
  ASSERT_FALSE(tree->make_directory("d", 0755));
  ASSERT_FALSE(write(*tree, "d/f", "x", 04755));
  ASSERT_FALSE(tree->make_symlink("d/l", "f", 1));
  for (const char* p : {"d", "d/f", "d/l"}) {
    auto st = lstat_of(t / p);
    EXPECT_EQ(st.st_uid, 1234u) << p;
    EXPECT_EQ(st.st_gid, 2345u) << p;
  }
  // Set-id bits are never written, whoever owns the file.
  EXPECT_EQ(lstat_of(t / "d/f").st_mode & 07777, 0755u);

  auto in_place = open_tree(t.path(), {.in_place_files = true, .uid = 4321, .gid = 5432});
  ASSERT_FALSE(write(*in_place, "d/f", "y"));
  EXPECT_EQ(lstat_of(t / "d/f").st_uid, 4321u);
}

TEST(Tree, MakeDirectory) {
  TempDir outside;
  ::chmod(outside.path().c_str(), 0700);
  TempDir t;
  auto tree = open_tree(t.path());
  ASSERT_FALSE(tree->make_directory("d", 0705));
  EXPECT_TRUE(fs::is_directory(t / "d"));
  EXPECT_EQ(lstat_of(t / "d").st_mode & 07777, 0705u);  // umask does not apply
  write_file(t / "d/keep", "k");
  ASSERT_FALSE(tree->make_directory("d", 0750));  // exists: mode fixed, content kept
  EXPECT_EQ(lstat_of(t / "d").st_mode & 07777, 0750u);
  EXPECT_EQ(read_file(t / "d/keep"), "k");

  write_file(t / "f", "in the way");
  ASSERT_FALSE(tree->make_directory("f", 0755));
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(t / "f")));

  fs::create_symlink(outside.path(), t / "s");
  ASSERT_FALSE(tree->make_directory("s", 0777));
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(t / "s")));
  EXPECT_EQ(lstat_of(outside.path()).st_mode & 07777, 0700u);

  ASSERT_FALSE(tree->make_directory("", 0711));
  EXPECT_EQ(lstat_of(t.path()).st_mode & 07777, 0711u);
  EXPECT_EQ(tree->make_directory("a/b", 0755), std::errc::no_such_file_or_directory);
}

TEST(Tree, MakeSymlinkNeverFollows) {
  TempDir outside;
  write_file(outside / "victim", "original");
  TempDir t;
  auto tree = open_tree(t.path());
  ASSERT_FALSE(tree->make_symlink("l", (outside / "victim").string(), 1500000000000000003));
  EXPECT_EQ(fs::read_symlink(t / "l"), outside / "victim");
  EXPECT_EQ(mtime_of(t / "l"), 1500000000000000003);  // the link's own mtime
  EXPECT_NE(mtime_of(outside / "victim"), 1500000000000000003);

  // Replacing a symlink replaces the link, not what it points to.
  ASSERT_FALSE(tree->make_symlink("l", "../elsewhere", 1));
  EXPECT_EQ(fs::read_symlink(t / "l"), "../elsewhere");
  EXPECT_EQ(read_file(outside / "victim"), "original");

  write_file(t / "f", "x");
  ASSERT_FALSE(tree->make_symlink("f", "target", 1));
  EXPECT_TRUE(fs::is_symlink(t / "f"));
  fs::create_directories(t / "d/sub");
  ASSERT_FALSE(tree->make_symlink("d", "target", 1));
  EXPECT_TRUE(fs::is_symlink(t / "d"));
  EXPECT_FALSE(has_temp_file(t.path()));
  EXPECT_EQ(tree->make_symlink("e", "", 1), std::errc::invalid_argument);
}

TEST(Tree, StatReportsEntries) {
  TempDir t;
  auto tree = open_tree(t.path());
  fs::create_directory(t / "d");
  write_file(t / "d/f", "hello");
  test_util::set_mtime_ns(t / "d/f", 1400000000000000009);
  fs::create_symlink("f", t / "d/l");
  ASSERT_EQ(::mkfifo((t / "fifo").c_str(), 0644), 0);

  std::error_code ec;
  auto f = tree->stat("d/f", ec);
  ASSERT_TRUE(f) << ec.message();
  EXPECT_EQ(f->path, "d/f");
  EXPECT_EQ(f->type, EntryType::file);
  EXPECT_EQ(f->size, 5u);
  EXPECT_EQ(f->mtime_ns, 1400000000000000009);
  auto l = tree->stat("d/l", ec);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->type, EntryType::symlink);
  EXPECT_EQ(l->link_target, "f");
  auto root = tree->stat("", ec);
  ASSERT_TRUE(root);
  EXPECT_EQ(root->type, EntryType::directory);

  EXPECT_FALSE(tree->stat("absent", ec));
  EXPECT_FALSE(ec);
  EXPECT_FALSE(tree->stat("d/f/below-a-file", ec));
  EXPECT_FALSE(ec);
  EXPECT_FALSE(tree->stat("fifo", ec));
  EXPECT_TRUE(ec);
}

TEST(Tree, ReadsFilesInChunks) {
  TempDir t;
  auto tree = open_tree(t.path());
  write_file(t / "f", "0123456789");
  ::chmod((t / "f").c_str(), 0640);
  FileReader r;
  ASSERT_FALSE(tree->open_file("f", r));
  EXPECT_EQ(r.entry().size, 10u);
  EXPECT_EQ(r.entry().mode, 0640u);
  EXPECT_EQ(r.entry().type, EntryType::file);
  std::string all, chunk;
  for (;;) {
    ASSERT_FALSE(r.read(chunk, 4));
    if (chunk.empty()) break;
    EXPECT_LE(chunk.size(), 4u);
    all += chunk;
  }
  EXPECT_EQ(all, "0123456789");

  fs::create_directory(t / "d");
  EXPECT_TRUE(tree->open_file("d", r));
  // A fifo is refused without blocking on it.
  ASSERT_EQ(::mkfifo((t / "fifo").c_str(), 0644), 0);
  EXPECT_TRUE(tree->open_file("fifo", r));
}

TEST(Tree, RemoveIsRecursiveAndNeverFollows) {
  TempDir outside;
  write_file(outside / "precious", "p");
  TempDir t;
  auto tree = open_tree(t.path());
  fs::create_directories(t / "d/a/b");
  write_file(t / "d/a/b/f", "x");
  write_file(t / "d/g", "y");
  fs::create_symlink(outside.path(), t / "d/a/link-to-outside");
  ::chmod((t / "d/a/b").c_str(), 0500);  // read-only directories are emptied too
  ::chmod((t / "d/a").c_str(), 0);

  ASSERT_FALSE(tree->remove("d"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(t / "d")));
  EXPECT_EQ(read_file(outside / "precious"), "p");

  fs::create_symlink(outside.path(), t / "l");
  ASSERT_FALSE(tree->remove("l"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(t / "l")));
  EXPECT_TRUE(fs::exists(outside / "precious"));

  write_file(t / "f", "x");
  ASSERT_FALSE(tree->remove("f"));
  EXPECT_FALSE(fs::exists(t / "f"));
  EXPECT_FALSE(tree->remove("absent"));
  EXPECT_FALSE(tree->remove("absent/deeper"));
  EXPECT_EQ(tree->remove(""), std::errc::invalid_argument);
  EXPECT_TRUE(fs::is_directory(t.path()));
}

TEST(Tree, Rename) {
  TempDir t;
  auto tree = open_tree(t.path());
  write_file(t / "a", "A");
  write_file(t / "b", "B");
  ASSERT_FALSE(tree->rename("a", "b"));
  EXPECT_FALSE(fs::exists(t / "a"));
  EXPECT_EQ(read_file(t / "b"), "A");

  fs::create_directories(t / "d1/sub");
  write_file(t / "d1/sub/f", "f");
  fs::create_directory(t / "d2");
  ASSERT_FALSE(tree->make_directory("d2/inner", 0755));
  ASSERT_FALSE(tree->rename("d1", "d2/inner"));  // empty directory target replaced
  EXPECT_EQ(read_file(t / "d2/inner/sub/f"), "f");

  fs::create_directories(t / "full/x");
  fs::create_directory(t / "other");
  EXPECT_TRUE(tree->rename("other", "full"));  // a non-empty directory is not replaced
  EXPECT_TRUE(tree->rename("absent", "x"));
  EXPECT_TRUE(tree->rename("full", "full/x/y"));  // into itself
}

TEST(Tree, SetAttributes) {
  TempDir outside;
  write_file(outside / "victim", "v");
  ::chmod((outside / "victim").c_str(), 0600);
  TempDir t;
  auto tree = open_tree(t.path());
  write_file(t / "f", "x");
  ASSERT_FALSE(tree->set_attributes("f", 0704, 1300000000000000011));
  EXPECT_EQ(lstat_of(t / "f").st_mode & 07777, 0704u);
  EXPECT_EQ(mtime_of(t / "f"), 1300000000000000011);

  fs::create_directory(t / "d");
  ASSERT_FALSE(tree->set_attributes("d", 0700, 1300000000000000012));
  EXPECT_EQ(lstat_of(t / "d").st_mode & 07777, 0700u);
  EXPECT_EQ(mtime_of(t / "d"), 1300000000000000012);

  // Symlinks: only the link's mtime; the file it names keeps its mode and mtime.
  auto victim_mtime = mtime_of(outside / "victim");
  fs::create_symlink(outside / "victim", t / "l");
  ASSERT_FALSE(tree->set_attributes("l", 0777, 1300000000000000013));
  EXPECT_EQ(mtime_of(t / "l"), 1300000000000000013);
  EXPECT_EQ(lstat_of(outside / "victim").st_mode & 07777, 0600u);
  EXPECT_EQ(mtime_of(outside / "victim"), victim_mtime);

  EXPECT_TRUE(tree->set_attributes("absent", 0644, 1));
}

// --- Attacks: paths from an untrusted peer ----------------------------------------------------

TEST(TreeAttack, InvalidPathsAreRejectedEverywhere) {
  TempDir base;
  fs::create_directory(base / "root");
  fs::create_directory(base / "root/a");
  write_file(base / "victim", "v");
  auto tree = open_tree(base / "root");
  const std::string bad_paths[] = {"../x",        "a/../../x", "/etc/passwd", "../victim",
                                   "a/../../victim", "a//b",  "./a",         "a/",
                                   "a/./b",       "..",        ".",           std::string("a\0b", 3)};
  for (const auto& bad : bad_paths) {
    SCOPED_TRACE(bad);
    FileWriter w;
    EXPECT_EQ(tree->begin_file(bad, w), std::errc::invalid_argument);
    FileReader r;
    EXPECT_EQ(tree->open_file(bad, r), std::errc::invalid_argument);
    EXPECT_EQ(tree->make_directory(bad, 0755), std::errc::invalid_argument);
    EXPECT_EQ(tree->make_symlink(bad, "t", 1), std::errc::invalid_argument);
    EXPECT_EQ(tree->remove(bad), std::errc::invalid_argument);
    EXPECT_EQ(tree->rename(bad, "ok"), std::errc::invalid_argument);
    EXPECT_EQ(tree->rename("a", bad), std::errc::invalid_argument);
    EXPECT_EQ(tree->set_attributes(bad, 0777, 1), std::errc::invalid_argument);
    std::error_code ec;
    EXPECT_FALSE(tree->stat(bad, ec));
    EXPECT_EQ(ec, std::errc::invalid_argument);
  }
  FileWriter w;
  FileReader r;
  EXPECT_EQ(tree->begin_file("", w), std::errc::invalid_argument);
  EXPECT_EQ(tree->open_file("", r), std::errc::invalid_argument);
  EXPECT_EQ(names_in(base.path()), (std::vector<std::string>{"root", "victim"}));
  EXPECT_EQ(names_in(base / "root"), (std::vector<std::string>{"a"}));
  EXPECT_EQ(read_file(base / "victim"), "v");
  EXPECT_TRUE(fs::is_directory(base / "root/a"));
}

TEST(TreeAttack, SymlinkComponentsAreNeverFollowed) {
  TempDir outside;
  write_file(outside / "f", "outside file");
  ::chmod((outside / "f").c_str(), 0600);
  fs::create_directory(outside / "d");
  TempDir t;
  fs::create_directory(t / "inner");
  write_file(t / "inner/f", "inside");
  // An absolute link, a relative one climbing out, and one that even stays inside the tree:
  // none may be used as a path component.
  fs::create_symlink(outside.path(), t / "abs");
  fs::create_symlink("../" + outside.path().filename().string(), t / "rel");
  fs::create_symlink("inner", t / "in");
  auto tree = open_tree(t.path(), {.in_place_files = true});
  auto outside_names = names_in(outside.path());

  for (const std::string link : {"abs", "rel", "in"}) {
    SCOPED_TRACE(link);
    FileWriter w;
    EXPECT_TRUE(tree->begin_file(link + "/f", w));
    EXPECT_TRUE(tree->begin_file(link + "/new", w));
    EXPECT_TRUE(tree->make_directory(link + "/newdir", 0777));
    EXPECT_TRUE(tree->make_directory(link + "/d", 0777));
    EXPECT_TRUE(tree->make_symlink(link + "/s", "/etc/passwd", 1));
    EXPECT_TRUE(tree->remove(link + "/f"));
    EXPECT_TRUE(tree->remove(link + "/d"));
    EXPECT_TRUE(tree->rename(link + "/f", "stolen"));
    EXPECT_TRUE(tree->rename("inner/f", link + "/planted"));
    EXPECT_TRUE(tree->set_attributes(link + "/f", 0777, 1));
    FileReader r;
    EXPECT_TRUE(tree->open_file(link + "/f", r));
    // Reading the link itself as a file is refused too: it would follow it.
    EXPECT_TRUE(tree->open_file(link, r));
    std::error_code ec;
    EXPECT_FALSE(tree->stat(link + "/f", ec));
    EXPECT_TRUE(ec);
  }
  EXPECT_EQ(names_in(outside.path()), outside_names);
  EXPECT_EQ(read_file(outside / "f"), "outside file");
  EXPECT_EQ(lstat_of(outside / "f").st_mode & 07777, 0600u);
  EXPECT_EQ(read_file(t / "inner/f"), "inside");
  EXPECT_FALSE(fs::exists(fs::symlink_status(t / "stolen")));
  EXPECT_TRUE(fs::is_empty(outside / "d"));
}

TEST(TreeAttack, SymlinkDeepInThePathIsRefused) {
  TempDir outside;
  TempDir t;
  fs::create_directories(t / "a/b");
  fs::create_symlink(outside.path(), t / "a/b/c");
  auto tree = open_tree(t.path());
  EXPECT_EQ(write(*tree, "a/b/c/x", "x"), std::errc::too_many_symbolic_link_levels);
  EXPECT_TRUE(fs::is_empty(outside.path()));
}

TEST(TreeAttack, SetIdBitsAreNeverWrittenNorReported) {
  // Files arriving from the runner are written by the session: a set-user-ID or set-group-ID
  // bit on one would make a program that runs as the laptop's user (or group) with code the
  // session chose. Directories, files and attribute changes all drop them; the sticky bit stays.
  TempDir t;
  auto tree = open_tree(t.path());
  ASSERT_FALSE(write(*tree, "tool", "#!/bin/sh\n", 06755));
  EXPECT_EQ(lstat_of(t / "tool").st_mode & 07777, 0755u);
  ASSERT_FALSE(tree->make_directory("shared", 03775));
  EXPECT_EQ(lstat_of(t / "shared").st_mode & 07777, 01775u);
  ASSERT_FALSE(tree->set_attributes("tool", 04711, 1700000000000000000));
  EXPECT_EQ(lstat_of(t / "tool").st_mode & 07777, 0711u);
  ASSERT_FALSE(tree->set_attributes("", 02755, 1700000000000000000));
  EXPECT_EQ(lstat_of(t.path()).st_mode & 07777, 0755u);

  // A set-id file made outside the synchroniser keeps its bits, but is reported without them,
  // so they are never sent and never differ between the two sides.
  write_file(t / "local", "x");
  ASSERT_EQ(::chmod((t / "local").c_str(), 04755), 0);
  std::error_code ec;
  auto entry = tree->stat("local", ec);
  ASSERT_TRUE(entry) << ec.message();
  EXPECT_EQ(entry->mode, 0755u);
  EXPECT_EQ(lstat_of(t / "local").st_mode & 07777, 04755u);
}
