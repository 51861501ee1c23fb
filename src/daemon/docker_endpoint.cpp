#include "offload/daemon/docker_endpoint.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "offload/daemon/api_proxy.h"
#include "offload/http/request_framer.h"

namespace offload::daemon {
namespace asio = boost::asio;
using asio::local::stream_protocol;
constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

DockerEndpoint::DockerEndpoint(asio::io_context& io, std::filesystem::path socket_path,
                               SessionAccess& session)
    : io_(io), socket_path_(std::move(socket_path)), session_(session), acceptor_(io) {}

DockerEndpoint::~DockerEndpoint() { stop(); }

void DockerEndpoint::start() {
  std::error_code ec;
  std::filesystem::remove(socket_path_, ec);
  acceptor_.open();
  acceptor_.bind(stream_protocol::endpoint(socket_path_.string()));
  if (::chmod(socket_path_.c_str(), 0600) != 0)
    throw std::runtime_error("cannot set the mode of " + socket_path_.string());
  acceptor_.listen(asio::socket_base::max_listen_connections);
  asio::co_spawn(io_, accept_loop(), asio::detached);
}

void DockerEndpoint::set_bind_sync(BindSync* bind_sync) { bind_sync_.store(bind_sync); }

void DockerEndpoint::stop() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

asio::awaitable<void> DockerEndpoint::accept_loop() {
  for (;;) {
    // Each connection gets its own strand: its two directions never run concurrently.
    auto [ec, client] = co_await acceptor_.async_accept(asio::make_strand(io_), kToken);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      // Out of descriptors and the like: log, breathe, and keep serving.
      spdlog::error("docker endpoint accept failed: {}", ec.message());
      asio::steady_timer pause(io_, std::chrono::milliseconds(100));
      co_await pause.async_wait(kToken);
      continue;
    }
    auto ex = client.get_executor();
    asio::co_spawn(ex, serve(std::move(client), next_id_++), asio::detached);
  }
}

asio::awaitable<void> DockerEndpoint::answer_without_session(stream_protocol::socket& client,
                                                             std::uint64_t id) {
  http::RequestFramer framer;
  std::string buffer;
  char chunk[16 * 1024];
  bool keep_alive = true;
  while (keep_alive) {
    auto r = framer.next(buffer);
    if (r.event == http::RequestFramer::Event::need_more ||
        (r.event == http::RequestFramer::Event::body && r.consumed == 0)) {
      auto [ec, n] = co_await client.async_read_some(asio::buffer(chunk), kToken);
      if (ec) co_return;
      buffer.append(chunk, n);
      continue;
    }
    buffer.erase(0, r.consumed);
    if (r.event == http::RequestFramer::Event::error) {
      auto resp = http::json_error_response(framer.error_status(), framer.error_message(), false, false);
      co_await asio::async_write(client, asio::buffer(resp), kToken);
      co_return;
    }
    if (r.event == http::RequestFramer::Event::message_end ||
        r.event == http::RequestFramer::Event::upgraded) {
      const auto& head = framer.head();
      keep_alive = head.keep_alive && r.event == http::RequestFramer::Event::message_end;
      std::string message = session_.unavailable_message();
      spdlog::debug("[C{}] {} {} answered without a session", id, head.method, head.target);
      auto resp = http::json_error_response(503, message, head.method == "HEAD", keep_alive);
      auto [ec, n] = co_await asio::async_write(client, asio::buffer(resp), kToken);
      if (ec) co_return;
    }
  }
}

asio::awaitable<void> DockerEndpoint::serve(stream_protocol::socket client, std::uint64_t id) {
  auto runner = session_.runner();
  if (!runner) {
    co_await answer_without_session(client, id);
    co_return;
  }
  auto stream = runner->open_engine_tunnel("docker api");
  session_.connection_opened();
  ApiProxy proxy(client, *stream, bind_sync_.load(), id);
  auto result = co_await proxy.run();
  session_.connection_closed();
  stream->release();
  grpc::Status status = co_await stream->async_wait_done(asio::use_awaitable);
  if (!result.clean() || !status.ok()) {
    spdlog::info("[C{}] closed: up {}, down {}, {} requests, {} B out, {} B in: {}", id,
                 tunnel::to_string(result.up), tunnel::to_string(result.down), proxy.requests(),
                 stream->bytes_out(), stream->bytes_in(),
                 status.ok() ? "ok" : status.error_message());
  } else {
    spdlog::debug("[C{}] closed: {} requests, {} B out, {} B in", id, proxy.requests(),
                  stream->bytes_out(), stream->bytes_in());
  }
}

}  // namespace offload::daemon
