// Status watchers (`docker offload status --watch`): SessionManager's watch/unwatch contract and
// the WatchStatus stream of the control service ending while a status change is being sent.
//
// A change is made by a start on an account whose provider fails: the manager reports Starting,
// then Stopped. The first watcher blocks on Starting, which holds notify() between copying the
// watchers and calling the next ones: exactly where the race of issue 11 lives.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <boost/asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "offload/daemon/control_service.h"
#include "offload/daemon/session_manager.h"
#include "temp_dir.h"

namespace offload::daemon {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class FailingProvider final : public Provider {
 public:
  std::string type() const override { return "test"; }
  std::string description() const override { return "fails"; }
  ProvisionedRunner provision(std::chrono::milliseconds) override {
    throw ProvisionError("no runner in this test");
  }
  void release(const ProvisionedRunner&) override {}
};

// Bounded polling for a condition another thread makes true.
template <class F>
bool eventually(F condition, std::chrono::milliseconds limit = 10s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

class WatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "docker");
    OffloadConfig config;
    config.default_account = "fail";
    SessionManager::Providers providers;
    providers["fail"] = std::make_unique<FailingProvider>();
    sessions_ = std::make_unique<SessionManager>(StatePaths(dir_ / "docker"), config,
                                                 std::move(providers), io_.get_executor());
    // Registered first, so notify() calls it before any other watcher.
    sessions_->watch([this](const v1::SessionStatus& s) {
      if (s.state() != v1::DAEMON_STATE_STARTING || blocked_once_) return;
      blocked_once_ = true;
      blocking_.set_value();
      // Bounded: a broken test must not hang.
      release_.get_future().wait_for(10s);
    });
  }
  void TearDown() override {
    release();
    if (starter_.joinable()) starter_.join();
    sessions_.reset();
  }

  void start_a_start() {
    starter_ = std::thread([this] {
      try {
        sessions_->start(v1::StartRequest());
      } catch (const ControlError&) {
      }
    });
  }
  // Starts a start (that fails) on a thread; returns once notify() is held in the first
  // watcher with the other watchers already copied.
  void hold_a_notification() {
    start_a_start();
    ASSERT_EQ(blocking_.get_future().wait_for(10s), std::future_status::ready);
  }
  void release() {
    if (!released_) {
      released_ = true;
      release_.set_value();
    }
  }
  void finish_start() {
    release();
    starter_.join();
  }

  test::TempDir dir_{"offload-watch"};
  boost::asio::io_context io_;
  std::unique_ptr<SessionManager> sessions_;
  bool blocked_once_ = false;
  std::promise<void> blocking_, release_;
  bool released_ = false;
  std::thread starter_;
};

TEST_F(WatchTest, AWatcherIsNotCalledAfterUnwatchReturned) {
  std::atomic<bool> unwatched{false};
  std::atomic<int> calls_after_unwatch{0};
  int id = sessions_->watch([&](const v1::SessionStatus&) {
    if (unwatched) ++calls_after_unwatch;
  });
  hold_a_notification();
  sessions_->unwatch(id);
  unwatched = true;
  finish_start();
  EXPECT_EQ(calls_after_unwatch.load(), 0)
      << "notify() called a watcher whose unwatch() had returned";
}

TEST_F(WatchTest, UnwatchWaitsForACallInProgressOnAnotherThread) {
  // The watcher itself is held this time: its owner unwatches (and would delete itself) on
  // another thread meanwhile, as StatusWriter::OnDone does on a gRPC thread.
  std::promise<void> in_call, leave_call;
  auto leave = leave_call.get_future().share();
  std::atomic<bool> in_progress{false}, held_once{false};
  int id = sessions_->watch([&](const v1::SessionStatus& s) {
    if (s.state() != v1::DAEMON_STATE_STARTING || held_once.exchange(true)) return;
    in_progress = true;
    in_call.set_value();
    leave.wait_for(10s);
    in_progress = false;
  });
  release();  // the first watcher does not hold this time
  start_a_start();
  ASSERT_EQ(in_call.get_future().wait_for(10s), std::future_status::ready);
  std::atomic<bool> running_when_unwatch_returned{false};
  std::thread owner([&] {
    sessions_->unwatch(id);
    running_when_unwatch_returned = in_progress.load();
  });
  // Gives a broken unwatch() the time to return early; a correct one waits for the call.
  std::this_thread::sleep_for(100ms);
  leave_call.set_value();
  owner.join();
  starter_.join();
  EXPECT_FALSE(running_when_unwatch_returned.load())
      << "unwatch() returned while the watcher was still running";
}

TEST_F(WatchTest, AWatcherMayUnwatchItselfFromItsOwnCall) {
  // gRPC may run a reaction inline: StatusWriter's OnDone (unwatch) inside its own push().
  release();
  int id = 0;
  std::atomic<int> calls{0};
  id = sessions_->watch([&](const v1::SessionStatus&) {
    if (id == 0) return;  // the first call, from watch() itself
    ++calls;
    sessions_->unwatch(id);
  });
  start_a_start();
  ASSERT_TRUE(eventually([&] { return sessions_->watcher_count() == 1; }))
      << "unwatch() from the watcher hangs";
  starter_.join();
  EXPECT_EQ(calls.load(), 1);
}

// The whole `status --watch` path: the client goes away while a change is on its way to it.
// Before the fix this was a use after free that AddressSanitizer reports (StatusWriter::push
// through the copy notify() made, on the writer OnDone had deleted).
TEST_F(WatchTest, AWatchStreamEndingWhileAChangeIsSentIsNeverUsedAfterItsEnd) {
  ControlService service(*sessions_, StatePaths(dir_ / "docker"));
  std::string socket = "unix:" + (dir_ / "control.sock").string();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(socket, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  ASSERT_TRUE(server);
  {
    auto stub =
        v1::Control::NewStub(grpc::CreateChannel(socket, grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    auto reader = stub->WatchStatus(&ctx, v1::StatusRequest());
    v1::SessionStatus first;
    ASSERT_TRUE(reader->Read(&first));  // the writer is registered now
    ASSERT_EQ(sessions_->watcher_count(), 2u);

    hold_a_notification();  // the writer's watcher is copied, not called yet
    ctx.TryCancel();
    v1::SessionStatus more;
    while (reader->Read(&more)) {
    }
    reader->Finish();
    // The server ended the call: OnDone unwatched the writer and deleted it.
    ASSERT_TRUE(eventually([&] { return sessions_->watcher_count() == 1; }));
  }
  // notify() goes on to the copied watcher of the deleted writer.
  finish_start();
  server->Shutdown(std::chrono::system_clock::now() + 5s);
  EXPECT_EQ(sessions_->watcher_count(), 1u);
}

}  // namespace
}  // namespace offload::daemon
