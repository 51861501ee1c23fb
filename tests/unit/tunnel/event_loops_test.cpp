// The process-wide data plane at exit: its loops are never destroyed (connections may still be
// finishing), but they must stop before the statics their handlers use are torn down. A
// handler that logged while exit() ran used to touch spdlog's destroyed logger (a segfault at
// exit, seen as a flaky ListenerDiffing test).
#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <thread>

#include "offload/tunnel/event_loops.h"

namespace offload::tunnel {
namespace {

// Logs and posts itself again: a loop that is always busy, as one serving connections is.
struct Chatter {
  boost::asio::any_io_executor loop;
  std::atomic<int>* rounds;
  void operator()() const {
    spdlog::info("still serving, round {}", rounds->load());
    ++*rounds;
    boost::asio::post(loop, *this);
  }
};

TEST(EventLoopsDeathTest, TheDataPlaneStopsBeforeTheLoggerIsTornDownAtExit) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (int attempt = 0; attempt < 5; ++attempt) {
    EXPECT_EXIT(
        {
          spdlog::set_default_logger(std::make_shared<spdlog::logger>(
              "exit-test", std::make_shared<spdlog::sinks::null_sink_mt>()));
          static std::atomic<int> rounds{0};
          auto& loops = EventLoops::data_plane();
          for (std::size_t i = 0; i < loops.size(); ++i) {
            auto loop = loops.next();
            boost::asio::post(loop, Chatter{loop, &rounds});
          }
          while (rounds < 1000) std::this_thread::yield();
          std::exit(0);
        },
        ::testing::ExitedWithCode(0), "")
        << "attempt " << attempt;
  }
}

}  // namespace
}  // namespace offload::tunnel
