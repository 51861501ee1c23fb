// MountSync (offloadd's side) against serve_replica (the runner's side) over an in-memory
// transport, on real temporary directories: everything but gRPC and Docker.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <optional>
#include <thread>

#include "offload/sync/mount.h"
#include "offload/sync/replica.h"
#include "offload/sync/scanner.h"
#include "bulk_files.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using offload::sync::IgnoreRules;
using offload::sync::MountStatus;
using offload::sync::MountSync;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Polls `condition` until it holds or a generous deadline passes (inotify delivery is
// asynchronous; the deadline only bounds a failing test).
template <class F>
bool eventually(F condition, std::chrono::milliseconds limit = 10s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

// Two trees are equal when every entry matches (type, mode, size, mtime, link target).
::testing::AssertionResult same_trees(const fs::path& a, const fs::path& b,
                                      const IgnoreRules& rules = {}) {
  auto left = offload::sync::scan_tree(a, rules).entries;
  auto right = offload::sync::scan_tree(b, IgnoreRules{}).entries;
  for (const auto& [p, e] : left) {
    auto it = right.find(p);
    if (it == right.end()) return ::testing::AssertionFailure() << p << " missing on the right";
    if (!it->second.same_as(e)) return ::testing::AssertionFailure() << p << " differs";
    if (e.type == offload::sync::EntryType::file && read(a / p) != read(b / p))
      return ::testing::AssertionFailure() << p << ": content differs";
  }
  for (const auto& [p, e] : right)
    if (!left.count(p)) return ::testing::AssertionFailure() << p << " only on the right";
  return ::testing::AssertionSuccess();
}

// The replica's end, counting the file content it sends.
class CountingTransport final : public offload::sync::Transport {
 public:
  explicit CountingTransport(offload::sync::Transport& inner) : inner_(inner) {}
  Offer try_send(offload::v1::SyncMessage& m) override {
    std::uint64_t n = m.change().data().size() + m.data().data().size();
    Offer o = inner_.try_send(m);
    if (o == Offer::taken) content_sent += n;
    return o;
  }
  int send_fd() override { return inner_.send_fd(); }
  offload::sync::Inbox& inbox() override { return inner_.inbox(); }
  void cancel() override { inner_.cancel(); }
  std::atomic<std::uint64_t> content_sent{0};

 private:
  offload::sync::Transport& inner_;
};

class MountReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/offload-syncproto-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    local_ = base_ / "local";
    sync_root_ = base_ / "runner-sync";
    fs::create_directories(local_);
    fs::create_directories(sync_root_);
  }
  void TearDown() override {
    stop();
    std::error_code ec;
    fs::remove_all(base_, ec);
  }

  // Starts a mount of `path` with a replica serving it on a thread.
  void start(const fs::path& path, bool single_file = false, IgnoreRules rules = {},
             std::size_t inbox_capacity = 16) {
    auto [client, server] = offload::sync::make_transport_pair(inbox_capacity);
    server_ = std::move(server);
    counting_ = std::make_unique<CountingTransport>(*server_);
    stop_replica_ = false;
    offload::sync::ReplicaOptions ro;
    ro.sync_root = sync_root_;
    ro.settle = 20ms;
    ro.max_delay = 100ms;
    ro.stamp = [] { return std::string("20261129-000000"); };
    ro.id_shift = id_shift_;
    replica_options_ = ro;
    replica_ = std::thread([this] {
      offload::sync::serve_replica(*counting_, replica_options_, stop_replica_);
    });
    MountSync::Options o;
    o.local_path = path;
    o.single_file = single_file;
    o.rules = std::move(rules);
    o.uid = ::geteuid();
    o.gid = ::getegid();
    o.settle = 20ms;
    o.max_delay = 100ms;
    o.reconnect_delay = 50ms;
    o.stamp = [] { return std::string("20261129-000000"); };
    auto holder = std::make_shared<std::unique_ptr<offload::sync::Transport>>(std::move(client));
    mount_ = std::make_unique<MountSync>(
        MountSync::id_for(path), std::move(o),
        [holder](std::string& why) -> std::unique_ptr<offload::sync::Transport> {
          if (!*holder) {
            why = "no second connection in this test";
            return nullptr;
          }
          return std::move(*holder);
        });
  }

  // Waits for the first synchronisation; returns the replica-side bind source.
  std::string ready() {
    std::promise<std::pair<bool, std::string>> p;
    auto f = p.get_future();
    mount_->when_ready([&p](bool ok, const std::string& v) { p.set_value({ok, v}); });
    EXPECT_EQ(f.wait_for(30s), std::future_status::ready);
    auto [ok, value] = f.get();
    EXPECT_TRUE(ok) << value;
    return value;
  }

  bool flush() {
    std::promise<bool> p;
    auto f = p.get_future();
    mount_->flush([&p](bool ok) { p.set_value(ok); });
    EXPECT_EQ(f.wait_for(30s), std::future_status::ready);
    return f.get();
  }

  void stop() {
    if (mount_) mount_->stop();
    mount_.reset();
    stop_replica_ = true;
    if (replica_.joinable()) replica_.join();
    counting_.reset();
    server_.reset();
  }

  fs::path replica_dir() const { return sync_root_ / MountSync::id_for(local_); }

  fs::path base_, local_, sync_root_;
  std::unique_ptr<offload::sync::Transport> server_;
  std::unique_ptr<CountingTransport> counting_;  // the replica's view of server_
  offload::sync::ReplicaOptions replica_options_;
  std::optional<offload::sync::ReplicaOptions::IdShift> id_shift_;
  std::atomic<bool> stop_replica_{false};
  std::thread replica_;
  std::unique_ptr<MountSync> mount_;
};

