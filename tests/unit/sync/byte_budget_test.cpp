#include "offload/sync/byte_budget.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "offload/sync/wire.h"

namespace offload::sync {
namespace {

using namespace std::chrono_literals;

TEST(ByteBudget, TakesWithinTheLimitAndCountsThePeak) {
  ByteBudget b(100);
  EXPECT_TRUE(b.try_take(60));
  EXPECT_TRUE(b.try_take(40));
  EXPECT_FALSE(b.try_take(1));
  EXPECT_EQ(b.used(), 100u);
  EXPECT_FALSE(b.has_room());
  b.give_back(70);
  EXPECT_EQ(b.used(), 30u);
  EXPECT_TRUE(b.has_room());
  EXPECT_EQ(b.peak(), 100u);
}

TEST(ByteBudget, AnEmptyBudgetAdmitsOneItemLargerThanItsLimit) {
  // Otherwise a single message above the limit would never get in, and its call would hang.
  ByteBudget b(10);
  EXPECT_TRUE(b.try_take(50));
  EXPECT_FALSE(b.try_take(1));
  b.give_back(50);
  EXPECT_EQ(b.used(), 0u);
  EXPECT_TRUE(b.has_room());
}

TEST(ByteBudget, ForceTakeMayGoOverAndZeroMeansUnlimited) {
  ByteBudget b(10);
  b.force_take(25);
  EXPECT_EQ(b.used(), 25u);
  EXPECT_FALSE(b.has_room());
  ByteBudget unlimited;
  unlimited.force_take(std::size_t{1} << 40);
  EXPECT_TRUE(unlimited.has_room());
  EXPECT_TRUE(unlimited.try_take(std::size_t{1} << 40));
}

TEST(ByteBudget, AWaiterIsCalledOnceWhenRoomComesBack) {
  ByteBudget b(10);
  int key = 0;
  int called = 0;
  EXPECT_TRUE(b.wait_for_room(&key, [&] { ++called; }));  // room now: not kept
  b.force_take(30);
  EXPECT_FALSE(b.wait_for_room(&key, [&] { ++called; }));
  b.give_back(15);  // 15 used: still over
  EXPECT_EQ(called, 0);
  b.give_back(6);  // 9 used
  EXPECT_EQ(called, 1);
  b.give_back(9);
  EXPECT_EQ(called, 1);  // once only
}

TEST(ByteBudget, EveryWaiterIsCalledAndMayWaitAgainFromItsCallback) {
  ByteBudget b(10);
  b.force_take(20);
  int a = 0, c = 0;
  int a_calls = 0, c_calls = 0;
  ASSERT_FALSE(b.wait_for_room(&a, [&] { ++a_calls; }));
  ASSERT_FALSE(b.wait_for_room(&c, [&] {
    ++c_calls;
    // Brings in more, which fills the budget again, and waits once more.
    b.force_take(10);
    EXPECT_FALSE(b.wait_for_room(&c, [&] { ++c_calls; }));
  }));
  b.give_back(15);
  EXPECT_EQ(a_calls, 1);
  EXPECT_EQ(c_calls, 1);
  EXPECT_EQ(b.used(), 15u);
  b.give_back(15);
  EXPECT_EQ(c_calls, 2);
}

TEST(ByteBudget, AWaiterThatStoppedWaitingIsNotCalled) {
  ByteBudget b(10);
  b.force_take(20);
  int key = 0;
  bool called = false;
  ASSERT_FALSE(b.wait_for_room(&key, [&] { called = true; }));
  b.stop_waiting(&key);
  b.give_back(20);
  EXPECT_FALSE(called);
}

TEST(ByteBudget, StopWaitingFromItsOwnCallbackDoesNotWaitForItself) {
  ByteBudget b(10);
  b.force_take(20);
  int key = 0;
  bool called = false;
  ASSERT_FALSE(b.wait_for_room(&key, [&] {
    b.stop_waiting(&key);
    called = true;
  }));
  b.give_back(20);
  EXPECT_TRUE(called);
}

// A party that goes away stops waiting first: if its callback is running on the thread that
// gave bytes back, stop_waiting returns only once the callback is over.
TEST(ByteBudget, StopWaitingWaitsForACallbackRunningOnAnotherThread) {
  ByteBudget b(10);
  b.force_take(20);
  int key = 0;
  std::promise<void> entered, release;
  auto released = release.get_future();
  std::atomic<bool> finished{false};
  ASSERT_FALSE(b.wait_for_room(&key, [&] {
    entered.set_value();
    released.wait();
    finished = true;
  }));
  std::thread giver([&] { b.give_back(20); });
  entered.get_future().wait();
  auto stopped = std::async(std::launch::async, [&] {
    b.stop_waiting(&key);
    return finished.load();  // what the party sees when it may go away
  });
  EXPECT_EQ(stopped.wait_for(50ms), std::future_status::timeout);
  release.set_value();
  ASSERT_EQ(stopped.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(stopped.get());
  giver.join();
}

// Producers that check for room before each item and wait when there is none, against a
// consumer on another thread: none waits for ever (no lost wake-up) and the budget never holds
// more than its limit plus one item per producer.
TEST(ByteBudget, ProducersAndAConsumerNeverLoseAWakeUpAndStayWithinOneItemEach) {
  constexpr int kProducers = 4, kItems = 2000;
  constexpr std::size_t kLimit = 8;
  ByteBudget b(kLimit);
  std::mutex mu;
  std::condition_variable cv;
  int queued = 0, consumed = 0;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&] {
      std::mutex wake_mu;
      std::condition_variable wake;
      bool woken = false;
      for (int i = 0; i < kItems; ++i) {
        std::unique_lock wl(wake_mu);
        woken = false;
        if (!b.wait_for_room(&wake, [&] {
              std::lock_guard l(wake_mu);
              woken = true;
              wake.notify_one();
            })) {
          // Bounded: a lost wake-up fails the test instead of hanging it.
          if (!wake.wait_for(wl, 10s, [&] { return woken; })) {
            ADD_FAILURE() << "a producer was never woken";
            b.stop_waiting(&wake);
            return;
          }
        }
        wl.unlock();
        b.force_take(1);
        std::lock_guard l(mu);
        ++queued;
        cv.notify_one();
      }
      b.stop_waiting(&wake);
    });
  }
  std::thread consumer([&] {
    std::unique_lock l(mu);
    while (consumed < kProducers * kItems) {
      if (!cv.wait_for(l, 10s, [&] { return queued > 0; })) {
        ADD_FAILURE() << "the consumer starved";
        return;
      }
      --queued;
      ++consumed;
      l.unlock();
      b.give_back(1);
      l.lock();
    }
  });
  for (auto& t : producers) t.join();
  consumer.join();
  EXPECT_EQ(consumed, kProducers * kItems);
  EXPECT_EQ(b.used(), 0u);
  EXPECT_LE(b.peak(), kLimit + kProducers);
}

