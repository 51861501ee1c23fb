#include <gtest/gtest.h>

#include <algorithm>

#include "offload/sync/reconcile.h"

using namespace offload::sync;

namespace {

Entry file(const std::string& path, std::uint64_t size = 1, std::int64_t mtime = 100,
           std::uint32_t mode = 0644) {
  Entry e;
  e.path = path;
  e.type = EntryType::file;
  e.size = size;
  e.mtime_ns = mtime;
  e.mode = mode;
  return e;
}

Entry dir(const std::string& path, std::uint32_t mode = 0755, std::int64_t mtime = 100) {
  Entry e;
  e.path = path;
  e.type = EntryType::directory;
  e.mode = mode;
  e.mtime_ns = mtime;
  return e;
}

Entry symlink_entry(const std::string& path, const std::string& target) {
  Entry e;
  e.path = path;
  e.type = EntryType::symlink;
  e.mode = 0777;
  e.link_target = target;
  return e;
}

Manifest manifest(std::initializer_list<Entry> entries) {
  Manifest m;
  for (const auto& e : entries) m.emplace(e.path, e);
  return m;
}

// The action for one path, from a reconcile of single-path manifests.
Action::Kind one(std::optional<Entry> local, std::optional<Entry> remote, std::optional<Entry> base) {
  Manifest l, r, b;
  if (local) l.emplace(local->path, *local);
  if (remote) r.emplace(remote->path, *remote);
  if (base) b.emplace(base->path, *base);
  auto actions = reconcile(l, r, b);
  EXPECT_EQ(actions.size(), 1u);
  return actions.empty() ? Action::agree : actions[0].kind;
}

const char* name(Action::Kind k) {
  switch (k) {
    case Action::push: return "push";
    case Action::pull: return "pull";
    case Action::delete_remote: return "delete_remote";
    case Action::delete_local: return "delete_local";
    case Action::conflict: return "conflict";
    case Action::agree: return "agree";
  }
  return "?";
}

std::vector<std::string> render(const std::vector<Action>& actions) {
  std::vector<std::string> out;
  for (const auto& a : actions) out.push_back(std::string(name(a.kind)) + " " + a.path);
  return out;
}

}  // namespace

TEST(EntrySameAs, ComparesWhatSynchronisationCaresAbout) {
  EXPECT_TRUE(file("f").same_as(file("f")));
  EXPECT_FALSE(file("f", 1).same_as(file("f", 2)));
  EXPECT_FALSE(file("f", 1, 100).same_as(file("f", 1, 101)));
  EXPECT_FALSE(file("f", 1, 100, 0644).same_as(file("f", 1, 100, 0600)));
  EXPECT_TRUE(dir("d", 0755, 1).same_as(dir("d", 0755, 2)));  // directory mtimes ignored
  EXPECT_FALSE(dir("d", 0755).same_as(dir("d", 0700)));
  EXPECT_TRUE(symlink_entry("l", "a").same_as(symlink_entry("l", "a")));
  EXPECT_FALSE(symlink_entry("l", "a").same_as(symlink_entry("l", "b")));
  EXPECT_FALSE(file("x").same_as(dir("x")));
}

TEST(Reconcile, Rules) {
  auto f = file("p", 1, 100), f2 = file("p", 2, 200), f3 = file("p", 3, 300);
  // local == remote → agree (present, or both gone since the base)
  EXPECT_EQ(one(f, f, std::nullopt), Action::agree);
  EXPECT_EQ(one(f2, f2, f), Action::agree);
  EXPECT_EQ(one(std::nullopt, std::nullopt, f), Action::agree);
  // local unchanged → the remote change wins
  EXPECT_EQ(one(f, f2, f), Action::pull);
  EXPECT_EQ(one(f, std::nullopt, f), Action::delete_local);
  EXPECT_EQ(one(std::nullopt, f, std::nullopt), Action::pull);
  // remote unchanged → the local change wins
  EXPECT_EQ(one(f2, f, f), Action::push);
  EXPECT_EQ(one(std::nullopt, f, f), Action::delete_remote);
  EXPECT_EQ(one(f, std::nullopt, std::nullopt), Action::push);
  // both changed differently
  EXPECT_EQ(one(f2, f3, f), Action::conflict);
  // deletion loses to modification
  EXPECT_EQ(one(std::nullopt, f2, f), Action::pull);
  EXPECT_EQ(one(f2, std::nullopt, f), Action::push);
  // two directories with different modes: push
  EXPECT_EQ(one(dir("p", 0700), dir("p", 0750), dir("p", 0755)), Action::push);
  // directory mtimes alone are no change
  EXPECT_EQ(one(dir("p", 0755, 5), dir("p", 0755, 9), dir("p", 0755, 1)), Action::agree);
  // type changes and symlink targets
  EXPECT_EQ(one(symlink_entry("p", "t"), f, f), Action::push);
  EXPECT_EQ(one(symlink_entry("p", "a"), symlink_entry("p", "b"), symlink_entry("p", "a")), Action::pull);
  EXPECT_EQ(one(dir("p"), f2, f), Action::conflict);
  EXPECT_EQ(one(symlink_entry("p", "x"), symlink_entry("p", "y"), symlink_entry("p", "z")), Action::conflict);
}