TEST_F(MountReplicaTest, FirstSyncCopiesTheTreeWithModesMtimesAndSymlinks) {
  write(local_ / "input.txt", "hello\n");
  write(local_ / "src/main.c", "int main(){}\n");
  write(local_ / "bin/run.sh", "#!/bin/sh\n");
  fs::permissions(local_ / "bin/run.sh", fs::perms(0755));
  fs::create_symlink("../src/main.c", local_ / "bin/link");
  fs::create_directories(local_ / "empty");
  start(local_);
  EXPECT_EQ(ready(), replica_dir().string());
  EXPECT_TRUE(same_trees(local_, replica_dir()));
  EXPECT_TRUE(fs::is_symlink(replica_dir() / "bin/link"));
  EXPECT_EQ(fs::read_symlink(replica_dir() / "bin/link"), "../src/main.c");
  auto st = mount_->status();
  EXPECT_EQ(st.state, MountStatus::State::watching);
  EXPECT_EQ(st.files_sent, 3u);
  EXPECT_EQ(st.bytes_sent, 6u + 13u + 10u);
}

TEST_F(MountReplicaTest, AnUnchangedTreeIsNotSentAgain) {
  for (int i = 0; i < 50; ++i) write(local_ / ("d" + std::to_string(i % 5)) / ("f" + std::to_string(i)), std::string(100, 'x'));
  start(local_);
  ready();
  EXPECT_EQ(mount_->status().files_sent, 50u);
  stop();
  // A new connection (daemon restart): no base, but both sides agree, so no content moves.
  start(local_);
  ready();
  EXPECT_EQ(mount_->status().files_sent, 0u);
  EXPECT_EQ(mount_->status().bytes_sent, 0u);
  EXPECT_EQ(mount_->status().files_received, 0u);
}