v1::SyncMessage data_message(std::size_t bytes) {
  v1::SyncMessage m;
  m.mutable_data()->set_data(std::string(bytes, 'x'));
  return m;
}

TEST(InboxBudget, QueuedMessagesCountUntilPoppedOrTheInboxGoes) {
  auto budget = std::make_shared<ByteBudget>(1000);
  auto one = data_message(400);
  const std::size_t size = one.ByteSizeLong();
  {
    Inbox inbox(8);
    inbox.set_budget(budget);
    ASSERT_TRUE(inbox.try_push(one));
    ASSERT_TRUE(inbox.push(data_message(400)));
    ASSERT_TRUE(inbox.push(data_message(400)));  // over the limit: the inbox does not refuse
    EXPECT_EQ(budget->used(), 3 * size);
    EXPECT_FALSE(budget->has_room());
    int key = 0;
    bool room = false;
    ASSERT_FALSE(budget->wait_for_room(&key, [&] { room = true; }));
    ASSERT_TRUE(inbox.try_pop());
    EXPECT_EQ(budget->used(), 2 * size);
    EXPECT_TRUE(room);  // the pop gave the bytes back and woke the waiter
    inbox.close();
  }
  // Destroyed with a message never popped (a call that ended): its bytes come back too.
  EXPECT_EQ(budget->used(), 0u);
  EXPECT_EQ(budget->peak(), 3 * size);
}

}  // namespace
}  // namespace offload::sync
