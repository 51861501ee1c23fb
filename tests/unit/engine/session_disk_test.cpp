// The disk quota's pure parts: sizes, where the image lives, the commands, and how teardown
// recognises the image's loop device. The mount itself is proven by engine_root_test.
#include "offload/engine/session_disk.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "offload/engine/engine.h"
#include "offload/engine/host_state.h"
#include "offload/engine/session_limits.h"

namespace offload::engine {
namespace {
namespace fs = std::filesystem;

bool has(const std::vector<std::string>& argv, const std::string& arg) {
  return std::find(argv.begin(), argv.end(), arg) != argv.end();
}

TEST(SessionDisk, DefaultsTo20GiBAndZeroMeansNoQuota) {
  EXPECT_EQ(SessionLimits{}.disk_bytes, 20ull << 30);
  EXPECT_EQ(check_session_disk(0), "");
  EXPECT_EQ(check_session_disk(20ull << 30), "");
  EXPECT_EQ(check_session_disk(kMinSessionDisk), "");
  const auto problem = check_session_disk(1ull << 20);
  EXPECT_NE(problem.find("1MiB is too small"), std::string::npos) << problem;
  EXPECT_NE(problem.find("at least 64MiB"), std::string::npos) << problem;
  EXPECT_NE(problem.find("0 for no quota"), std::string::npos) << problem;
  EXPECT_EQ(parse_byte_size("20GiB"), 20ull << 30);
}

TEST(SessionDisk, TheImageLivesBesideDataDirOutsideBothDirectories) {
  const fs::path data_dir = "/var/lib/offload-runner/sessions/0123456789abcdef";
  EXPECT_EQ(disk_image_of(data_dir),
            fs::path("/var/lib/offload-runner/sessions/0123456789abcdef.disk"));
  EXPECT_EQ(disk_image_of(data_dir.string() + "/"), disk_image_of(data_dir));
  EngineSpec spec;
  spec.data_dir = data_dir;
  spec.run_dir = "/run/offload-runner/01234567";
  EXPECT_EQ(spec.disk_image(), disk_image_of(data_dir));
  // Inside data_dir it would be inside the filesystem it holds; in run_dir (tmpfs), in RAM.
  EXPECT_FALSE(path_within(spec.disk_image(), spec.data_dir));
  EXPECT_FALSE(path_within(spec.disk_image(), spec.run_dir));
}

TEST(SessionDisk, MakesASparseFriendlyExt4WithoutReservedBlocks) {
  const auto argv = mkfs_command("/s/abc.disk");
  ASSERT_FALSE(argv.empty());
  EXPECT_EQ(argv.front(), "mkfs.ext4");
  EXPECT_EQ(argv.back(), "/s/abc.disk");
  EXPECT_TRUE(has(argv, "-q"));
  EXPECT_TRUE(has(argv, "-F"));  // a regular file, not a block device: no question asked
  auto m = std::find(argv.begin(), argv.end(), "-m");
  ASSERT_NE(m, argv.end());
  EXPECT_EQ(*(m + 1), "0");
  EXPECT_TRUE(has(argv, "lazy_itable_init=1,lazy_journal_init=1"));
}

TEST(SessionDisk, LoopMountsWithAutoclearAndInertDevicesAndSetuid) {
  const auto argv = mount_command("/s/abc.disk", "/s/abc");
  const std::vector<std::string> expected = {
      "mount", "-t", "ext4", "-o", "loop,nodev,nosuid,discard,noinit_itable", "/s/abc.disk",
      "/s/abc"};
  EXPECT_EQ(argv, expected);
}

TEST(SessionDisk, RecognisesTheImagesLoopDeviceOnlyByItsExactPath) {
  const fs::path image = "/var/lib/offload-runner/sessions/0123456789abcdef.disk";
  EXPECT_TRUE(backs_image(image.string() + "\n", image));
  EXPECT_TRUE(backs_image(image.string(), image));
  EXPECT_TRUE(backs_image(image.string() + " (deleted)\n", image));
  EXPECT_FALSE(backs_image("", image));
  EXPECT_FALSE(backs_image(image.string() + "2\n", image));
  EXPECT_FALSE(backs_image("/var/lib/offload-runner/sessions/0123456789abcdef\n", image));
  EXPECT_FALSE(backs_image(image.string() + " (deleted)x\n", image));
  EXPECT_FALSE(backs_image("/other" + image.string() + "\n", image));
}

TEST(SessionDisk, DescribeNamesTheDiskQuota) {
  EXPECT_EQ(describe(SessionLimits{}), "2 CPUs, 4GiB memory, 4096 pids, 20GiB disk");
  EXPECT_EQ(describe(SessionLimits{2, 4ull << 30, 4096, 0}),
            "2 CPUs, 4GiB memory, 4096 pids, unlimited disk");
}

}  // namespace
}  // namespace offload::engine
