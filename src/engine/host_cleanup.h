// Finding and removing what an engine left on the host: processes, mounts, cgroups, directories.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "offload/engine/engine.h"

namespace offload::engine::detail {

// The whole content of a (/proc) file, "" when it cannot be read: processes vanish while we look.
std::string read_text(const std::filesystem::path& path);

// What marks a process as the engine's. Taken before the namespace is deleted, since its inode
// is how docker-proxy and host-network containers are recognised.
struct EngineMarks {
  std::filesystem::path data_dir, run_dir;
  std::string cgroup_parent;
  std::optional<std::pair<dev_t, ino_t>> netns;

  static EngineMarks of(const EngineSpec& spec);
};

struct EngineProcess {
  pid_t pid = 0;
  std::string name;  // comm, for reports
};

// Processes of the engine: in its network namespace, in its cgroup parent, or with a command
// line naming its directories. Never this process. `containers_only` keeps just the cgroup ones.
std::vector<EngineProcess> engine_processes(const EngineMarks& marks, bool containers_only = false);

// SIGKILLs the engine's processes until none is left or `patience` runs out; adds what it killed
// to the report, and the sockets of killed shims to `shim_sockets`. Returns true when none is
// left.
bool kill_engine_processes(const EngineMarks& marks, std::chrono::milliseconds patience,
                           TeardownReport& report,
                           std::vector<std::filesystem::path>& shim_sockets);

// Deletes the sockets of shims that were killed; they live outside the engine's directories.
void remove_shim_sockets(const std::vector<std::filesystem::path>& sockets,
                         TeardownReport& report);

// Sends SIGKILL to every container process (cgroup members) once; returns how many.
std::size_t kill_containers(const EngineMarks& marks);

// Lazily unmounts every mount within `dirs`, deepest first.
void unmount_within(const std::vector<std::filesystem::path>& dirs, TeardownReport& report);
std::vector<std::filesystem::path> mounts_within(const std::vector<std::filesystem::path>& dirs);

// The session's disk quota (session_disk.h): before anything else goes into data_dir, creates
// the sparse image, makes the filesystem and loop-mounts it on data_dir (nothing when
// spec.limits.disk_bytes is 0). Throws std::runtime_error with one actionable line.
void mount_session_disk(const EngineSpec& spec);
// The loop devices bound to `image` (/sys/block/loop*/loop/backing_file).
std::vector<std::filesystem::path> loop_devices_of(const std::filesystem::path& image);
// After unmount_within: makes sure the image's loop device is detached, then deletes the image.
void release_session_disk(const EngineSpec& spec, TeardownReport& report);
// Reports a loop device or image still there as left over.
void verify_session_disk(const EngineSpec& spec, TeardownReport& report);

// The engine's cgroup directories in every mounted hierarchy.
std::vector<std::filesystem::path> cgroup_dirs(const std::string& parent);
void remove_cgroups(const std::string& parent, TeardownReport& report);

}  // namespace offload::engine::detail
