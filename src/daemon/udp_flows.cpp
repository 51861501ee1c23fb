// The UDP side of port forwarding. UDP has no connections, so a UDP listener keeps a table of
// flows, one per client endpoint, each with its own tunnel stream: bounded in number and in
// queued datagrams, ended after an idle timeout (on an injectable clock) with an eof handshake
// towards the runner. None of this exists for TCP, where the accepted socket is the connection,
// hence a file apart from port_forwarder.cpp.
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <deque>
#include <map>
#include <vector>

#include "port_listener.h"

namespace offload::daemon {
using asio::ip::udp;

namespace {

using Listener = PortForwarder::Listener;

class UdpListener;

// One client endpoint's datagrams through one tunnel. Lives on its listener's strand. The flow
// ends when it has been idle for the idle timeout, when the runner ends it, or when the listener
// closes; ending means an eof frame to the runner, then the call completes.
class UdpFlow final : public std::enable_shared_from_this<UdpFlow> {
 public:
  UdpFlow(std::shared_ptr<UdpListener> listener, udp::endpoint client,
          std::shared_ptr<tunnel::ClientTunnelStream> stream, std::uint64_t id);

  void start();
  void deliver(const char* data, std::size_t size);
  void shutdown(const char* why);

 private:
  const UdpFlowSettings& settings() const;
  void touch() { last_activity_ = settings().clock.now(); }
  void kick_writer();
  void maybe_release();
  static asio::awaitable<void> write_loop(std::shared_ptr<UdpFlow> self);
  static asio::awaitable<void> read_loop(std::shared_ptr<UdpFlow> self);
  static asio::awaitable<void> watchdog(std::shared_ptr<UdpFlow> self);
  static asio::awaitable<void> finish(std::shared_ptr<UdpFlow> self);

  std::shared_ptr<UdpListener> listener_;
  const udp::endpoint client_;
  const std::shared_ptr<tunnel::ClientTunnelStream> stream_;
  const std::uint64_t id_;
  // Frames stay put in a deque while others are appended: the one being written is safe.
  std::deque<v1::TunnelFrame> queue_;
  bool writing_ = false;
  bool write_finished_ = false;  // eof written, or the stream broke: nothing more to write
  bool ending_ = false;          // no more datagrams are taken
  bool reading_done_ = false;
  bool released_ = false;
  std::uint64_t dropped_ = 0;
  std::chrono::steady_clock::time_point last_activity_;
  std::chrono::steady_clock::time_point ending_since_;
  asio::steady_timer timer_;
};

class UdpListener final : public Listener {
 public:
  using Listener::Listener;

  boost::system::error_code bind() override { return open_and_bind(socket_, key, false); }

  void start() override {
    auto self = std::static_pointer_cast<UdpListener>(shared_from_this());
    asio::co_spawn(strand, receive_loop(self), asio::detached);
  }

  void close_on_strand() override {
    boost::system::error_code ignored;
    socket_.close(ignored);
    closed = true;
    end_flows("listener closed");
  }

  // The flow no longer takes datagrams; a later one from the same client starts a new flow.
  void forget(const udp::endpoint& client, const UdpFlow* flow) {
    auto it = flows_.find(client);
    if (it != flows_.end() && it->second.get() == flow) flows_.erase(it);
  }

  udp::socket& socket() { return socket_; }

 private:
  void end_flows(const char* why) {
    auto flows = std::move(flows_);
    flows_.clear();
    for (auto& [client, flow] : flows) flow->shutdown(why);
  }

  static asio::awaitable<void> receive_loop(std::shared_ptr<UdpListener> self) {
    // Large enough for any datagram; each one is copied into its own frame at its own size.
    std::vector<char> buffer(65536);
    for (;;) {
      udp::endpoint from;
      auto [ec, n] =
          co_await self->socket_.async_receive_from(asio::buffer(buffer), from, kToken);
      if (ec) {
        if (ec == asio::error::operation_aborted || !self->socket_.is_open()) break;
        // Errors queued by ICMP for an earlier reply say nothing about this socket.
        if (ec == asio::error::connection_refused || ec == asio::error::host_unreachable ||
            ec == asio::error::network_unreachable)
          continue;
        spdlog::error("[P{}] receive failed, closing the listener: {}", self->tag, ec.message());
        boost::system::error_code ignored;
        self->socket_.close(ignored);
        break;
      }
      auto it = self->flows_.find(from);
      if (it == self->flows_.end()) {
        if (self->flows_.size() >= self->shared->udp.max_flows) {
          spdlog::debug("[P{}] dropped a datagram from {}: too many flows", self->tag,
                        from.address().to_string());
          continue;
        }
        auto stream = self->shared->open(self->key.port, "udp");
        if (!stream) {
          spdlog::debug("[P{}] dropped a datagram: no session to forward to", self->tag);
          continue;
        }
        auto flow = std::make_shared<UdpFlow>(self, from, std::move(stream),
                                              self->shared->next_id++);
        it = self->flows_.emplace(from, flow).first;
        flow->start();
      }
      it->second->deliver(buffer.data(), n);
    }
    self->closed = true;
    self->end_flows("listener closed");
  }

