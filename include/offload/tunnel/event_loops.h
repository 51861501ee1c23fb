// Event loops of one thread each, for the data channel's connections.
//
// On an io_context that several threads run, every completion may resume on another thread
// than the one that started the operation: the thread that ran epoll queues the handler and
// wakes an idle one to run it. Profiled on one bulk stream, that hand-off (futex wake-ups and
// context switches) was a third of offloadd's and the runner's CPU. Here a connection, and
// every socket its streams use, lives on one loop run by one thread: a completion resumes on
// the thread that polled it. Connections are spread over the loops, one per core.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace offload::tunnel {

class EventLoops {
 public:
  // `count` loops, each run by a thread named `name`-N.
  EventLoops(std::size_t count, const std::string& name);
  // Stops the loops and joins their threads; what still runs there is abandoned.
  ~EventLoops();
  EventLoops(const EventLoops&) = delete;
  EventLoops& operator=(const EventLoops&) = delete;

  // The next loop, round robin.
  boost::asio::any_io_executor next();
  std::size_t size() const { return loops_.size(); }
  // Whether `executor` is one of these loops'.
  bool owns(const boost::asio::any_io_executor& executor) const;

  // Stops the loops (what runs there now finishes its handler; the rest is abandoned) and joins
  // their threads.
  void stop();

  // The process's data plane: one loop per core, at most four, started on first use. It is
  // never destroyed (connections may still be finishing while static objects are torn down),
  // but exit() stops it before it tears down the statics its handlers use, spdlog's logger
  // first among them.
  static EventLoops& data_plane();

 private:
  struct Loop {
    Loop() : io(1), work(io.get_executor()) {}  // 1: one thread runs it
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work;
    std::thread thread;
  };
  std::vector<std::unique_ptr<Loop>> loops_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace offload::tunnel
