// The session's disk quota: its data_dir (dockerd's data root and the sync root) is an ext4
// filesystem of a fixed size, made in a sparse image file next to data_dir and loop-mounted on
// it before anything else goes there. Images, writable layers, volumes, build cache and synced
// bind-mount copies then share one cap, and a full session gets ENOSPC instead of filling the
// runner's state disk. The pure parts live here so they are unit-testable without root.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace offload::engine {

// Below this, ext4's own overhead (journal, inode tables) and dockerd's empty data root leave no
// room for an image.
constexpr std::uint64_t kMinSessionDisk = 64ull << 20;

// "" when `bytes` is 0 (no quota) or a usable quota; otherwise one line saying why not.
std::string check_session_disk(std::uint64_t bytes);

// `<data_dir>.disk`: beside data_dir, not in it (it is the filesystem mounted there) and not in
// run_dir (a tmpfs: the session's data would live in RAM).
std::filesystem::path disk_image_of(const std::filesystem::path& data_dir);

// mkfs.ext4 for a fresh sparse image: quiet, no reserved blocks (nobody but the session writes
// there), inode tables and journal not zeroed (a new sparse file reads as zeros already).
std::vector<std::string> mkfs_command(const std::filesystem::path& image);

// mount(8) sets up the loop device with autoclear, so the device detaches itself when the
// filesystem is unmounted. nodev/nosuid: a device node or setuid binary a container wrote into
// its layer is inert from the host side. discard: what the session deletes is punched out of
// the sparse image, so the host gets its space back. noinit_itable: no background zeroing.
std::vector<std::string> mount_command(const std::filesystem::path& image,
                                       const std::filesystem::path& mount_point);

// True if the text of /sys/block/loopN/loop/backing_file names `image` (the kernel appends
// " (deleted)" once the file is unlinked while the device still holds it).
bool backs_image(std::string_view backing_file, const std::filesystem::path& image);

}  // namespace offload::engine