TEST_F(MountReplicaTest, LocalEditsReachTheReplica) {
  write(local_ / "a.txt", "one");
  start(local_);
  ready();
  write(local_ / "a.txt", "two, longer");
  write(local_ / "new/dir/b.txt", "bee");
  EXPECT_TRUE(eventually([&] { return read(replica_dir() / "a.txt") == "two, longer"; }));
  EXPECT_TRUE(eventually([&] { return read(replica_dir() / "new/dir/b.txt") == "bee"; }));
  fs::remove(local_ / "a.txt");
  EXPECT_TRUE(eventually([&] { return !fs::exists(replica_dir() / "a.txt"); }));
  fs::rename(local_ / "new", local_ / "renamed");
  EXPECT_TRUE(eventually([&] { return read(replica_dir() / "renamed/dir/b.txt") == "bee"; }));
  EXPECT_FALSE(fs::exists(replica_dir() / "new"));
  ASSERT_TRUE(flush());
  EXPECT_TRUE(same_trees(local_, replica_dir()));
}

TEST_F(MountReplicaTest, ReplicaWritesAreLocalAfterAFlush) {
  write(local_ / "input.txt", "in");
  start(local_);
  ready();
  // What a container does in the replica.
  write(replica_dir() / "result.txt", "out\n");
  write(replica_dir() / "build/obj/x.o", std::string(600 * 1024, 'o'));  // several chunks
  fs::remove(replica_dir() / "input.txt");
  ASSERT_TRUE(flush());
  EXPECT_EQ(read(local_ / "result.txt"), "out\n");
  EXPECT_EQ(fs::file_size(local_ / "build/obj/x.o"), 600u * 1024);
  EXPECT_FALSE(fs::exists(local_ / "input.txt"));
  EXPECT_TRUE(same_trees(local_, replica_dir()));
  // Received changes are not bounced back.
  auto st = mount_->status();
  EXPECT_EQ(st.files_received, 2u);
  EXPECT_EQ(st.files_sent, 1u);  // input.txt at the start, nothing since
}

TEST_F(MountReplicaTest, ReplicaRenamesArriveAsRenames) {
  write(local_ / "big.bin", std::string(300 * 1024, 'b'));
  start(local_);
  ready();
  auto received = mount_->status().bytes_received;
  fs::rename(replica_dir() / "big.bin", replica_dir() / "moved.bin");
  ASSERT_TRUE(flush());
  EXPECT_TRUE(fs::exists(local_ / "moved.bin"));
  EXPECT_FALSE(fs::exists(local_ / "big.bin"));
  EXPECT_EQ(mount_->status().bytes_received, received);  // moved, not sent again
}

// `mkdir new && mv dir new/`: the move must not overtake the new directory (it used to, and the
// files were lost on the other side).
TEST_F(MountReplicaTest, ADirectoryMovedIntoANewDirectoryKeepsItsFilesBothWays) {
  write(local_ / "here/h.txt", "local data");
  write(local_ / "there/t.txt", "runner data");
  start(local_);
  ready();
  fs::create_directories(local_ / "new-here");
  fs::rename(local_ / "here", local_ / "new-here/here");
  ASSERT_TRUE(flush());
  EXPECT_TRUE(eventually([&] { return read(replica_dir() / "new-here/here/h.txt") == "local data"; }));
  EXPECT_FALSE(fs::exists(replica_dir() / "here"));

  fs::create_directories(replica_dir() / "new-there");
  fs::rename(replica_dir() / "there", replica_dir() / "new-there/there");
  ASSERT_TRUE(flush());
  EXPECT_EQ(read(local_ / "new-there/there/t.txt"), "runner data");
  EXPECT_FALSE(fs::exists(local_ / "there"));
  ASSERT_TRUE(flush());
  EXPECT_TRUE(same_trees(local_, replica_dir()));
  EXPECT_TRUE(mount_->status().error.empty()) << mount_->status().error;
}

TEST_F(MountReplicaTest, ChangesOnBothSidesKeepBothVersions) {
  write(local_ / "notes.txt", "base");
  start(local_);
  ready();
  stop();
  write(local_ / "notes.txt", "local edit");
  write(replica_dir() / "notes.txt", "runner edit!");
  start(local_);
  ready();
  ASSERT_TRUE(flush());
  ASSERT_TRUE(flush());  // the conflict copy travels in the round after the conflict
  const std::string copy = "notes.offload-conflict-remote-20261129-000000.txt";
  EXPECT_EQ(read(local_ / "notes.txt"), "local edit");
  EXPECT_EQ(read(local_ / copy), "runner edit!");
  EXPECT_TRUE(eventually([&] { return read(replica_dir() / copy) == "runner edit!"; }));
  EXPECT_EQ(read(replica_dir() / "notes.txt"), "local edit");
  auto st = mount_->status();
  ASSERT_EQ(st.conflicts.size(), 1u);
  EXPECT_NE(st.conflicts[0].find(copy), std::string::npos);
}

