// A session's gated Docker API socket (issue 14 item 2): what a container gets when it binds
// /var/run/docker.sock, as Docker Desktop gives its containers the engine's socket.
//
// The session dockerd's own socket must never reach a container: with it a container could
// create a `--privileged --userns=host -v /:/host` container and own the runner host. So the
// runner serves, per session, a unix socket of its own whose every connection goes through the
// same ApiGate (and ApiPolicy) as the session's engine tunnels, to the session's engine and no
// other. The gate rewrites a create that binds the Docker socket into a bind of this socket
// (bind_docker_socket), so containers that start containers get the same again.
//
// The socket lives in <run_dir>/api/docker.sock (run_dir is the engine's, removed with it); the
// directory is root's alone (0700: no user of the runner host reaches the socket through it),
// the socket 0666, so that the session's remapped container root, which owns nothing on the
// host, may connect to it once it is bind-mounted into the container. It is started on the
// first create that needs it and stopped when the session goes. A runner restart (serve
// --live-restore) does not carry it over: containers that had it keep a dead socket; the next
// create that binds the Docker socket serves a new one.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "offload/runner/api_policy.h"

namespace offload::runner {

class Session;

// The policy every API connection of `session` is judged by (its engine tunnels and its gated
// socket alike): its sync root and mounts, its account's allowances, its gated socket.
ApiPolicy session_api_policy(const std::shared_ptr<Session>& session, boost::asio::io_context& io);

// Connections a session's gated socket serves at once; more wait in the listen backlog.
inline constexpr std::size_t kMaxGatedConnections = 128;

class GatedApiSocket : public std::enable_shared_from_this<GatedApiSocket> {
 public:
  // Binds `path` (replacing a stale socket left by an earlier runner), and accepts on a strand of
  // `executor`. Throws std::runtime_error naming what failed.
  static std::shared_ptr<GatedApiSocket> start(boost::asio::io_context& io,
                                               std::filesystem::path path,
                                               std::weak_ptr<Session> session);
  // Stops accepting and removes the socket file; connections being served run to their end.
  // Any thread.
  void stop();
  const std::filesystem::path& path() const { return path_; }

  GatedApiSocket(boost::asio::io_context& io, std::filesystem::path path,
                 std::weak_ptr<Session> session);

 private:
  void accept_loop();

  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::filesystem::path path_;
  std::weak_ptr<Session> session_;
  std::shared_ptr<std::atomic<std::size_t>> connections_ =
      std::make_shared<std::atomic<std::size_t>>(0);
};

}  // namespace offload::runner
