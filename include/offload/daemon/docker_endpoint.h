// The Docker Engine API endpoint of the docker-offload context: $DOCKER_CONFIG/offload/docker.sock.
//
// Each client connection becomes one tunnel stream to the session engine. The proxy reads the
// request direction's HTTP/1.1 framing (to count and log requests, and to see Upgrade requests
// after which the bytes are opaque) and forwards bytes unchanged without buffering, except for
// the requests bind-mount synchronisation must see (container create, start and wait; see
// api_proxy.h). Without a session it answers every request itself with a JSON error (503) that
// says what to do.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <atomic>
#include <filesystem>

#include "offload/daemon/bind_sync.h"
#include "offload/daemon/session_access.h"

namespace offload::daemon {

class DockerEndpoint {
 public:
  DockerEndpoint(boost::asio::io_context& io, std::filesystem::path socket_path,
                 SessionAccess& session);
  ~DockerEndpoint();

  // Binds the socket (replacing a stale one), mode 0600, and starts accepting. Throws on error.
  void start();
  void stop();

  // Bind-mount synchronisation for connections accepted from now on (null: none, the default).
  // `bind_sync` must outlive every connection, i.e. until the endpoint's io_context has stopped.
  void set_bind_sync(BindSync* bind_sync);

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::local::stream_protocol::socket client,
                                     std::uint64_t id);
  boost::asio::awaitable<void> answer_without_session(
      boost::asio::local::stream_protocol::socket& client, std::uint64_t id);

  boost::asio::io_context& io_;
  std::filesystem::path socket_path_;
  SessionAccess& session_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<BindSync*> bind_sync_{nullptr};
};

}  // namespace offload::daemon
