// Two FrameStreams connected in memory, for unit tests of the pumps and the API proxy without
// gRPC: what one end writes the other reads, in order.
//
// It behaves like the gRPC streams where the pumps can tell:
//  - an operation never completes inside the call that starts it: completions are signalled
//    from `transport` (gRPC signals them from its own threads), and FrameStream then hands them
//    to the handler's executor;
//  - it is bounded: each direction holds at most `capacity` frames, and a write completes only
//    once its frame fits, so a reader that does not read stalls the writer (back-pressure);
//  - cancel() breaks the call: both ends' pending and later operations complete with false and
//    frames not yet read are lost; finish() ends it like a server's Finish: the finishing end is
//    done at once, the other reads what was sent before, then false; writes fail from then on;
//  - a read after the end completes with false again.
// Failures can be injected: the Nth write from now breaks the call, or reads break it after N
// more frames. All state is behind one mutex, so tests may cancel from any thread; an end must
// only be destroyed while `transport` runs nothing.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "offload/tunnel/frame_stream.h"

namespace offload::tunnel::testing {

class MemoryFrameStream final : public FrameStream {
 public:
  // The two ends: what `first` writes `second` reads, and the other way round.
  static std::pair<std::unique_ptr<MemoryFrameStream>, std::unique_ptr<MemoryFrameStream>>
  make_pair(boost::asio::any_io_executor transport, std::size_t capacity = 2) {
    auto link = std::make_shared<Link>(std::move(transport));
    link->capacity = capacity == 0 ? 1 : capacity;
    std::unique_ptr<MemoryFrameStream> a(new MemoryFrameStream(link, 0));
    std::unique_ptr<MemoryFrameStream> b(new MemoryFrameStream(link, 1));
    return {std::move(a), std::move(b)};
  }

  // Destroying an end breaks the call, as when one side of a gRPC call dies.
  ~MemoryFrameStream() override {
    std::lock_guard lock(link_->mu);
    break_call("the other end was destroyed");
    link_->ends[side_] = nullptr;
  }

  void cancel(const std::string& reason) override {
    std::lock_guard lock(link_->mu);
    ++cancels_;
    if (!cancel_reason_) cancel_reason_ = reason;
    break_call(reason);
  }

  // Ends the call from this end (a server's Finish).
  void finish() {
    std::lock_guard lock(link_->mu);
    if (link_->broken || link_->finished) return;
    link_->finished = true;
    Direction& in = link_->dirs[1 - side_];
    in.queue.clear();  // frames for the end that finished are never read
    fail_parked(in);
    // The peer reads what this end sent; only a read with nothing left to get ends now.
    Direction& out = link_->dirs[side_];
    if (out.queue.empty() && out.parked_read) {
      out.parked_read = nullptr;
      signal(1 - side_, &MemoryFrameStream::read_done, false);
    }
    if (out.parked_write) {
      out.parked_write = nullptr;
      signal(side_, &MemoryFrameStream::write_done, false);
    }
  }

  // Injected failures. The `nth` write from now (1: the next) completes with false and breaks
  // the call; after `frames` more frames have been read, the next read does the same.
  void fail_nth_write(std::size_t nth) {
    std::lock_guard lock(link_->mu);
    writes_until_failure_ = nth;
  }
  void fail_reads_after(std::size_t frames) {
    std::lock_guard lock(link_->mu);
    reads_until_failure_ = frames;
  }

  // What the test may look at.
  bool broken() const {
    std::lock_guard lock(link_->mu);
    return link_->broken;
  }
  // Why the call broke ("" while it has not).
  std::string break_reason() const {
    std::lock_guard lock(link_->mu);
    return link_->reason;
  }
  // How often cancel() was called on this end, and the first reason it was given.
  int cancels() const {
    std::lock_guard lock(link_->mu);
    return cancels_;
  }
  std::optional<std::string> cancel_reason() const {
    std::lock_guard lock(link_->mu);
    return cancel_reason_;
  }
  // Frames this end wrote that the peer has not read yet (at most the capacity).
  std::size_t queued() const {
    std::lock_guard lock(link_->mu);
    return link_->dirs[side_].queue.size();
  }
  // Whether a write of this end waits for room.
  bool write_waiting() const {
    std::lock_guard lock(link_->mu);
    return link_->dirs[side_].parked_write != nullptr;
  }
  std::size_t frames_written() const {
    std::lock_guard lock(link_->mu);
    return frames_written_;
  }

