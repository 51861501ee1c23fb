#include "offload/engine/session_limits.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>

namespace offload::engine {
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kCpuPeriodUs = 100000;  // the kernel's default CFS period

bool write_value(const fs::path& file, const std::string& value, std::string& error) {
  // cgroupfs reports a refused value on write/close, not on open.
  std::ofstream out(file);
  if (out) out << value << std::flush;
  if (!out) {
    error = "cannot write \"" + value + "\" to " + file.string() + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

std::string cpu_quota_us(double cpus) {
  return std::to_string(static_cast<std::uint64_t>(std::llround(cpus * kCpuPeriodUs)));
}

}  // namespace

std::optional<std::uint64_t> parse_byte_size(std::string_view text) {
  std::uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  std::string unit(end, text.data() + text.size());
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  int shift = 0;
  if (unit.empty() || unit == "b") shift = 0;
  else if (unit == "k" || unit == "kb" || unit == "kib") shift = 10;
  else if (unit == "m" || unit == "mb" || unit == "mib") shift = 20;
  else if (unit == "g" || unit == "gb" || unit == "gib") shift = 30;
  else if (unit == "t" || unit == "tb" || unit == "tib") shift = 40;
  else return std::nullopt;
  if (shift > 0 && number > (UINT64_MAX >> shift)) return std::nullopt;
  return number << shift;
}

std::optional<double> parse_cpus(std::string_view text) {
  if (text.empty() || text.find_first_not_of("0123456789.") != std::string_view::npos)
    return std::nullopt;
  try {
    std::size_t used = 0;
    double cpus = std::stod(std::string(text), &used);
    if (used != text.size() || !(cpus >= 0) || cpus > 4096) return std::nullopt;
    // Below 1 ms per 100 ms period the kernel refuses the quota.
    if (cpus > 0 && cpus < 0.01) return std::nullopt;
    return cpus;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

CgroupVersion detect_cgroup_version(const fs::path& root) {
  std::error_code ec;
  return fs::exists(root / "cgroup.controllers", ec) ? CgroupVersion::v2 : CgroupVersion::v1;
}

std::vector<CgroupWrite> cgroup_writes(const SessionLimits& limits, CgroupVersion version) {
  std::vector<CgroupWrite> writes;
  if (version == CgroupVersion::v1) {
    if (limits.cpus > 0) {
      writes.push_back({"cpu", "cpu.cfs_period_us", std::to_string(kCpuPeriodUs)});
      writes.push_back({"cpu", "cpu.cfs_quota_us", cpu_quota_us(limits.cpus)});
    }
    if (limits.memory_bytes > 0) {
      // Children count against the parent only with use_hierarchy (the default since 5.x; on
      // older kernels it must be set before the cgroup has children, which it has not yet).
      writes.push_back({"memory", "memory.use_hierarchy", "1", true});
      writes.push_back({"memory", "memory.limit_in_bytes", std::to_string(limits.memory_bytes)});
      // memory+swap equal to memory: a hog cannot escape into swap.
      writes.push_back(
          {"memory", "memory.memsw.limit_in_bytes", std::to_string(limits.memory_bytes), true});
    }
    if (limits.pids > 0) writes.push_back({"pids", "pids.max", std::to_string(limits.pids)});
  } else {
    if (limits.cpus > 0)
      writes.push_back({"", "cpu.max", cpu_quota_us(limits.cpus) + " " + std::to_string(kCpuPeriodUs)});
    if (limits.memory_bytes > 0) {
      writes.push_back({"", "memory.max", std::to_string(limits.memory_bytes)});
      writes.push_back({"", "memory.swap.max", "0", true});
    }
    if (limits.pids > 0) writes.push_back({"", "pids.max", std::to_string(limits.pids)});
  }
  return writes;
}

std::string apply_session_limits(const fs::path& root, CgroupVersion version,
                                 const std::string& parent, const SessionLimits& limits) {
  const auto writes = cgroup_writes(limits, version);
  if (writes.empty()) return "";
  std::string error;
  if (version == CgroupVersion::v2) {
    // A v2 cgroup's controller files exist only when its parent delegates the controller.
    for (const char* controller : {"+cpu", "+memory", "+pids"})
      write_value(root / "cgroup.subtree_control", controller, error);  // best effort: checked below
  }
  for (const auto& w : writes) {
    const fs::path dir = root / w.controller / parent;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec)
      return "cannot create cgroup " + dir.string() + ": " + ec.message() +
             " (is the " + (w.controller.empty() ? std::string("cgroup2") : w.controller) +
             " controller mounted?)";
    if (!fs::exists(dir / w.file, ec)) {
      if (w.optional) continue;
      return "cgroup " + dir.string() + " has no " + w.file + ": enable the controller (" +
             (version == CgroupVersion::v1 ? "mount it under " + root.string()
                                           : "cgroup.subtree_control of " + root.string()) +
             ") or set the session limit to 0";
    }
    // Created under the runner's umask (077); runc of a remapped engine runs as the session's
    // unprivileged root and must traverse it to its container's cgroup. Nothing in it is
    // secret: cgroupfs files are root-writable only.
    fs::permissions(dir,
                    fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                        fs::perms::others_read | fs::perms::others_exec,
                    fs::perm_options::replace, ec);
    if (ec) return "cannot open cgroup " + dir.string() + " to the session's root: " + ec.message();
    if (!write_value(dir / w.file, w.value, error) && !w.optional) return error;
  }
  return "";
}

std::string format_byte_size(std::uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (u < 4 && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++u;
  }
  return std::to_string(bytes) + units[u];
}

std::string describe(const SessionLimits& limits) {
  auto cpus = [&] {
    if (limits.cpus <= 0) return std::string("unlimited CPU");
    std::string s = std::to_string(limits.cpus);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s + " CPUs";
  };
  return cpus() + ", " +
         (limits.memory_bytes ? format_byte_size(limits.memory_bytes) : std::string("unlimited")) +
         " memory, " + (limits.pids ? std::to_string(limits.pids) : std::string("unlimited")) +
         " pids, " +
         (limits.disk_bytes ? format_byte_size(limits.disk_bytes) : std::string("unlimited")) +
         " disk";
}

}  // namespace offload::engine