  udp::socket socket_{strand};
  std::map<udp::endpoint, std::shared_ptr<UdpFlow>> flows_;
};

UdpFlow::UdpFlow(std::shared_ptr<UdpListener> listener, udp::endpoint client,
                 std::shared_ptr<tunnel::ClientTunnelStream> stream, std::uint64_t id)
    : listener_(std::move(listener)),
      client_(std::move(client)),
      stream_(std::move(stream)),
      id_(id),
      timer_(listener_->strand) {}

const UdpFlowSettings& UdpFlow::settings() const { return listener_->shared->udp; }

void UdpFlow::start() {
  touch();
  ++listener_->open_connections;
  listener_->shared->opened();
  spdlog::debug("[P{} C{}] udp flow from {}:{}", listener_->tag, id_,
                client_.address().to_string(), client_.port());
  asio::co_spawn(listener_->strand, read_loop(shared_from_this()), asio::detached);
  asio::co_spawn(listener_->strand, watchdog(shared_from_this()), asio::detached);
}

void UdpFlow::deliver(const char* data, std::size_t size) {
  if (ending_) return;
  touch();
  if (queue_.size() >= settings().max_queued_datagrams) {
    ++dropped_;
    return;
  }
  queue_.emplace_back().set_data(data, size);
  kick_writer();
}

void UdpFlow::shutdown(const char* why) {
  if (ending_) return;
  ending_ = true;
  ending_since_ = settings().clock.now();
  listener_->forget(client_, this);
  spdlog::debug("[P{} C{}] udp flow ending: {}", listener_->tag, id_, why);
  if (write_finished_) {
    maybe_release();
    return;
  }
  queue_.emplace_back().set_eof(true);
  kick_writer();
  // The watchdog now waits for the end of the call instead of for activity.
  timer_.cancel();
}

void UdpFlow::kick_writer() {
  if (writing_ || write_finished_) return;
  writing_ = true;
  asio::co_spawn(listener_->strand, write_loop(shared_from_this()), asio::detached);
}

asio::awaitable<void> UdpFlow::write_loop(std::shared_ptr<UdpFlow> self) {
  while (!self->queue_.empty()) {
    const v1::TunnelFrame& frame = self->queue_.front();
    auto [ok] = co_await self->stream_->async_write(frame, kToken);
    if (!ok) {
      self->write_finished_ = true;
      self->queue_.clear();
      break;
    }
    self->stream_->count_out(frame.data().size());
    const bool eof = frame.eof();
    self->queue_.pop_front();
    if (eof) {
      self->write_finished_ = true;
      break;
    }
  }
  self->writing_ = false;
  self->maybe_release();
}

asio::awaitable<void> UdpFlow::read_loop(std::shared_ptr<UdpFlow> self) {
  v1::TunnelFrame frame;
  bool ok = false;
  for (;;) {
    frame.Clear();
    std::tie(ok) = co_await self->stream_->async_read(frame, kToken);
    if (!ok) break;
    self->stream_->count_in(frame.data().size());
    if (!frame.eof() || !frame.data().empty()) {
      self->touch();
      // A client that went away loses the datagram, as with UDP anywhere.
      co_await self->listener_->socket().async_send_to(asio::buffer(frame.data()), self->client_,
                                                       kToken);
    }
    if (frame.eof()) break;
  }
  self->reading_done_ = true;
  if (!ok) {
    // The call is over: a write in flight fails by itself (and must keep its frame until
    // then), an idle writer has nothing left to do.
    if (!self->writing_) {
      self->write_finished_ = true;
      self->queue_.clear();
    }
    if (!self->ending_) {
      self->ending_ = true;
      self->ending_since_ = self->settings().clock.now();
      self->listener_->forget(self->client_, self.get());
      spdlog::debug("[P{} C{}] udp flow broken", self->listener_->tag, self->id_);
    }
    self->maybe_release();
    co_return;
  }
  self->shutdown("ended by the runner");
  self->maybe_release();
}

asio::awaitable<void> UdpFlow::watchdog(std::shared_ptr<UdpFlow> self) {
  const auto idle = self->settings().idle_timeout;
  while (!self->released_) {
    auto now = self->settings().clock.now();
    auto deadline = (self->ending_ ? self->ending_since_ : self->last_activity_) + idle;
    if (now >= deadline) {
      if (!self->ending_) {
        self->shutdown("idle");
        continue;
      }
      // The runner never ended the call after our eof: stop waiting for it.
      self->stream_->cancel("udp flow did not end after eof");
      co_return;
    }
    self->timer_.expires_after(std::min(deadline - now, self->settings().clock.max_real_wait));
    co_await self->timer_.async_wait(kToken);
  }
}

void UdpFlow::maybe_release() {
  if (released_ || !reading_done_ || !write_finished_ || writing_) return;
  released_ = true;
  timer_.cancel();
  asio::co_spawn(listener_->strand, finish(shared_from_this()), asio::detached);
}

asio::awaitable<void> UdpFlow::finish(std::shared_ptr<UdpFlow> self) {
  self->stream_->release();
  grpc::Status status = co_await self->stream_->async_wait_done(asio::use_awaitable);
  --self->listener_->open_connections;
  self->listener_->shared->closed();
  auto log_level = status.ok() && self->dropped_ == 0 ? spdlog::level::debug : spdlog::level::info;
  spdlog::log(log_level, "[P{} C{}] udp flow closed: {} B out, {} B in, {} datagrams dropped: {}",
              self->listener_->tag, self->id_, self->stream_->bytes_out(),
              self->stream_->bytes_in(), self->dropped_,
              status.ok() ? "ok" : status.error_message());
}

}  // namespace

std::shared_ptr<PortForwarder::Listener> make_udp_listener(
    asio::io_context& io, const ListenerKey& key, std::shared_ptr<PortForwarder::Shared> shared) {
  return std::make_shared<UdpListener>(io, key, std::move(shared));
}

}  // namespace offload::daemon
