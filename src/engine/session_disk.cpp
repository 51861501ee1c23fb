#include "offload/engine/session_disk.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "host_cleanup.h"
#include "offload/common/process.h"
#include "offload/engine/host_state.h"
#include "offload/engine/session_limits.h"

namespace offload::engine {
namespace fs = std::filesystem;
using namespace std::chrono;
using namespace std::chrono_literals;

namespace {

// What every disk error ends with: the operator's way out.
constexpr const char* kWayOut =
    "; or start the runner with --session-disk 0 to run sessions without a disk quota";

// Autoclear detaches the loop device when the kernel drops the filesystem's last reference,
// which trails the unmount by the filesystem's final writeback (seconds on a busy host).
constexpr auto kReleasePatience = 20s;

}  // namespace

std::string check_session_disk(std::uint64_t bytes) {
  if (bytes == 0 || bytes >= kMinSessionDisk) return "";
  return "a session disk of " + format_byte_size(bytes) + " is too small: at least " +
         format_byte_size(kMinSessionDisk) + " (0 for no quota)";
}

fs::path disk_image_of(const fs::path& data_dir) {
  fs::path dir = data_dir.lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();  // "…/<id>/"
  return dir.parent_path() / (dir.filename().string() + ".disk");
}

std::vector<std::string> mkfs_command(const fs::path& image) {
  return {"mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1",
          image.string()};
}

std::vector<std::string> mount_command(const fs::path& image, const fs::path& mount_point) {
  return {"mount", "-t", "ext4", "-o", "loop,nodev,nosuid,discard,noinit_itable",
          image.string(), mount_point.string()};
}

bool backs_image(std::string_view backing_file, const fs::path& image) {
  while (!backing_file.empty() && backing_file.back() == '\n') backing_file.remove_suffix(1);
  constexpr std::string_view deleted = " (deleted)";
  const std::string wanted = image.lexically_normal().string();
  if (backing_file == wanted) return true;
  return backing_file.size() == wanted.size() + deleted.size() &&
         backing_file.substr(0, wanted.size()) == wanted &&
         backing_file.substr(wanted.size()) == deleted;
}

namespace detail {

namespace {

// The kernel shows the path it opened, symlinks resolved.
std::vector<fs::path> image_names(const fs::path& image) {
  std::vector<fs::path> names{image.lexically_normal()};
  std::error_code ec;
  auto canonical = fs::weakly_canonical(image, ec);
  if (!ec && canonical != names.front()) names.push_back(canonical);
  return names;
}

std::string sys_error(const std::string& what) { return what + ": " + std::strerror(errno); }

// Why a loop device stays bound after the unmount: a process whose mount namespace still has
// its filesystem mounted (a copy made while it was mounted here), for the report.
std::string holders_of(const fs::path& device) {
  const std::string devno = read_text(fs::path("/sys/block") / device.filename() / "dev");
  const std::string wanted = devno.substr(0, devno.find('\n'));
  if (wanted.empty()) return "";
  std::vector<std::string> namespaces, holders;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string pid = it->path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code link_ec;
    const std::string ns = fs::read_symlink(it->path() / "ns" / "mnt", link_ec).string();
    if (link_ec || std::find(namespaces.begin(), namespaces.end(), ns) != namespaces.end()) continue;
    const std::string mountinfo = read_text(it->path() / "mountinfo");
    if (mountinfo.find(" " + wanted + " ") == std::string::npos) continue;
    namespaces.push_back(ns);
    std::string comm = read_text(it->path() / "comm");
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    holders.push_back(pid + " (" + comm + ")");
  }
  if (holders.empty()) return "";
  std::string text = " (still mounted in the mount namespace of pid";
  for (const auto& h : holders) text += " " + h;
  return text + ")";
}

}  // namespace

std::vector<fs::path> loop_devices_of(const fs::path& image) {
  std::vector<fs::path> found;
  const auto names = image_names(image);
  std::error_code ec;
  for (fs::directory_iterator it("/sys/block", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("loop", 0) != 0) continue;
    // Present only while the device is bound to a file.
    const std::string backing = read_text(it->path() / "loop" / "backing_file");
    if (backing.empty()) continue;
    for (const auto& n : names) {
      if (backs_image(backing, n)) {
        found.push_back(fs::path("/dev") / name);
        break;
      }
    }
  }
  return found;
}

void mount_session_disk(const EngineSpec& spec) {
  const std::uint64_t bytes = spec.limits.disk_bytes;
  if (bytes == 0) return;
  const fs::path image = spec.disk_image();
  if (!find_program("mkfs.ext4"))
    throw std::runtime_error(std::string("mkfs.ext4 not found, needed for the session's disk "
                                         "quota: install e2fsprogs (apt-get install e2fsprogs)") +
                             kWayOut);
  // O_EXCL: require_fresh has checked that no engine of this session owns one.
  const int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(sys_error("cannot create the session's disk image " + image.string()));
  // Sparse: the host's disk is spent only as the session writes.
  const bool sized = ::ftruncate(fd, static_cast<off_t>(bytes)) == 0;
  const int size_errno = errno;
  ::close(fd);
  if (!sized) {
    errno = size_errno;
    throw std::runtime_error(sys_error("cannot size the session's disk image " + image.string() +
                                       " to " + format_byte_size(bytes)) + kWayOut);
  }
  auto mkfs = run_command(mkfs_command(image), 60s);
  if (!mkfs.ok())
    throw std::runtime_error("mkfs.ext4 failed on the session's disk image " + image.string() +
                             ": " + last_lines(mkfs.output + mkfs.error, 2) + kWayOut);
  auto mount = run_command(mount_command(image, spec.data_dir), 30s);
  if (!mount.ok())
    throw std::runtime_error(
        "cannot loop-mount the session's disk image on " + spec.data_dir.string() + ": " +
        last_lines(mount.output + mount.error, 2) +
        " (the runner needs loop devices: modprobe loop; in a container, give it "
        "/dev/loop-control and /dev/loop*)" + kWayOut);
  // The new filesystem's root is what data_dir is now: private, as make_private_dirs made it.
  if (::chmod(spec.data_dir.c_str(), 0700) != 0)
    throw std::runtime_error(sys_error("cannot make " + spec.data_dir.string() + " private"));
  ::rmdir((spec.data_dir / "lost+found").c_str());  // never fscked: ephemeral
}

void release_session_disk(const EngineSpec& spec, TeardownReport& report) {
  const fs::path image = spec.disk_image();
  const auto bound = loop_devices_of(image);
  // The session's data is over. Unlinked now, the image's blocks return to the host as soon as
  // its loop device lets go, however long the filesystem's last writeback takes.
  std::error_code ec;
  if (fs::is_regular_file(fs::symlink_status(image, ec)) && fs::remove(image, ec))
    report.removed.push_back("disk image " + image.string());
  for (const auto& device : bound) {
    // mount(8) sets autoclear: such a device detaches itself once the kernel drops the
    // filesystem. One without (set up by hand, or by a runner killed between losetup and
    // mount) never does; detaching it is safe only while it is still the image's, and a
    // device another session's mount(8) just took has autoclear set, so it is never touched.
    const fs::path sys = fs::path("/sys/block") / device.filename() / "loop";
    if (read_text(sys / "autoclear").rfind("0", 0) != 0) continue;
    const int fd = ::open(device.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const auto still = loop_devices_of(image);
    if (std::find(still.begin(), still.end(), device) != still.end())
      ::ioctl(fd, LOOP_CLR_FD, 0);
    ::close(fd);
  }
  // Lazily unmounted, the filesystem goes when its last user lets go, which can trail the
  // unmount: the CLI e2e suite once saw the device still bound 5 s later (cause not pinned down;
  // holders_of names the mount namespaces that still have it).
  auto devices = loop_devices_of(image);
  const auto until = steady_clock::now() + kReleasePatience;
  while (!devices.empty() && steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
    devices = loop_devices_of(image);
  }
  for (const auto& device : bound)
    if (std::find(devices.begin(), devices.end(), device) == devices.end())
      report.removed.push_back("loop device " + device.string());
  // Still bound: something holds the filesystem; verification reports it, and the runner's
  // next start-up tries again.
  for (const auto& device : devices)
    spdlog::warn("[engine {}] loop device {} of {} is still bound{}", spec.session_id.substr(0, 8),
                 device.string(), image.string(), holders_of(device));
}

void verify_session_disk(const EngineSpec& spec, TeardownReport& report) {
  const fs::path image = spec.disk_image();
  for (const auto& device : loop_devices_of(image))
    report.leftovers.push_back("loop device " + device.string() + " of " + image.string() +
                               holders_of(device));
  std::error_code ec;
  if (fs::exists(fs::symlink_status(image, ec)))
    report.leftovers.push_back("disk image " + image.string());
}

}  // namespace detail
}  // namespace offload::engine
