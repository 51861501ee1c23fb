// What a session needs to come back after the runner restarts (serve --live-restore): who owns
// it, how its client proves it, its limits and the mounts its clients opened. It is kept in the
// session's record on disk, so it never holds the session token itself, only its SHA-256.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "offload/runner/api_policy.h"
#include "offload/runner/lifecycle.h"

namespace offload::runner {

struct SessionSnapshot {
  std::string id;
  // Lowercase hex SHA-256 of the session token.
  std::string token_sha256;
  std::string account;
  std::string client_label;
  // The limits the session was created with (the client's wishes within the runner's caps).
  LifecycleLimits limits;
  // What the account was granted when the session was created; a later change of the accounts
  // file does not change a running session.
  ApiAllowances allow;
  std::int64_t created_unix_ms = 0;
  // The bind mounts the session's clients opened: mount id → the file of a single-file mount,
  // nothing for a directory mount (see SyncCalls::claim).
  std::map<std::string, std::optional<std::string>> mounts;

  friend bool operator==(const SessionSnapshot&, const SessionSnapshot&) = default;
};

// One JSON object (no trailing newline).
std::string snapshot_json(const SessionSnapshot& snapshot);

// Reads what snapshot_json wrote. The record is on the runner's own disk, but a damaged or
// hand-edited one must not restore a session with a wrong token, another id or a path-escaping
// mount: throws std::runtime_error naming the first field that is wrong. `expected_id` is the
// session the record belongs to (from its file name).
SessionSnapshot parse_session_snapshot(std::string_view json, const std::string& expected_id);

}  // namespace offload::runner
