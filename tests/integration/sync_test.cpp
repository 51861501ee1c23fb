// Bind-mount synchronisation over the real channel: offloadd's MountSync on a Runner.Sync call
// (gRPC's synchronous client stream) ⇄ loopback TLS ⇄ RunnerService's SyncCall reactor and the
// replica, on real directories.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <thread>

#include "offload/common/token.h"
#include "offload/daemon/runner_client.h"
#include "offload/daemon/sync_transport.h"
#include "offload/runner/session.h"
#include "offload/sync/mount.h"
#include "offload/sync/scanner.h"
#include "bulk_files.h"
#include "test_target.h"

namespace offload::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}


// A Sync call made by hand, as a hostile or buggy client could: the test decides what is sent
// and when it is read.
struct RawSync {
  RawSync(daemon::RunnerClient& client, std::chrono::seconds deadline = 60s) {
    client.authorize(ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    stream = client.stub().Sync(&ctx);
  }
  // Opens `mount_id` and reads the runner's answer: true once the replica says it is ready.
  bool open(const std::string& mount_id) {
    v1::SyncMessage m;
    m.mutable_open()->set_mount_id(mount_id);
    m.mutable_open()->set_uid(::geteuid());
    m.mutable_open()->set_gid(::getegid());
    if (!stream->Write(m)) return false;
    v1::SyncMessage answer;
    return stream->Read(&answer) && answer.has_ready();
  }
  // Half-closes and waits for the runner's status.
  grpc::Status end() {
    stream->WritesDone();
    v1::SyncMessage ignored;
    while (stream->Read(&ignored)) {
    }
    return stream->Finish();
  }
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::SyncMessage, v1::SyncMessage>> stream;
};

class SyncOverGrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("offload-sync-" + random_hex(4));
    local_ = dir_ / "project";
    fs::create_directories(local_);
    runner_ = std::make_unique<InProcessRunner>(dir_);
    client_ = std::make_unique<daemon::RunnerClient>(
        daemon::RunnerEndpoint{runner_->address(), runner_->identity.fingerprint, runner_->token});
    client_->hello(5s);
    auto created = client_->create_session("test", 10s);
    client_->attach(created.session_id(), created.session_token());
  }

  void TearDown() override {
    if (mount_) mount_->stop();
    mount_.reset();
    client_.reset();
    runner_.reset();
    fs::remove_all(dir_);
  }

  void start_mount() {
    sync::MountSync::Options o;
    o.local_path = local_;
    o.uid = ::geteuid();
    o.gid = ::getegid();
    o.settle = 20ms;
    o.max_delay = 100ms;
    o.reconnect_delay = 100ms;
    mount_ = std::make_unique<sync::MountSync>(
        sync::MountSync::id_for(local_), std::move(o),
        [this](std::string&) { return daemon::open_sync_transport(*client_); });
  }

  std::pair<bool, std::string> ready() {
    std::promise<std::pair<bool, std::string>> p;
    auto f = p.get_future();
    mount_->when_ready([&p](bool ok, const std::string& v) { p.set_value({ok, v}); });
    EXPECT_EQ(f.wait_for(60s), std::future_status::ready);
    return f.get();
  }

  bool flush() {
    std::promise<bool> p;
    auto f = p.get_future();
    mount_->flush([&p](bool ok) { p.set_value(ok); });
    EXPECT_EQ(f.wait_for(60s), std::future_status::ready);
    return f.get();
  }

  // A flush that may not come back: false if it failed or `limit` passed first.
  bool flush_within(std::chrono::steady_clock::duration limit) {
    auto p = std::make_shared<std::promise<bool>>();
    auto f = p->get_future();
    mount_->flush([p](bool ok) { p->set_value(ok); });
    return f.wait_for(limit) == std::future_status::ready && f.get();
  }

  fs::path replica() const { return dir_ / "sync" / sync::MountSync::id_for(local_); }

  // Two raw calls of a session limited to `budget` send 12 MiB each while the replicas wait.
  // With `cancel_first`, the first call is cancelled while the session is at its budget.
  void sends_are_held_to_the_budget(std::size_t budget, bool cancel_first = false);

  fs::path dir_, local_;
  std::unique_ptr<InProcessRunner> runner_;
  std::unique_ptr<daemon::RunnerClient> client_;
  std::unique_ptr<sync::MountSync> mount_;
};

