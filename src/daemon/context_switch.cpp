#include "offload/daemon/context_switch.h"

#include <spdlog/spdlog.h>

#include "offload/daemon/control_error.h"
#include "offload/dockerctx/context_store.h"

namespace offload::daemon {

namespace {
ControlError context_error(const std::exception& e) {
  return ControlError(grpc::StatusCode::FAILED_PRECONDITION, e.what());
}
}  // namespace

ContextSwitch::ContextSwitch(const StatePaths& paths)
    : docker_config_(paths.docker_config), docker_host_("unix://" + paths.docker_socket.string()) {}

std::string ContextSwitch::previous_context(const std::string& carried) const {
  try {
    std::string current = ContextStore(docker_config_).current_context();
    if (current != kOffloadContextName) return current;
    return carried.empty() ? std::string("default") : carried;
  } catch (const ContextError& e) {
    throw context_error(e);
  }
}

void ContextSwitch::switch_to_offload(const std::string& account) const {
  ContextStore contexts(docker_config_);
  contexts.write_context(kOffloadContextName, docker_host_,
                         "Docker Offload session (account " + account + ")");
  contexts.use_context(kOffloadContextName);
}

std::string ContextSwitch::restore(const std::string& previous) const {
  ContextStore contexts(docker_config_);
  std::string target = previous.empty() ? "default" : previous;
  try {
    // Only undo our own switch: if the user moved elsewhere meanwhile, leave their choice.
    if (contexts.current_context() != kOffloadContextName) return contexts.current_context();
    if (target != "default" && !contexts.context_exists(target)) {
      spdlog::warn("previous context {} no longer exists; using default", target);
      target = "default";
    }
    contexts.use_context(target);
  } catch (const ContextError& e) {
    throw context_error(e);
  }
  return target;
}

}  // namespace offload::daemon
