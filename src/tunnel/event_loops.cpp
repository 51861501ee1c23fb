#include "offload/tunnel/event_loops.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

namespace offload::tunnel {

EventLoops::EventLoops(std::size_t count, const std::string& name) {
  for (std::size_t i = 0; i < std::max<std::size_t>(count, 1); ++i) {
    auto loop = std::make_unique<Loop>();
    auto* io = &loop->io;
    loop->thread = std::thread([io] { io->run(); });
    // Named for `top -H` and perf; Linux allows 15 characters.
    const std::string thread_name = (name + "-" + std::to_string(i)).substr(0, 15);
    pthread_setname_np(loop->thread.native_handle(), thread_name.c_str());
    loops_.push_back(std::move(loop));
  }
}

EventLoops::~EventLoops() { stop(); }

void EventLoops::stop() {
  for (auto& loop : loops_) {
    loop->work.reset();
    loop->io.stop();
  }
  // A loop's own thread cannot join itself (exit() called from a handler): it is left running.
  for (auto& loop : loops_)
    if (loop->thread.joinable() && loop->thread.get_id() != std::this_thread::get_id())
      loop->thread.join();
}

boost::asio::any_io_executor EventLoops::next() {
  const std::size_t i = next_.fetch_add(1, std::memory_order_relaxed) % loops_.size();
  return loops_[i]->io.get_executor();
}

bool EventLoops::owns(const boost::asio::any_io_executor& executor) const {
  for (const auto& loop : loops_)
    if (executor == boost::asio::any_io_executor(loop->io.get_executor())) return true;
  return false;
}

EventLoops& EventLoops::data_plane() {
  static EventLoops* loops = [] {
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    // spdlog's registry first: exit() tears statics down in the reverse order of their making,
    // so the loops (stopped below) stop before the logger their handlers use goes.
    spdlog::default_logger_raw();
    auto* made = new EventLoops(std::min<std::size_t>(cores, 4), "data-plane");
    std::atexit([] { data_plane().stop(); });
    return made;
  }();
  return *loops;
}

}  // namespace offload::tunnel
