// Logging set-up shared by the programs. Library code logs through spdlog's default logger.
#pragma once

#include <filesystem>
#include <string>

namespace offload {

// Logs to a size-rotated file (5 files of 10 MiB), or to stderr when `file` is empty.
// `level` is an spdlog level name ("info", "debug", ...). Throws on an unknown level.
void setup_logging(const std::string& program, const std::filesystem::path& file,
                   const std::string& level);

}  // namespace offload