TEST_F(MountReplicaTest, ExcludedPathsNeverLeave) {
  write(local_ / "app.py", "print()");
  write(local_ / "secrets/key.pem", "PRIVATE");
  write(local_ / "config/prod.key", "PRIVATE");
  auto rules = IgnoreRules::parse("secrets\n*.key\n**/*.key\n");
  start(local_, false, rules);
  ready();
  EXPECT_TRUE(fs::exists(replica_dir() / "app.py"));
  EXPECT_FALSE(fs::exists(replica_dir() / "secrets"));
  EXPECT_FALSE(fs::exists(replica_dir() / "config/prod.key"));
  write(local_ / "secrets/other.pem", "PRIVATE");
  write(local_ / "visible.txt", "v");
  EXPECT_TRUE(eventually([&] { return fs::exists(replica_dir() / "visible.txt"); }));
  ASSERT_TRUE(flush());
  EXPECT_FALSE(fs::exists(replica_dir() / "secrets"));
}

TEST_F(MountReplicaTest, SocketsAreSkippedAndReported) {
  write(local_ / "a.txt", "a");
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sock = (local_ / "app.sock").string();
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  start(local_);
  ready();
  ::close(fd);
  EXPECT_FALSE(fs::exists(replica_dir() / "app.sock"));
  auto st = mount_->status();
  ASSERT_EQ(st.skipped.size(), 1u);
  EXPECT_EQ(st.skipped[0].path, "app.sock");
}

TEST_F(MountReplicaTest, SingleFileMountsRewriteTheReplicaInPlace) {
  write(local_ / "config.yml", "a: 1\n");
  write(local_ / "other.txt", "not part of the mount");
  start(local_ / "config.yml", true);
  std::string source = ready();
  auto replica_file = sync_root_ / MountSync::id_for(local_ / "config.yml") / "config.yml";
  EXPECT_EQ(source, replica_file.string());
  EXPECT_EQ(read(replica_file), "a: 1\n");
  EXPECT_FALSE(fs::exists(replica_file.parent_path() / "other.txt"));
  struct stat before {};
  ASSERT_EQ(::stat(replica_file.c_str(), &before), 0);
  // Editors replace the file by renaming a new one over it.
  write(local_ / ".config.yml.swp", "a: 2\n");
  fs::rename(local_ / ".config.yml.swp", local_ / "config.yml");
  EXPECT_TRUE(eventually([&] { return read(replica_file) == "a: 2\n"; }));
  struct stat after {};
  ASSERT_EQ(::stat(replica_file.c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);  // a container's bind mount still sees it
}

// Issue 11: bulk data in both directions at once (the in-process version of the integration
// test, with tiny inboxes). Each side used to send a whole file before reading again: with both
// sending, both inboxes filled and neither side ever read again.
TEST_F(MountReplicaTest, BulkDataBothWaysAtOnce) {
  const offload::test::PatternFiles up("up/u", 4, 10, 5ull << 20);
  const offload::test::PatternFiles down("down/d", 4, 20, 5ull << 20);
  start(local_, false, {}, 2);
  ready();
  const long rss_before = offload::test::peak_rss_kib();
  auto t0 = std::chrono::steady_clock::now();
  bool wrote_up = false, wrote_down = false;
  std::thread local_writer([&] { wrote_up = up.write(local_); });
  std::thread container_writer([&] { wrote_down = down.write(replica_dir()); });
  local_writer.join();
  container_writer.join();
  ASSERT_TRUE(wrote_up && wrote_down);

  auto all_there = [&](const fs::path& side) { return up.all_there(side) && down.all_there(side); };
  const auto deadline = t0 + 60s;
  bool in_sync = false;
  while (!in_sync && std::chrono::steady_clock::now() < deadline) {
    if (all_there(local_) && all_there(replica_dir())) {
      auto p = std::make_shared<std::promise<bool>>();
      auto f = p->get_future();
      mount_->flush([p](bool ok) { p->set_value(ok); });
      in_sync = f.wait_for(deadline - std::chrono::steady_clock::now()) ==
                    std::future_status::ready &&
                f.get();
    } else {
      std::this_thread::sleep_for(20ms);
    }
  }
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - t0);
  std::cout << "bulk both ways (in process): " << (in_sync ? "in sync" : "NOT in sync")
            << " after " << took.count() << " ms; peak RSS " << rss_before / 1024
            << " MiB before, " << offload::test::peak_rss_kib() / 1024 << " MiB after\n";
  if (!in_sync) {
    server_->cancel();  // unblocks both ends so that they can stop
    FAIL() << "not in sync within 60 s: " << mount_->status().bytes_sent << " bytes sent, "
           << mount_->status().bytes_received << " received";
  }
  for (const auto& side : {local_, replica_dir()}) {
    EXPECT_EQ(up.check(side), "");
    EXPECT_EQ(down.check(side), "");
  }
  // Two 2-message inboxes of 256 KiB pieces (and the test's own 1 MiB buffers): nothing near
  // the 40 MiB that moved is held.
  if (offload::test::kResidentSetIsMeaningful) {
    EXPECT_LT(offload::test::peak_rss_kib() - rss_before, 16 * 1024);
  }
  EXPECT_TRUE(same_trees(local_, replica_dir()));
}

