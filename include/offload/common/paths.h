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
};

}  // namespace offload
