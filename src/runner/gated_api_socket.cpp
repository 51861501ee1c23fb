#include "offload/runner/gated_api_socket.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "offload/common/text.h"
#include "offload/runner/api_gate.h"
#include "offload/runner/session.h"
#include "offload/tunnel/frame_stream.h"
#include "offload/tunnel/pump.h"

namespace offload::runner {
namespace asio = boost::asio;
namespace fs = std::filesystem;
using asio::local::stream_protocol;
using tunnel::TunnelFrame;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

// The container's end of a gated connection as the gate's "stream" side: each read of the
// socket one frame, end-of-file an eof frame, and an eof frame written a half-close. This lets
// the gated socket run the very splice and ApiGate the engine tunnels run.
class SocketFrameStream final : public tunnel::FrameStream {
 public:
  explicit SocketFrameStream(stream_protocol::socket& socket) : socket_(socket) {}

  void cancel(const std::string&) override {
    boost::system::error_code ignored;
    socket_.close(ignored);
    call_ended();
  }

 protected:
  void start_read(TunnelFrame* frame) override {
    std::string* data = frame->mutable_data();
    data->resize(64 * 1024);
    socket_.async_read_some(asio::buffer(data->data(), data->size()),
                            [this, frame](const boost::system::error_code& ec, std::size_t n) {
                              frame->mutable_data()->resize(n);
                              if (ec == asio::error::eof) {
                                frame->set_eof(true);
                                read_done(true);
                              } else {
                                read_done(!ec);
                              }
                            });
  }
  void start_write(const TunnelFrame* frame) override {
    asio::async_write(socket_, asio::buffer(frame->data()),
                      [this, frame](const boost::system::error_code& ec, std::size_t) {
                        if (!ec && frame->eof()) {
                          boost::system::error_code ignored;
                          socket_.shutdown(stream_protocol::socket::shutdown_send, ignored);
                        }
                        write_done(!ec);
                      });
  }

 private:
  stream_protocol::socket& socket_;
};

asio::awaitable<void> serve_connection(stream_protocol::socket client,
                                       std::shared_ptr<Session> session,
                                       std::shared_ptr<std::atomic<std::size_t>> connections,
                                       asio::io_context& io) {
  struct Count {
    std::atomic<std::size_t>& n;
    ~Count() { --n; }
  } counted{*connections};
  stream_protocol::socket engine(co_await asio::this_coro::executor);
  auto [ec] = co_await engine.async_connect(session->engine().api_socket().string(), kToken);
  if (ec) {
    spdlog::debug("session {}: gated API socket: the engine is not answering: {}",
                  short_session_id(session->id()), ec.message());
    co_return;
  }
  session->stream_opened();
  ApiGate gate(engine, session_api_policy(session, io),
               "session " + short_session_id(session->id()) + " (container API socket)");
  SocketFrameStream stream(client);
  auto result = co_await tunnel::splice(engine, stream, gate.responses(), gate.requests());
  session->stream_closed();
  spdlog::debug("session {}: gated API connection closed: up {}, down {}",
                short_session_id(session->id()), tunnel::to_string(result.up),
                tunnel::to_string(result.down));
  boost::system::error_code ignored;
  client.close(ignored);
}

}  // namespace

ApiPolicy session_api_policy(const std::shared_ptr<Session>& session, asio::io_context& io) {
  ApiPolicy policy{session->engine().sync_root(), session->allowances(), {}, {}, {}, {}};
  policy.is_mount_source = [session](const fs::path& relative) {
    return session->syncs().is_mount_source(relative);
  };
  policy.api_socket = session->api_socket_path();
  std::weak_ptr<Session> weak = session;
  policy.serve_api_socket = [weak, &io] {
    auto s = weak.lock();
    return s && s->serve_api_socket(io);
  };
  return policy;
}

GatedApiSocket::GatedApiSocket(asio::io_context& io, fs::path path, std::weak_ptr<Session> session)
    : io_(io),
      strand_(asio::make_strand(io)),
      acceptor_(strand_),
      path_(std::move(path)),
      session_(std::move(session)) {}

std::shared_ptr<GatedApiSocket> GatedApiSocket::start(asio::io_context& io, fs::path path,
                                                      std::weak_ptr<Session> session) {
  auto self = std::make_shared<GatedApiSocket>(io, std::move(path), std::move(session));
  const fs::path dir = self->path_.parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create " + dir.string() + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0)
    throw std::runtime_error("cannot restrict " + dir.string() + " to root");
  // An earlier runner's socket (serve --live-restore): nobody listens on it any more.
  if (fs::is_socket(fs::symlink_status(self->path_, ec))) fs::remove(self->path_, ec);
  boost::system::error_code bec;
  self->acceptor_.open(stream_protocol(), bec);
  if (!bec) self->acceptor_.bind(stream_protocol::endpoint(self->path_.string()), bec);
  if (!bec) self->acceptor_.listen(asio::socket_base::max_listen_connections, bec);
  if (bec)
    throw std::runtime_error("cannot serve " + self->path_.string() + ": " + bec.message());
  // Container root is an unprivileged uid of the runner host: it connects as "other".
  if (::chmod(self->path_.c_str(), 0666) != 0)
    throw std::runtime_error("cannot open " + self->path_.string() + " to the session's containers");
  self->accept_loop();
  return self;
}

void GatedApiSocket::accept_loop() {
  asio::co_spawn(
      strand_,
      [self = shared_from_this()]() -> asio::awaitable<void> {
        asio::steady_timer backoff(self->strand_);
        for (;;) {
          auto connection_strand = asio::make_strand(self->io_);
          auto [ec, client] = co_await self->acceptor_.async_accept(connection_strand, kToken);
          if (!self->acceptor_.is_open() || ec == asio::error::operation_aborted) co_return;
          if (ec) {
            // Out of descriptors and the like: try again shortly rather than spin.
            spdlog::warn("gated API socket {}: accept failed: {}", self->path_.string(),
                         ec.message());
            backoff.expires_after(std::chrono::milliseconds(200));
            co_await backoff.async_wait(kToken);
            continue;
          }
          auto session = self->session_.lock();
          if (!session) co_return;
          if (++*self->connections_ > kMaxGatedConnections) {
            --*self->connections_;
            spdlog::warn("session {}: gated API socket: over {} connections, one refused",
                         short_session_id(session->id()), kMaxGatedConnections);
            continue;  // `client` closes as it goes
          }
          asio::co_spawn(connection_strand,
                         serve_connection(std::move(client), std::move(session),
                                          self->connections_, self->io_),
                         asio::detached);
        }
      },
      asio::detached);
}

void GatedApiSocket::stop() {
  // A stopped io_context (the runner shutting down) runs nothing more: the accept loop goes
  // with it, and nothing may be posted to it while it is torn down.
  if (io_.stopped()) {
    std::error_code ec;
    fs::remove(path_, ec);
    return;
  }
  asio::post(strand_, [self = shared_from_this()] {
    boost::system::error_code ignored;
    self->acceptor_.close(ignored);
    std::error_code ec;
    fs::remove(self->path_, ec);
  });
}

}  // namespace offload::runner
