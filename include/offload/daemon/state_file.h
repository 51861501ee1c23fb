// state.json: the live session on disk, so that a restarted offloadd re-attaches to it and a
// `stop` can restore the user's docker context even when the runner is gone.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "offload/daemon/runner_client.h"

namespace offload::daemon {

// What state.json holds: enough to re-attach after a daemon restart and to restore the
// previous docker context even if the runner is gone.
struct PersistedSession {
  std::string account;
  RunnerEndpoint endpoint;
  std::string session_id;
  std::string session_token;
  std::string previous_context;
  std::int64_t started_unix_ms = 0;
  pid_t runner_pid = -1;
};

std::string to_json(const PersistedSession& s);
// Throws std::runtime_error naming `source` on malformed input.
PersistedSession parse_persisted_session(std::string_view json, const std::string& source);

class StateFile {
 public:
  explicit StateFile(std::filesystem::path path) : path_(std::move(path)) {}

  // The persisted session, or nullopt when there is none. Never throws: an unreadable file is
  // logged, a corrupt one is moved aside (state.json.corrupt-<unix ms>) and logged, so that a
  // broken file never keeps the daemon down and the evidence is kept.
  std::optional<PersistedSession> load() const;
  // Atomic, 0600 (it holds the session token). Throws std::runtime_error naming the file.
  void save(const PersistedSession& session) const;
  // Never throws.
  void remove() const;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace offload::daemon