// The same at (re)connection: both sides changed a lot while apart, so the first
// synchronisation pushes and fetches bulk data at once (the replica answers the fetches with
// content while the mount is still sending its own).
TEST_F(MountReplicaTest, FirstSyncWithBulkDataOnBothSides) {
  const offload::test::PatternFiles up("up/u", 4, 10, 5ull << 20);
  const offload::test::PatternFiles down("down/d", 4, 20, 5ull << 20);
  ASSERT_TRUE(up.write(local_));
  ASSERT_TRUE(down.write(replica_dir()));
  start(local_, false, {}, 2);
  auto p = std::make_shared<std::promise<bool>>();
  auto f = p->get_future();
  mount_->when_ready([p](bool ok, const std::string&) { p->set_value(ok); });
  if (f.wait_for(30s) != std::future_status::ready) {
    server_->cancel();  // unblocks both ends so that they can stop
    FAIL() << "the first synchronisation did not complete within 30 s";
  }
  ASSERT_TRUE(f.get());
  for (const auto& side : {local_, replica_dir()}) {
    EXPECT_EQ(up.check(side), "");
    EXPECT_EQ(down.check(side), "");
  }
  EXPECT_TRUE(same_trees(local_, replica_dir()));
  // Each file once: "down" is fetched with everything in it, its files are not asked again.
  EXPECT_EQ(counting_->content_sent.load(), down.total());
}

