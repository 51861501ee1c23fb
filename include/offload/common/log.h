// Logging set-up shared by the programs. Library code logs through spdlog's default logger.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

namespace offload {

// Logs to a size-rotated file (5 files of 10 MiB), or to stderr when `file` is empty.
// `level` is an spdlog level name ("info", "debug", ...). Throws on an unknown level.
// `json`: one JSON object per line (see json_log_line) instead of the text format.
void setup_logging(const std::string& program, const std::filesystem::path& file,
                   const std::string& level, bool json = false);

// One log record as a JSON line: {"time":"<RFC 3339 UTC, ms>","level":"info","message":"...",
// "fields":{"program":"<program>"[,"session":"<id8>"]}} and a newline. A message that starts
// with "session <id>: " (the runner's convention) has that prefix moved into fields.session.
std::string json_log_line(std::chrono::system_clock::time_point time, std::string_view level,
                          std::string_view program, std::string_view message);

}  // namespace offload
