// A failed session's dockerd log, kept for the operator: the engine's data directory (and its
// dockerd.log) is deleted with the session, so a copy goes to <state-dir>/failed/ when the
// engine fails to start or teardown finds its dockerd already dead. Bounded in number and size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace offload::engine {

inline constexpr std::size_t kKeptLogs = 20;
inline constexpr std::uintmax_t kKeptLogBytes = 1024 * 1024;

// Copies the last `max_bytes` of `log` to <dir>/<session_id>.dockerd.log (dir created 0700,
// the copy 0600), then deletes the oldest *.dockerd.log in `dir` beyond the newest `keep`.
// Returns the copy's path, or "" when `log` is missing or the copy failed (logged).
std::filesystem::path keep_dockerd_log(const std::filesystem::path& log,
                                       const std::filesystem::path& dir,
                                       const std::string& session_id, std::size_t keep = kKeptLogs,
                                       std::uintmax_t max_bytes = kKeptLogBytes);

}  // namespace offload::engine
