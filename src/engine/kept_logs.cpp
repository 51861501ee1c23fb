#include "offload/engine/kept_logs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <vector>

#include "offload/common/fs.h"

namespace offload::engine {
namespace fs = std::filesystem;

fs::path keep_dockerd_log(const fs::path& log, const fs::path& dir, const std::string& session_id,
                          std::size_t keep, std::uintmax_t max_bytes) {
  std::error_code ec;
  const auto size = fs::file_size(log, ec);
  if (ec) return {};
  if (auto dec = ensure_private_dir(dir)) {
    spdlog::warn("cannot keep dockerd log {}: {}: {}", log.string(), dir.string(), dec.message());
    return {};
  }
  std::ifstream in(log, std::ios::binary);
  const std::uintmax_t skip = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(skip));
  std::string tail(static_cast<std::size_t>(size - skip), '\0');
  in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
  tail.resize(static_cast<std::size_t>(in.gcount()));
  if (skip > 0) {
    // Start at a line: the cut one is useless.
    std::uintmax_t dropped = skip;
    auto nl = tail.find('\n');
    if (nl != std::string::npos && nl + 1 < tail.size()) {
      tail.erase(0, nl + 1);
      dropped += nl + 1;
    }
    tail = "[... the first " + std::to_string(dropped) + " bytes were not kept ...]\n" + tail;
  }
  const fs::path copy = dir / (session_id + ".dockerd.log");
  if (auto wec = write_file_atomic(copy, tail, fs::perms(0600))) {
    spdlog::warn("cannot keep dockerd log at {}: {}", copy.string(), wec.message());
    return {};
  }
  // Oldest first by modification time; the copy just written is the newest.
  std::vector<std::pair<fs::file_time_type, fs::path>> kept;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    if (!name.ends_with(".dockerd.log")) continue;
    kept.emplace_back(entry.last_write_time(ec), entry.path());
  }
  std::sort(kept.begin(), kept.end());
  for (std::size_t i = 0; i + keep < kept.size(); ++i)
    if (kept[i].second != copy) fs::remove(kept[i].second, ec);
  return copy;
}

}  // namespace offload::engine