 protected:
  void start_read(TunnelFrame* frame) override {
    std::lock_guard lock(link_->mu);
    Direction& in = link_->dirs[1 - side_];
    if (reads_until_failure_ && (*reads_until_failure_)-- == 0) {
      reads_until_failure_.reset();
      break_call("injected read failure");
    }
    if (link_->broken) return signal(side_, &MemoryFrameStream::read_done, false);
    if (!in.queue.empty()) {
      take(in, *frame);
      return signal(side_, &MemoryFrameStream::read_done, true);
    }
    if (link_->finished) return signal(side_, &MemoryFrameStream::read_done, false);
    in.parked_read = frame;
  }

  void start_write(const TunnelFrame* frame) override {
    std::lock_guard lock(link_->mu);
    Direction& out = link_->dirs[side_];
    if (writes_until_failure_ && --*writes_until_failure_ == 0) {
      writes_until_failure_.reset();
      break_call("injected write failure");
    }
    if (link_->broken || link_->finished)
      return signal(side_, &MemoryFrameStream::write_done, false);
    if (out.queue.size() >= link_->capacity) {
      out.parked_write = frame;
      return;
    }
    put(out, *frame);
    signal(side_, &MemoryFrameStream::write_done, true);
  }

 private:
  // Frames written by one end for the other, and the operations waiting on them.
  struct Direction {
    std::deque<TunnelFrame> queue;
    const TunnelFrame* parked_write = nullptr;  // waits for room
    TunnelFrame* parked_read = nullptr;         // waits for a frame
  };
  struct Link {
    explicit Link(boost::asio::any_io_executor t) : transport(std::move(t)) {}
    boost::asio::any_io_executor transport;
    std::mutex mu;
    std::size_t capacity = 2;
    Direction dirs[2];  // dirs[i]: written by end i
    MemoryFrameStream* ends[2] = {nullptr, nullptr};
    bool broken = false;
    bool finished = false;
    std::string reason;
  };

  MemoryFrameStream(std::shared_ptr<Link> link, int side) : link_(std::move(link)), side_(side) {
    link_->ends[side_] = this;
  }

  // A copy of `frame` goes into `out` (written by this end); a parked reader gets it at once.
  void put(Direction& out, const TunnelFrame& frame) {
    ++frames_written_;
    out.queue.push_back(frame);
    if (out.parked_read) {
      TunnelFrame* dst = std::exchange(out.parked_read, nullptr);
      if (auto* peer = link_->ends[1 - side_]) {
        peer->take(out, *dst);
        signal(1 - side_, &MemoryFrameStream::read_done, true);
      }
    }
  }

  // The oldest frame of `in` (written by the peer) into `frame`; that makes room for the
  // peer's parked write, which then completes.
  void take(Direction& in, TunnelFrame& frame) {
    frame = std::move(in.queue.front());
    in.queue.pop_front();
    if (in.parked_write) {
      const TunnelFrame* src = std::exchange(in.parked_write, nullptr);
      if (auto* peer = link_->ends[1 - side_]) {
        peer->put(in, *src);
        signal(1 - side_, &MemoryFrameStream::write_done, true);
      }
    }
  }

  // Completes both parked operations on `dir` with false (the call is over for them).
  void fail_parked(Direction& dir) {
    const int writer = &dir == &link_->dirs[0] ? 0 : 1;
    if (dir.parked_write) {
      dir.parked_write = nullptr;
      signal(writer, &MemoryFrameStream::write_done, false);
    }
    if (dir.parked_read) {
      dir.parked_read = nullptr;
      signal(1 - writer, &MemoryFrameStream::read_done, false);
    }
  }

  // Completes an operation of end `side` from the transport, outside the call that decided it
  // and outside the lock. An end destroyed meanwhile is skipped (its handlers went with it).
  void signal(int side, void (FrameStream::*done)(bool), bool ok) {
    boost::asio::post(link_->transport, [link = link_, side, done, ok] {
      MemoryFrameStream* end;
      {
        std::lock_guard lock(link->mu);
        end = link->ends[side];
      }
      if (end) (end->*done)(ok);
    });
  }

  void break_call(const std::string& reason) {
    if (link_->broken) return;
    link_->broken = true;
    link_->reason = reason;
    for (auto& dir : link_->dirs) {
      dir.queue.clear();
      fail_parked(dir);
    }
    // Like gRPC, both ends learn that the call is over, also without a pending operation.
    for (auto* end : link_->ends)
      if (end) end->call_ended();
  }

  std::shared_ptr<Link> link_;
  int side_;
  // Guarded by link_->mu.
  std::optional<std::size_t> writes_until_failure_, reads_until_failure_;
  std::size_t frames_written_ = 0;
  int cancels_ = 0;
  std::optional<std::string> cancel_reason_;
};

}  // namespace offload::tunnel::testing