TEST_F(SyncOverGrpcTest, ATreeWithALargeFileGoesBothWays) {
  // Larger than the runner's inbox (16 messages × 256 KiB): the reactor must pause reading.
  std::string big(24 * 1024 * 1024, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 2654435761u >> 24);
  write(local_ / "data/big.bin", big);
  for (int i = 0; i < 200; ++i) write(local_ / "src" / (std::to_string(i) + ".c"), "int x;\n");
  start_mount();
  auto [ok, source] = ready();
  ASSERT_TRUE(ok) << source;
  EXPECT_EQ(source, replica().string());
  EXPECT_EQ(read(replica() / "data/big.bin"), big);
  EXPECT_EQ(read(replica() / "src/7.c"), "int x;\n");

  write(replica() / "out/report.txt", "from a container");
  ASSERT_TRUE(flush());
  EXPECT_EQ(read(local_ / "out/report.txt"), "from a container");
  auto st = mount_->status();
  EXPECT_EQ(st.files_sent, 201u);
  EXPECT_EQ(st.files_received, 1u);
  EXPECT_EQ(st.bytes_sent, big.size() + 200 * 7);
}

// Issue 11: both directions carrying bulk data at once. A side that blocks writing while its peer,
// equally busy writing, does not read, stalls both for ever; here 200 MiB are written locally while
// 200 MiB are written in the replica (as a container would), and everything must arrive, both
// ways, within the bound.
TEST_F(SyncOverGrpcTest, BulkDataBothWaysAtOnce) {
  const offload::test::PatternFiles up("up/u", 4, 1000, 50ull << 20);
  const offload::test::PatternFiles down("down/d", 4, 2000, 50ull << 20);
  start_mount();
  ASSERT_TRUE(ready().first);
  const long rss_before = offload::test::peak_rss_kib();

  auto t0 = std::chrono::steady_clock::now();
  bool wrote_up = false, wrote_down = false;
  std::thread local_writer([&] { wrote_up = up.write(local_); });
  std::thread container_writer([&] { wrote_down = down.write(replica()); });
  local_writer.join();
  container_writer.join();
  ASSERT_TRUE(wrote_up && wrote_down);

  auto all_there = [&](const fs::path& side) { return up.all_there(side) && down.all_there(side); };
  const auto deadline = t0 + 120s;
  bool in_sync = false;
  while (!in_sync && std::chrono::steady_clock::now() < deadline) {
    if (all_there(local_) && all_there(replica())) {
      // Every file has arrived; a flush (a barrier both ways) says nothing else is in flight.
      in_sync = flush_within(deadline - std::chrono::steady_clock::now()) &&
                mount_->status().state == sync::MountStatus::State::watching;
    } else {
      std::this_thread::sleep_for(50ms);
    }
  }
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - t0);
  auto st = mount_->status();
  std::cout << "bulk both ways: " << (in_sync ? "in sync" : "NOT in sync") << " after "
            << took.count() << " ms; sent " << st.files_sent << " files / " << st.bytes_sent
            << " bytes, received " << st.files_received << " files / " << st.bytes_received
            << " bytes; peak RSS " << rss_before / 1024 << " MiB before, "
            << offload::test::peak_rss_kib() / 1024 << " MiB after\n";
  RecordProperty("milliseconds", static_cast<int>(took.count()));
  RecordProperty("peak_rss_kib", static_cast<int>(offload::test::peak_rss_kib()));
  if (!in_sync) {
    // Break the calls (the runner cancels its replicas) so that the mount can stop.
    client_->destroy_session("the bulk test is over");
    FAIL() << "not in sync within 120 s (state " << sync::to_string(st.state) << ", " << st.error
           << ")";
  }
  for (const auto& side : {local_, replica()}) {
    EXPECT_EQ(up.check(side), "");
    EXPECT_EQ(down.check(side), "");
  }
  // The same entries (type, mode, size, mtime) on both sides, and nothing else.
  auto left = sync::scan_tree(local_, {}).entries;
  auto right = sync::scan_tree(replica(), {}).entries;
  EXPECT_EQ(left.size(), right.size());
  for (const auto& [path, entry] : left) {
    auto it = right.find(path);
    ASSERT_NE(it, right.end()) << path;
    EXPECT_TRUE(it->second.same_as(entry)) << path;
  }
  EXPECT_TRUE(st.error.empty()) << st.error;
  // Neither side holds a file, or a backlog of pieces, in memory: each buffers a few messages of
  // 256 KiB (inbox, outbox) plus what gRPC's flow-control windows let in, whatever moves (200 MiB
  // each way here). Measured: 27 to 75 MiB more at the peak (the windows follow the measured
  // bandwidth-delay product, and freed pieces stay with the allocator); a side that held what it
  // received would need 200 MiB.
  if (offload::test::kResidentSetIsMeaningful) {
    EXPECT_LT(offload::test::peak_rss_kib() - rss_before, 128 * 1024);
  }
}

