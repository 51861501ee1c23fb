// The CLI's way to offloadd: a gRPC channel over the control socket, starting the daemon when
// nothing listens there.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>

#include "offload/cli/cli.h"
#include "offload/common/paths.h"
#include "offload/v1/control.grpc.pb.h"

namespace offload::cli {

class DaemonClient {
 public:
  struct Options {
    std::filesystem::path docker_config;
    // How long a daemon that listens may take to accept the gRPC connection.
    std::chrono::milliseconds connect_timeout{2000};
    // How long a freshly spawned offloadd may take to open its socket.
    std::chrono::milliseconds start_timeout{10000};
    // Where offloadd is; empty means offload::find_program("offloadd").
    std::function<std::optional<std::filesystem::path>()> locate_daemon;
    // The version a running offloadd must have; one that reports another (an upgrade replaced
    // the programs under it) is stopped and started again from the installed program. The
    // session lives on: the new daemon re-attaches to it.
    std::string expected_daemon_version = OFFLOAD_VERSION;
    // How long the old daemon may take to exit.
    std::chrono::milliseconds stop_timeout{30000};
    // Tells the user what happens (a line without newline); default: nothing.
    std::function<void(const std::string&)> notice;
  };

  explicit DaemonClient(Options options);

  // A stub for a daemon that answers, spawning offloadd first when nothing listens on the
  // socket, and restarting one of another version. Throws CliError("daemon not running and
  // could not be started: ...").
  v1::Control::Stub& connect();

  // A stub when offloadd already listens, else nullptr; never spawns it (for `version`).
  v1::Control::Stub* connect_if_running();

  // Stops the offloadd that runs for this docker config (it reads config.json at start-up) and
  // starts a new one, which re-attaches a running session as after a crash. Nothing when none
  // runs. False when one runs that could not be stopped.
  bool restart_if_running();

  // The one line a failed call shows the user: the daemon's own message, or what went wrong
  // with the socket when the daemon itself did not answer.
  CliError error(const grpc::Status& status) const;

  const StatePaths& paths() const { return paths_; }
  // stdout/stderr of a daemon we spawned.
  std::filesystem::path daemon_log() const { return paths_.dir / "offloadd.stderr.log"; }

 private:
  bool open_channel();
  void start_daemon();
  // True when the daemon behind the open channel reports a version other than the expected one
  // and has been stopped (the channel is closed then). A daemon that reports no version, or
  // whose process cannot be identified, is left alone.
  bool stopped_outdated_daemon();
  // The pid in offloadd's pid file if that process is an offloadd (by its name), else 0.
  pid_t daemon_pid() const;

  Options options_;
  StatePaths paths_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Control::Stub> stub_;
};

// True when something accepts connections on the unix socket at `path` right now.
bool unix_socket_listening(const std::filesystem::path& path);

}  // namespace offload::cli
