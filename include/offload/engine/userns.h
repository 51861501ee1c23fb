// User-namespace remapping of session engines: each address-pool slot gets its own system user
// ("offload-s<index>") and its own subordinate uid/gid range, so container root of one session is
// an unprivileged host uid that no other session and no other program on the host shares.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace offload::engine {

// dockerd needs 65536 ids for a remapped root (a full 16-bit range, as Debian's useradd gives).
constexpr std::uint64_t kSubidCount = 65536;
// Far above where useradd hands out ranges (100000 + 65536 * n); leaves room for ~17000 slots
// below 2^31.
constexpr std::uint64_t kDefaultSubidBase = 1000000000;

// One line of /etc/subuid or /etc/subgid: "<owner>:<start>:<count>".
struct SubidRange {
  std::string owner;
  std::uint64_t start = 0, count = 0;
  bool overlaps(const SubidRange& other) const {
    return start < other.start + other.count && other.start < start + count;
  }
};

// What the engine needs to run `dockerd --userns-remap`: the user dockerd looks the ranges up
// by (dockerd 20.10 matches /etc/subuid lines by user name only) and where container root lands.
struct UsernsMapping {
  std::string user;
  std::uint32_t root_uid = 0, root_gid = 0;  // host ids of container uid/gid 0
};

// "offload-s<index>".
std::string userns_user(std::uint32_t slot_index);
// The slot's range: base + index * 65536. Throws std::out_of_range past 2^31 - 1.
SubidRange slot_range(std::uint64_t base, std::uint32_t slot_index);

// Lines that do not parse (comments, blanks, junk) are skipped.
std::vector<SubidRange> parse_subid(std::string_view text);
// `text` with `range` in it exactly once, every other line kept as it was. Throws
// std::runtime_error naming the clash when another line overlaps `range` or gives its owner
// another range (dockerd would map all of an owner's ranges).
std::string with_subid_entry(std::string_view text, const SubidRange& range);
// with_subid_entry applied to `file` under an exclusive lock, replaced atomically (temp file +
// rename, mode 0644); a missing file is created. Throws std::runtime_error.
void ensure_subid_entry(const std::filesystem::path& file, const SubidRange& range);

struct UsernsFiles {
  std::filesystem::path subuid = "/etc/subuid", subgid = "/etc/subgid";
};
// Creates the slot's system user if missing (useradd --system, no home, nologin; kept for
// reuse by later sessions of the slot) and its subuid/subgid lines. Throws std::runtime_error.
UsernsMapping prepare_userns(std::uint64_t base, std::uint32_t slot_index,
                             const UsernsFiles& files = {});

// dockerd refuses a remapped data-root whose ancestors the remapped root cannot traverse: adds
// o+x (not o+r: nothing becomes listable) to `dir` and each ancestor that lacks it.
void grant_traverse(const std::filesystem::path& dir);

}  // namespace offload::engine
