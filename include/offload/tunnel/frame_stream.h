// A gRPC bidirectional stream of TunnelFrames, seen from Asio coroutines.
//
// gRPC's callback API reports completions on its own threads; this adapter turns them into Asio
// completions on the caller's executor, so tunnel code is ordinary coroutines:
//     bool ok = co_await stream->async_read(frame, use_awaitable);
// At most one read and one write may be in flight at a time (gRPC's rule too), which is also
// what gives the tunnel its back-pressure: a slow receiver stalls the sender's next read.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "offload/v1/runner.pb.h"

namespace offload::tunnel {

// Runs `handler(args...)` on the handler's own executor, never inline: completions arrive on
// gRPC threads, and the coroutine they resume must continue on its strand.
template <class Handler, class... Args>
void post_to_handler_executor(Handler handler, Args... args) {
  auto ex = boost::asio::prefer(boost::asio::get_associated_executor(handler),
                                boost::asio::execution::blocking.never);
  // Boxed: any_completion_handler would otherwise "copy" itself by wrapping itself, forever.
  auto boxed = std::make_unique<Handler>(std::move(handler));
  ex.execute([h = std::move(boxed), args...]() mutable { std::move (*h)(args...); });
}

using v1::TunnelFrame;

class FrameStream {
 public:
  virtual ~FrameStream() = default;

  // Completes with true and a frame, or false once the stream has ended (finished, cancelled,
  // or broken); after false no further reads may be started.
  template <class Token>
  auto async_read(TunnelFrame& frame, Token&& token) {
    return boost::asio::async_initiate<Token, void(bool)>(
        [this, &frame](auto handler) {
          read_handler_.emplace(std::move(handler));
          start_read(&frame);
        },
        token);
  }

  // Completes with true once the frame has been handed to the transport (`frame` must stay
  // alive and unchanged until then), false if the stream is broken.
  template <class Token>
  auto async_write(const TunnelFrame& frame, Token&& token) {
    return boost::asio::async_initiate<Token, void(bool)>(
        [this, &frame](auto handler) {
          write_handler_.emplace(std::move(handler));
          start_write(&frame);
        },
        token);
  }

  // Direct operations, for pumps that run on the transport's own threads (direct_splice.h):
  // the completion calls `frame_read`/`frame_written` inline, on the thread that completes the
  // operation (a gRPC thread; the starting thread when the stream has ended already), instead of
  // posting a handler to an executor. The same one-read-one-write rule holds across both kinds.
  class DirectHandler {
   public:
    virtual void frame_read(bool ok) = 0;
    virtual void frame_written(bool ok) = 0;

   protected:
    ~DirectHandler() = default;
  };
  void read_direct(TunnelFrame& frame, DirectHandler& handler) {
    direct_reader_.store(&handler, std::memory_order_release);
    start_read(&frame);
  }
  void write_direct(const TunnelFrame& frame, DirectHandler& handler) {
    direct_writer_.store(&handler, std::memory_order_release);
    start_write(&frame);
  }

  // Aborts the stream: pending and future operations complete with false, the peer sees the
  // stream fail. `reason` goes to the peer (server side) and the log.
  virtual void cancel(const std::string& reason) = 0;

  // `interrupt` runs (on any thread; it must only post) when the call ends other than cleanly —
  // cancelled by either side, or broken — also while no read or write is pending, when nothing
  // else would tell the stream's users. A call that ended already runs it at once. Cleared with
  // set_interrupt({}); after that returns it is never called again.
  void set_interrupt(std::function<void()> interrupt) {
    std::lock_guard lock(interrupt_mu_);
    interrupt_ = std::move(interrupt);
    if (ended_ && interrupt_) interrupt_();
  }

  std::uint64_t bytes_in() const { return bytes_in_; }
  std::uint64_t bytes_out() const { return bytes_out_; }
  void count_in(std::size_t n) { bytes_in_ += n; }
  void count_out(std::size_t n) { bytes_out_ += n; }

 protected:
  virtual void start_read(TunnelFrame* frame) = 0;
  virtual void start_write(const TunnelFrame* frame) = 0;

  // Called by the gRPC reactor on a gRPC thread.
  void read_done(bool ok) {
    if (auto* direct = direct_reader_.exchange(nullptr, std::memory_order_acq_rel))
      direct->frame_read(ok);
    else
      complete(read_handler_, ok);
  }
  void write_done(bool ok) {
    if (auto* direct = direct_writer_.exchange(nullptr, std::memory_order_acq_rel))
      direct->frame_written(ok);
    else
      complete(write_handler_, ok);
  }
  // Implementations call this when the call ended other than cleanly.
  void call_ended() {
    std::lock_guard lock(interrupt_mu_);
    ended_ = true;
    if (interrupt_) interrupt_();
  }

 private:
  // std::optional + emplace: Boost 1.81's any_completion_handler move-assignment recurses
  // forever (it re-wraps itself), so handlers are only ever move-constructed.
  using HandlerSlot = std::optional<boost::asio::any_completion_handler<void(bool)>>;
  static void complete(HandlerSlot& slot, bool ok) {
    if (!slot) return;
    boost::asio::any_completion_handler<void(bool)> handler(std::move(*slot));
    slot.reset();
    post_to_handler_executor(std::move(handler), ok);
  }

  HandlerSlot read_handler_;
  HandlerSlot write_handler_;
  std::atomic<DirectHandler*> direct_reader_{nullptr}, direct_writer_{nullptr};
  std::mutex interrupt_mu_;
  std::function<void()> interrupt_;  // guarded by interrupt_mu_
  bool ended_ = false;               // guarded by interrupt_mu_
  std::atomic<std::uint64_t> bytes_in_{0}, bytes_out_{0};
};

}  // namespace offload::tunnel
