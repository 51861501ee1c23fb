// Per-session resource limits: the cgroup every container of a session's engine is nested in
// (EngineSpec::cgroup_parent()) gets CPU, memory and pids limits before dockerd starts, so one
// tenant's fork bomb or memory hog hits its own ceiling instead of starving the others.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace offload::engine {

struct SessionLimits {
  // 0 means "no limit" for each of these.
  double cpus = 2.0;                                  // CPU time, in cores
  std::uint64_t memory_bytes = 4ull << 30;            // RAM (and swap: none beyond RAM)
  std::uint64_t pids = 4096;                          // processes and threads
  // Size of the session's own filesystem (data root, sync root): see session_disk.h.
  std::uint64_t disk_bytes = 20ull << 30;
};

// "4GiB", "512MiB", "20G" (powers of 1024 either way), "1000000" (bytes), "0". nullopt for
// anything else or a value that does not fit in 64 bits.
std::optional<std::uint64_t> parse_byte_size(std::string_view text);
// "2", "0.5", "0" (no limit). nullopt for negative, non-numeric or absurd (> 4096) values.
std::optional<double> parse_cpus(std::string_view text);

enum class CgroupVersion { v1, v2 };

// v2 when `root` (normally /sys/fs/cgroup) is itself a cgroup2 mount (it has
// cgroup.controllers); v1 otherwise (one directory per controller, as on this runner).
CgroupVersion detect_cgroup_version(const std::filesystem::path& root);

// One value to write into the session's cgroup: `controller` is the v1 hierarchy directory
// ("memory", "cpu", "pids") and "" on v2. The order matters (v1 refuses a memsw limit below the
// memory limit, so memory.limit_in_bytes comes first).
struct CgroupWrite {
  std::string controller;
  std::string file;
  std::string value;
  bool optional = false;  // skip when the kernel lacks the file (swap accounting off)
};
std::vector<CgroupWrite> cgroup_writes(const SessionLimits& limits, CgroupVersion version);

// Creates `<root>/<controller>/<parent>` (v1) or `<root>/<parent>` (v2, enabling the cpu,
// memory and pids controllers in the root's cgroup.subtree_control first) and writes the
// limits. Returns "" or one actionable line. Children (the containers docker creates there)
// are accounted hierarchically against these limits.
std::string apply_session_limits(const std::filesystem::path& root, CgroupVersion version,
                                 const std::string& parent, const SessionLimits& limits);

// For logs and docs: "2 CPUs, 4GiB memory, 4096 pids, 20GiB disk" ("unlimited" for zeros).
std::string describe(const SessionLimits& limits);
std::string format_byte_size(std::uint64_t bytes);

}  // namespace offload::engine
