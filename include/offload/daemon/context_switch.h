// The docker context switch of a session: `start` makes `docker-offload` current and remembers
// what was, `stop` goes back, and only if the user has not moved elsewhere meanwhile. Every write
// goes through ContextStore, which is atomic and keeps every key of config.json we do not own.
#pragma once

#include <filesystem>
#include <string>

#include "offload/common/paths.h"

namespace offload::daemon {

class ContextSwitch {
 public:
  explicit ContextSwitch(const StatePaths& paths);

  // The context to return to when the session ends: the current one, or `carried` (else
  // "default") when the current one is already ours (an ended session is being replaced). Reads
  // the user's config first thing, so a broken file fails before anything is created.
  // Throws ControlError (FAILED_PRECONDITION) with the store's message.
  std::string previous_context(const std::string& carried) const;

  // Writes the docker-offload context for `account` and makes it current. Throws ContextError.
  void switch_to_offload(const std::string& account) const;

  // Makes `previous` ("" means "default") current again if the current context is still ours;
  // a `previous` that no longer exists becomes "default". Returns the context current afterwards.
  // Throws ControlError (FAILED_PRECONDITION).
  std::string restore(const std::string& previous) const;

 private:
  std::filesystem::path docker_config_;
  std::string docker_host_;
};

}  // namespace offload::daemon
