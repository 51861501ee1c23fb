// Where things live on the user machine (design §2).
#pragma once

#include <filesystem>

namespace offload {

// $DOCKER_CONFIG, else $HOME/.docker — the docker CLI's own rule.
std::filesystem::path docker_config_dir();

// Fixed names inside the state directory $DOCKER_CONFIG/offload.
struct StatePaths {
  explicit StatePaths(std::filesystem::path docker_config);
  std::filesystem::path docker_config;
  std::filesystem::path dir;            // $DOCKER_CONFIG/offload, 0700
  std::filesystem::path control_socket; // offloadd.sock
  std::filesystem::path docker_socket;  // docker.sock
  std::filesystem::path config_file;    // config.json (ours, not the docker CLI's)
  std::filesystem::path state_file;     // state.json
  std::filesystem::path log_file;       // offloadd.log
  std::filesystem::path pid_file;       // offloadd.pid
  std::filesystem::path lock_file;      // offloadd.lock
  std::filesystem::path local_runner_dir;  // local-runner/: the embedded runner's files
  // The embedded runner's engines, outside the (private) state directory and keyed by it, so
  // that several docker config directories keep apart. Their sockets need short paths under
  // /run; their data must be reachable by each session's remapped root, which a home directory
  // (and our 0700 directory in it) must not be opened up for.
  std::filesystem::path local_runner_run_dir;   // /run/docker-offload/<hash>
  std::filesystem::path local_runner_data_dir;  // /var/lib/docker-offload/<hash>
};

}  // namespace offload
