#include "offload/engine/userns.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "offload/common/process.h"

namespace offload::engine {
namespace fs = std::filesystem;

namespace {

// Ids stay below 2^31: (uid_t)-1 is reserved, and the sync replica passes owners as int.
constexpr std::uint64_t kIdLimit = 2147483647ULL;

std::string describe(const SubidRange& r) {
  return r.owner + ":" + std::to_string(r.start) + ":" + std::to_string(r.count);
}

bool parse_number(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;
  out = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    out = out * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return true;
}

std::optional<SubidRange> parse_line(std::string_view line) {
  auto first = line.find(':');
  if (first == std::string_view::npos) return std::nullopt;
  auto second = line.find(':', first + 1);
  if (second == std::string_view::npos) return std::nullopt;
  SubidRange r;
  r.owner = std::string(line.substr(0, first));
  auto count = line.substr(second + 1);
  while (!count.empty() && (count.back() == '\r' || count.back() == ' ')) count.remove_suffix(1);
  if (r.owner.empty() || !parse_number(line.substr(first + 1, second - first - 1), r.start) ||
      !parse_number(count, r.count))
    return std::nullopt;
  return r;
}

std::string sys_error(const std::string& what) { return what + ": " + std::strerror(errno); }

// Held for the read-modify-write of one subid file: other runners and shadow-utils do not know
// our lock, but two engines of this runner starting at once must not lose each other's line.
class FileLock {
 public:
  explicit FileLock(const fs::path& file) {
    const auto lock = file.string() + ".offload-lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::runtime_error(sys_error("cannot open lock file " + lock));
    if (::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      throw std::runtime_error(sys_error("cannot lock " + lock));
    }
  }
  ~FileLock() { ::close(fd_); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

std::mutex g_process_lock;  // flock is per open file description: also exclude our own threads

}  // namespace

std::string userns_user(std::uint32_t slot_index) {
  return "offload-s" + std::to_string(slot_index);
}

SubidRange slot_range(std::uint64_t base, std::uint32_t slot_index) {
  SubidRange r{userns_user(slot_index), base + std::uint64_t{slot_index} * kSubidCount,
               kSubidCount};
  if (base > kIdLimit || r.start + r.count > kIdLimit)
    throw std::out_of_range("subordinate id range of slot " + std::to_string(slot_index) +
                            " from base " + std::to_string(base) +
                            " goes past 2^31 - 1: lower --subid-base");
  return r;
}

std::vector<SubidRange> parse_subid(std::string_view text) {
  std::vector<SubidRange> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    if (auto r = parse_line(text.substr(pos, end - pos))) out.push_back(std::move(*r));
    pos = end + 1;
  }
  return out;
}

std::string with_subid_entry(std::string_view text, const SubidRange& range) {
  bool present = false;
  for (const auto& r : parse_subid(text)) {
    const bool same = r.owner == range.owner && r.start == range.start && r.count == range.count;
    if (same) {
      present = true;
      continue;
    }
    if (r.owner == range.owner)
      throw std::runtime_error("user " + range.owner + " already has the range " + describe(r) +
                               ", not " + describe(range) +
                               ": remove that line (or change --subid-base) so the session's "
                               "containers map to one range only");
    if (r.overlaps(range))
      throw std::runtime_error("subordinate id range " + describe(range) + " overlaps " +
                               describe(r) + " of another user: choose another --subid-base");
  }
  std::string out(text);
  if (present) return out;
  if (!out.empty() && out.back() != '\n') out += '\n';
  out += describe(range) + "\n";
  return out;
}

void ensure_subid_entry(const fs::path& file, const SubidRange& range) {
  std::lock_guard guard(g_process_lock);
  FileLock lock(file);
  std::string text;
  if (std::ifstream in{file}) {
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  } else if (fs::exists(file)) {
    throw std::runtime_error("cannot read " + file.string());
  }
  const std::string updated = with_subid_entry(text, range);
  if (updated == text) return;
  const auto tmp = file.string() + ".offload-tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << updated;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  ::chmod(tmp.c_str(), 0644);
  std::error_code ec;
  fs::rename(tmp, file, ec);
  if (ec) throw std::runtime_error("cannot replace " + file.string() + ": " + ec.message());
}

UsernsMapping prepare_userns(std::uint64_t base, std::uint32_t slot_index,
                             const UsernsFiles& files) {
  const auto range = slot_range(base, slot_index);
  if (::getpwnam(range.owner.c_str()) == nullptr) {
    auto r = run_command({"useradd", "--system", "--no-create-home", "--shell",
                          "/usr/sbin/nologin", "--user-group", range.owner});
    // 9: the user appeared in between (another runner): fine.
    if (!r.ok() && r.exit_code != 9)
      throw std::runtime_error("cannot create user " + range.owner +
                               " for the session's user namespace: " +
                               (r.error.empty() ? r.output : r.error));
  }
  ensure_subid_entry(files.subuid, range);
  ensure_subid_entry(files.subgid, range);
  return {range.owner, static_cast<std::uint32_t>(range.start),
          static_cast<std::uint32_t>(range.start)};
}

void grant_traverse(const fs::path& dir) {
  for (fs::path p = dir; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) throw std::runtime_error(sys_error("cannot stat " + p.string()));
    if ((st.st_mode & S_IXOTH) == 0 && ::chmod(p.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0)
      throw std::runtime_error(sys_error("cannot allow o+x on " + p.string() +
                                         " (the session's remapped root must reach its data)"));
  }
}

}  // namespace offload::engine