// A mount whose replica stopped reading (a stalled call) still stops when asked: its sends wait
// for room, never beyond a stop.
TEST_F(MountReplicaTest, StopReturnsWhileTheReplicaReadsNothing) {
  ASSERT_TRUE(offload::test::write_pattern_file(local_ / "big.bin", 1, 4 << 20));
  auto [client, server] = offload::sync::make_transport_pair(2);
  // The replica's half of the handshake, then silence.
  offload::v1::SyncMessage ready_msg, manifest;
  ready_msg.mutable_ready()->set_bind_source("/nowhere");
  manifest.mutable_manifest()->set_last(true);
  ASSERT_EQ(server->try_send(ready_msg), offload::sync::Transport::Offer::taken);
  ASSERT_EQ(server->try_send(manifest), offload::sync::Transport::Offer::taken);
  MountSync::Options o;
  o.local_path = local_;
  o.uid = ::geteuid();
  o.gid = ::getegid();
  auto holder = std::make_shared<std::unique_ptr<offload::sync::Transport>>(std::move(client));
  mount_ = std::make_unique<MountSync>(
      MountSync::id_for(local_), std::move(o),
      [holder](std::string& why) -> std::unique_ptr<offload::sync::Transport> {
        if (!*holder) why = "no second connection in this test";
        return std::move(*holder);
      });
  // Until the mount is stuck sending big.bin into the replica's full inbox.
  ASSERT_TRUE(eventually([&] { return mount_->status().state == MountStatus::State::syncing; }));
  std::this_thread::sleep_for(100ms);
  auto stopped = std::async(std::launch::async, [&] { mount_->stop(); });
  if (stopped.wait_for(5s) != std::future_status::ready) {
    server->cancel();  // unblocks the mount so that the test can end
    stopped.wait();
    FAIL() << "stop() did not return while the replica read nothing";
  }
}

TEST_F(MountReplicaTest, ATreeOfThousandsOfFiles) {
  for (int i = 0; i < 2000; ++i)
    write(local_ / ("d" + std::to_string(i % 40)) / ("f" + std::to_string(i) + ".txt"),
          std::to_string(i));
  start(local_);
  ready();
  EXPECT_EQ(mount_->status().files_sent, 2000u);
  EXPECT_TRUE(same_trees(local_, replica_dir()));
}

}  // namespace

// A user-namespace-remapped engine: what the replica creates belongs to the session's mapped ids
// (container root, or the client's uid as containers see it), never to host root.
TEST_F(MountReplicaTest, RemappedSessionsOwnTheReplicaByTheirMappedIds) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  write(local_ / "dir/file.txt", "x\n");
  fs::create_symlink("dir/file.txt", local_ / "link");
  id_shift_ = offload::sync::ReplicaOptions::IdShift{1000000000u, 1000100000u};
  start(local_);
  ready();
  const std::uint32_t uid = 1000000000u + ::geteuid(), gid = 1000100000u + ::getegid();
  for (const char* rel : {"", "dir", "dir/file.txt", "link"}) {
    struct stat st {};
    ASSERT_EQ(::lstat((replica_dir() / rel).c_str(), &st), 0) << rel;
    EXPECT_EQ(st.st_uid, uid) << rel;
    EXPECT_EQ(st.st_gid, gid) << rel;
  }
}

namespace {

// A hostile client's change whose content is interrupted by another message: the replica ends
// the call, and says why first (it ended without a word, the client could not tell the reason).
TEST_F(MountReplicaTest, AnInterruptedChangeEndsTheCallWithItsReason) {
  auto [client, server] = offload::sync::make_transport_pair(16);
  std::atomic<bool> stop{false};
  offload::sync::ReplicaOptions ro;
  ro.sync_root = sync_root_;
  std::thread replica([&, s = server.get()] { offload::sync::serve_replica(*s, ro, stop); });
  std::vector<offload::v1::SyncMessage> ms(3);
  ms[0].mutable_open()->set_mount_id("0123456789abcdef");
  for (int i : {1, 2}) {
    auto* e = ms[i].mutable_change()->mutable_entry();
    e->set_path(i == 1 ? "a" : "b");
    e->set_type(offload::v1::SyncEntry::TYPE_FILE);
    e->set_size(10);
    ms[i].mutable_change()->set_data("12345");
    ms[i].mutable_change()->set_more(true);
  }
  for (auto& m : ms) ASSERT_EQ(client->try_send(m), offload::sync::Transport::Offer::taken);
  std::string errors;
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (errors.empty() && std::chrono::steady_clock::now() < until) {
    if (auto m = client->inbox().pop_wait(100ms); m && m->has_error())
      errors += m->error().message();
  }
  EXPECT_EQ(errors, "unexpected message in a change's content");
  client->cancel();
  stop = true;
  replica.join();
}

}  // namespace
