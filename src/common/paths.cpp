#include "offload/common/paths.h"

#include "offload/common/token.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>

namespace offload {

std::filesystem::path docker_config_dir() {
  if (const char* dc = std::getenv("DOCKER_CONFIG"); dc && *dc) return dc;
  const char* home = std::getenv("HOME");
  if (!home || !*home) {
    if (const passwd* pw = ::getpwuid(::geteuid())) home = pw->pw_dir;
  }
  return std::filesystem::path(home ? home : "/") / ".docker";
}

StatePaths::StatePaths(std::filesystem::path dc)
    : docker_config(std::move(dc)),
      dir(docker_config / "offload"),
      control_socket(dir / "offloadd.sock"),
      docker_socket(dir / "docker.sock"),
      config_file(dir / "config.json"),
      state_file(dir / "state.json"),
      log_file(dir / "offloadd.log"),
      pid_file(dir / "offloadd.pid"),
      lock_file(dir / "offloadd.lock"),
      local_runner_dir(dir / "local-runner"),
      local_runner_run_dir(std::filesystem::path("/run/docker-offload") /
                           sha256_hex(docker_config.string()).substr(0, 12)),
      local_runner_data_dir(std::filesystem::path("/var/lib/docker-offload") /
                            sha256_hex(docker_config.string()).substr(0, 12)) {}

}  // namespace offload
