#include "host_cleanup.h"

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "offload/common/fs.h"
#include "offload/engine/host_state.h"

namespace offload::engine::detail {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::optional<std::pair<dev_t, ino_t>> inode_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return std::pair{st.st_dev, st.st_ino};
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A process that has exited but is not yet reaped holds nothing but its pid; its parent (or
// init, once the shim is gone) reaps it.
bool exited(const fs::path& proc) {
  const std::string stat = read_text(proc / "stat");
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return true;  // already gone
  return stat[close + 2] == 'Z' || stat[close + 2] == 'X';
}

bool belongs_to_engine(const fs::path& proc, const EngineMarks& marks, bool containers_only) {
  if (cgroup_under(read_text(proc / "cgroup"), marks.cgroup_parent)) return true;
  if (containers_only) return false;
  if (marks.netns && inode_of(proc / "ns" / "net") == marks.netns) return true;
  const std::string cmdline = read_text(proc / "cmdline");
  return cmdline_mentions(cmdline, marks.data_dir) || cmdline_mentions(cmdline, marks.run_dir);
}

void remove_dir_tree_of_cgroups(const fs::path& top, TeardownReport& report) {
  // Only directories can be removed in cgroupfs (its files vanish with them), children first.
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(top, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) dirs.push_back(it->path());
  std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
    return a.string().size() > b.string().size();
  });
  dirs.push_back(top);
  for (const auto& d : dirs) ::rmdir(d.c_str());
  if (!fs::exists(top, ec)) report.removed.push_back("cgroup " + top.string());
}

}  // namespace

std::string read_text(const fs::path& path) {
  std::string text;
  if (read_file(path, text)) text.clear();
  return text;
}

EngineMarks EngineMarks::of(const EngineSpec& spec) {
  EngineMarks marks;
  marks.data_dir = spec.data_dir;
  marks.run_dir = spec.run_dir;
  marks.cgroup_parent = spec.cgroup_parent();
  if (!spec.slot.netns.empty()) marks.netns = inode_of(fs::path("/var/run/netns") / spec.slot.netns);
  return marks;
}

std::vector<EngineProcess> engine_processes(const EngineMarks& marks, bool containers_only) {
  std::vector<EngineProcess> found;
  const pid_t self = ::getpid();
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == self || pid == 1) continue;
    if (!belongs_to_engine(it->path(), marks, containers_only) || exited(it->path())) continue;
    found.push_back({pid, trim(read_text(it->path() / "comm"))});
  }
  return found;
}

std::size_t kill_containers(const EngineMarks& marks) {
  auto containers = engine_processes(marks, true);
  for (const auto& p : containers) ::kill(p.pid, SIGKILL);
  return containers.size();
}

bool kill_engine_processes(const EngineMarks& marks, std::chrono::milliseconds patience,
                           TeardownReport& report, std::vector<fs::path>& shim_sockets) {
  auto until = std::chrono::steady_clock::now() + patience;
  std::vector<pid_t> reported;
  for (;;) {
    auto left = engine_processes(marks);
    if (left.empty()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    for (const auto& p : left) {
      if (auto socket = shim_socket(read_text("/proc/" + std::to_string(p.pid) + "/cmdline")))
        shim_sockets.push_back(*socket);
      ::kill(p.pid, SIGKILL);
      if (std::find(reported.begin(), reported.end(), p.pid) == reported.end()) {
        reported.push_back(p.pid);
        report.removed.push_back("process " + std::to_string(p.pid) + " (" + p.name + ")");
      }
    }
    std::this_thread::sleep_for(50ms);
  }
}

void remove_shim_sockets(const std::vector<fs::path>& sockets, TeardownReport& report) {
  for (const auto& socket : sockets) {
    std::error_code ec;
    if (fs::remove(socket, ec)) report.removed.push_back("shim socket " + socket.string());
  }
}

std::vector<fs::path> mounts_within(const std::vector<fs::path>& dirs) {
  return mount_points_within(read_text("/proc/self/mountinfo"), dirs);
}

void unmount_within(const std::vector<fs::path>& dirs, TeardownReport& report) {
  for (const auto& mount_point : mounts_within(dirs)) {
    if (::umount2(mount_point.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
      report.removed.push_back("mount " + mount_point.string());
  }
}

std::vector<fs::path> cgroup_dirs(const std::string& parent) {
  std::vector<fs::path> found;
  std::istringstream mountinfo(read_text("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(mountinfo, line)) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream fields(line.substr(0, dash)), fs_fields(line.substr(dash + 3));
    std::string id, parent_id, devno, root, mount_point, fstype;
    fields >> id >> parent_id >> devno >> root >> mount_point;
    fs_fields >> fstype;
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    fs::path candidate = fs::path(mount_point) / parent;
    std::error_code ec;
    if (fs::is_directory(candidate, ec)) found.push_back(candidate);
  }
  return found;
}

void remove_cgroups(const std::string& parent, TeardownReport& report) {
  for (const auto& dir : cgroup_dirs(parent)) remove_dir_tree_of_cgroups(dir, report);
}

}  // namespace offload::engine::detail