TEST_F(SyncOverGrpcTest, DestroyingTheSessionEndsItsSyncCalls) {
  write(local_ / "a.txt", "a");
  start_mount();
  ASSERT_TRUE(ready().first);
  auto t0 = std::chrono::steady_clock::now();
  client_->destroy_session("test over");
  // The runner stops its replicas before tearing down; nothing waits for a timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s);
  bool left = false;
  for (int i = 0; i < 500 && !left; ++i) {
    auto st = mount_->status().state;
    left = st == sync::MountStatus::State::reconnecting || st == sync::MountStatus::State::failed;
    if (!left) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(left) << sync::to_string(mount_->status().state);
  EXPECT_FALSE(flush());  // a mount that is not connected does not hold anyone up
}

// Issue 11: a session's Sync calls are limited; one more is refused with a status naming the
// flag, and a call that ended gives its place back.
TEST_F(SyncOverGrpcTest, SyncCallsPerSessionAreLimitedAndEndedOnesFreeTheirPlace) {
  client_.reset();
  runner_ = std::make_unique<InProcessRunner>(
      dir_ / "limited", [](runner::RunnerOptions& o) { o.max_sync_calls_per_session = 2; });
  client_ = std::make_unique<daemon::RunnerClient>(
      daemon::RunnerEndpoint{runner_->address(), runner_->identity.fingerprint, runner_->token});
  auto created = client_->create_session("limited", 10s);
  client_->attach(created.session_id(), created.session_token());

  RawSync first(*client_), second(*client_);
  ASSERT_TRUE(first.open("00000000000000a1"));
  ASSERT_TRUE(second.open("00000000000000a2"));
  {
    RawSync third(*client_);
    EXPECT_FALSE(third.open("00000000000000a3"));
    auto status = third.stream->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    EXPECT_NE(status.error_message().find("--max-sync-calls-per-session"), std::string::npos)
        << status.error_message();
  }
  auto ended = first.end();
  EXPECT_TRUE(ended.ok()) << ended.error_message();
  // The place comes back once the runner's side of the call is done too: bounded retries.
  bool reopened = false;
  for (int i = 0; i < 50 && !reopened; ++i) {
    auto again = std::make_unique<RawSync>(*client_);
    reopened = again->open("00000000000000a3");
    if (reopened) {
      EXPECT_TRUE(again->end().ok());
    } else {
      again->stream->Finish();
      std::this_thread::sleep_for(100ms);
    }
  }
  EXPECT_TRUE(reopened) << "an ended Sync call did not give its place back";
  EXPECT_TRUE(second.end().ok());
}

// Issue 11: what a session's Sync calls received and their replicas have not taken yet is held
// to --max-sync-buffer-per-session (plus one message per call), however fast the client sends,
// and nothing is lost to the pauses. The replicas are held back (as busy ones would be) while
// two calls each send a 12 MiB file in 1 MiB messages: without the budget each call's inbox alone
// would take in 16 of them.
void SyncOverGrpcTest::sends_are_held_to_the_budget(std::size_t budget, bool cancel_first) {
  const std::size_t kBudget = budget;
  constexpr std::size_t kPiece = 1 << 20;
  constexpr int kPieces = 12, kCalls = 2;
  client_.reset();
  runner_ = std::make_unique<InProcessRunner>(
      dir_ / "budget", [=](runner::RunnerOptions& o) { o.max_sync_buffer_per_session = kBudget; });
  client_ = std::make_unique<daemon::RunnerClient>(
      daemon::RunnerEndpoint{runner_->address(), runner_->identity.fingerprint, runner_->token});
  auto created = client_->create_session("budget", 10s);
  client_->attach(created.session_id(), created.session_token());
  auto session = runner_->service().find_session(created.session_id());
  ASSERT_TRUE(session);
  auto& syncs = session->syncs();
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  bool released_once = false;
  auto release_replicas = [&] {
    if (!released_once) release.set_value();
    released_once = true;
  };
  syncs.set_replica_gate([released] { released.wait_for(60s); });

  auto piece = [](int call, int i) {
    std::string s(kPiece, '\0');
    for (std::size_t k = 0; k < s.size(); ++k)
      s[k] = static_cast<char>((k * 2654435761u >> 24) + call * 31 + i * 7);
    return s;
  };
  auto mount_id = [](int call) { return "00000000000000b" + std::to_string(call); };
  std::vector<std::unique_ptr<RawSync>> calls;
  std::vector<std::thread> writers;
  std::atomic<int> written{0};
  for (int c = 0; c < kCalls; ++c) {
    calls.push_back(std::make_unique<RawSync>(*client_));
    writers.emplace_back([&, c, stream = calls.back()->stream.get()] {
      v1::SyncMessage m;
      m.mutable_open()->set_mount_id(mount_id(c));
      m.mutable_open()->set_uid(::geteuid());
      m.mutable_open()->set_gid(::getegid());
      bool ok = stream->Write(m);
      m.Clear();
      auto* change = m.mutable_change();
      change->mutable_entry()->set_path("big.bin");
      change->mutable_entry()->set_type(v1::SyncEntry::TYPE_FILE);
      change->mutable_entry()->set_mode(0644);
      change->mutable_entry()->set_size(std::uint64_t{kPiece} * kPieces);
      change->mutable_entry()->set_mtime_ns(1'700'000'000'000'000'000);
      change->set_data(piece(c, 0));
      change->set_more(true);
      ok = ok && stream->Write(m);
      for (int i = 1; i < kPieces && ok; ++i) {
        m.Clear();
        m.mutable_data()->set_data(piece(c, i));
        m.mutable_data()->set_last(i == kPieces - 1);
        ok = stream->Write(m);
      }
      m.Clear();
      m.mutable_barrier()->set_id(7);
      if (ok && stream->Write(m)) ++written;
    });
  }
  // The runner reads until the session's budget is full, then stops: the clients' writes wait in
  // the flow-control windows. Bounded waits; the pause gives an overshoot the time to show.
  bool full = false;
  for (int i = 0; i < 1000 && !full; ++i) {
    full = syncs.buffered_bytes() >= kBudget;
    if (!full) std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(500ms);
  const std::size_t bound = kBudget + kCalls * (kPiece + 64);
  EXPECT_TRUE(full) << "buffered " << syncs.buffered_bytes();
  EXPECT_LE(syncs.peak_buffered_bytes(), bound);
  EXPECT_LE(syncs.buffered_bytes(), bound);

  if (cancel_first) calls[0]->ctx.TryCancel();

  // Once the replicas take their messages, the rest flows in and arrives intact.
  release_replicas();
  for (auto& w : writers) w.join();
  EXPECT_EQ(written.load(), cancel_first ? kCalls - 1 : kCalls);
  for (int c = 0; c < kCalls; ++c) {
    if (c == 0 && cancel_first) {
      EXPECT_EQ(calls[c]->end().error_code(), grpc::StatusCode::CANCELLED);
      continue;
    }
    v1::SyncMessage m;
    bool acked = false;
    while (!acked && calls[c]->stream->Read(&m)) acked = m.has_barrier_ack() && m.barrier_ack().id() == 7;
    EXPECT_TRUE(acked) << "call " << c;
    auto status = calls[c]->end();
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::string expected;
    for (int i = 0; i < kPieces; ++i) expected += piece(c, i);
    EXPECT_TRUE(read(dir_ / "budget" / "sync" / mount_id(c) / "big.bin") == expected) << "call " << c;
  }
  EXPECT_LE(syncs.peak_buffered_bytes(), bound);
  // Ended calls hold nothing: their inboxes gave everything back.
  bool empty = false;
  for (int i = 0; i < 500 && !empty; ++i) {
    empty = syncs.size() == 0 && syncs.buffered_bytes() == 0;
    if (!empty) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(empty) << syncs.size() << " calls, " << syncs.buffered_bytes() << " bytes";
}

TEST_F(SyncOverGrpcTest, ASessionBuffersAtMostItsSyncBudgetPlusOneMessagePerCall) {
  sends_are_held_to_the_budget(4 << 20);
}

// A call that ends while the session is at its budget gives its bytes back: the other goes on.
TEST_F(SyncOverGrpcTest, ACallEndedAtTheSyncBudgetGivesItsBytesBack) {
  sends_are_held_to_the_budget(4 << 20, true);
}

// A message larger than the whole budget still gets in when the session holds nothing: the calls
// take turns instead of stalling.
TEST_F(SyncOverGrpcTest, MessagesLargerThanTheSyncBudgetStillFlow) {
  sends_are_held_to_the_budget(512 << 10);
}

TEST_F(SyncOverGrpcTest, AWrongSessionTokenIsRefused) {
  client_->attach(client_->session_id(), random_hex(32));
  write(local_ / "a.txt", "a");
  start_mount();
  auto [ok, message] = ready();
  EXPECT_FALSE(ok);
  EXPECT_NE(message.find("did not complete"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(replica()));
}

}  // namespace
}  // namespace offload::testing