TEST(Reconcile, EmptyBaseFirstContact) {
  auto actions = reconcile(
      manifest({dir(""), file("both-same", 1, 1), file("both-diff", 1, 1), file("local-only"),
                dir("d", 0700)}),
      manifest({dir(""), file("both-same", 1, 1), file("both-diff", 2, 1), file("remote-only"),
                dir("d", 0755)}),
      {});
  EXPECT_EQ(render(actions),
            (std::vector<std::string>{"agree ", "conflict both-diff", "agree both-same",
                                      "push d", "push local-only", "pull remote-only"}));
}

TEST(Reconcile, DeletionsChildrenFirstThenParentsFirst) {
  auto base = manifest({dir(""), dir("d"), dir("d/b"), file("d/b/c"), file("d/a"), file("d.txt")});
  auto local = manifest({dir(""), file("d.txt"), dir("n"), file("n/x")});
  auto remote = base;
  auto actions = reconcile(local, remote, base);
  EXPECT_EQ(render(actions),
            (std::vector<std::string>{"delete_remote d/b/c", "delete_remote d/b", "delete_remote d/a",
                                      "delete_remote d", "agree ", "agree d.txt", "push n",
                                      "push n/x"}));
}

TEST(Reconcile, DeletedDirectoryComesBackForAChangeInside) {
  // Local removed d entirely; meanwhile the remote side edited d/x. Deleting d on the remote
  // would lose that edit: d is pulled back with d/x, and only the untouched d/y goes.
  auto base = manifest({dir(""), dir("d"), file("d/x", 1, 1), file("d/y", 1, 1)});
  auto local = manifest({dir("")});
  auto remote = manifest({dir(""), dir("d"), file("d/x", 2, 2), file("d/y", 1, 1)});
  EXPECT_EQ(render(reconcile(local, remote, base)),
            (std::vector<std::string>{"delete_remote d/y", "agree ", "pull d", "pull d/x"}));
  // And the mirror image.
  EXPECT_EQ(render(reconcile(remote, local, base)),
            (std::vector<std::string>{"delete_local d/y", "agree ", "push d", "push d/x"}));
}

TEST(Reconcile, DirectoryReplacedByFileWhileChangedInsideIsAConflict) {
  auto base = manifest({dir("d"), file("d/x", 1, 1)});
  auto local = manifest({file("d", 5, 5)});
  auto remote = manifest({dir("d"), file("d/x", 2, 2)});
  EXPECT_EQ(render(reconcile(local, remote, base)),
            (std::vector<std::string>{"conflict d", "pull d/x"}));
}

TEST(Reconcile, DirectoryModeChange) {
  auto base = manifest({dir("d", 0755)});
  EXPECT_EQ(render(reconcile(manifest({dir("d", 0700)}), base, base)),
            (std::vector<std::string>{"push d"}));
  EXPECT_EQ(render(reconcile(base, manifest({dir("d", 0700)}), base)),
            (std::vector<std::string>{"pull d"}));
}

TEST(ConflictName, KeepsTheExtension) {
  const std::string stamp = "20261129-174501";
  EXPECT_EQ(conflict_name("a/b.txt", "remote", stamp),
            "a/b.offload-conflict-remote-20261129-174501.txt");
  EXPECT_EQ(conflict_name("b.txt", "local", stamp), "b.offload-conflict-local-20261129-174501.txt");
  EXPECT_EQ(conflict_name("Makefile", "remote", stamp),
            "Makefile.offload-conflict-remote-20261129-174501");
  EXPECT_EQ(conflict_name(".env", "remote", stamp), ".env.offload-conflict-remote-20261129-174501");
  EXPECT_EQ(conflict_name("cfg/.env", "local", stamp),
            "cfg/.env.offload-conflict-local-20261129-174501");
  EXPECT_EQ(conflict_name("dir.d/file", "remote", stamp),
            "dir.d/file.offload-conflict-remote-20261129-174501");
  EXPECT_EQ(conflict_name("x.tar.gz", "remote", stamp),
            "x.tar.offload-conflict-remote-20261129-174501.gz");
  EXPECT_EQ(conflict_name("odd.", "remote", stamp), "odd..offload-conflict-remote-20261129-174501");
}

TEST(EntryPaths, ValidRelativePath) {
  for (const char* good : {"", "a", "a/b", ".hidden", "a/..b", "...", "a b/c"})
    EXPECT_TRUE(valid_relative_path(good)) << good;
  for (const std::string& bad : std::vector<std::string>{"/", "/a", "a/", "a//b", ".", "..", "../a", "a/..", "a/./b", "./a",
                          std::string("a\0b", 3)})
    EXPECT_FALSE(valid_relative_path(bad)) << bad;
  EXPECT_EQ(parent_path("a/b/c"), "a/b");
  EXPECT_EQ(parent_path("c"), "");
  EXPECT_TRUE(is_temp_name(".offload-sync-abc"));
  EXPECT_FALSE(is_temp_name("x.offload-sync-abc"));
  EXPECT_STREQ(to_string(EntryType::symlink), "symlink");
}
