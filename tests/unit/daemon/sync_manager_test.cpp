#include <gtest/gtest.h>

#include <filesystem>

#include "offload/daemon/sync_manager.h"

namespace offload::daemon {
namespace {

TEST(UnsyncablePaths, PseudoFilesystemsAndTheRootAreRefused) {
  EXPECT_NE(unsyncable_reason("/"), "");
  EXPECT_NE(unsyncable_reason("/proc").find("proc"), std::string::npos);
  EXPECT_NE(unsyncable_reason("/proc/self"), "");
  EXPECT_NE(unsyncable_reason("/sys").find("sysfs"), std::string::npos);
  EXPECT_NE(unsyncable_reason("/dev"), "");
  if (std::filesystem::exists("/sys/fs/cgroup"))
    EXPECT_NE(unsyncable_reason("/sys/fs/cgroup"), "");
}

TEST(UnsyncablePaths, OrdinaryDirectoriesAreFine) {
  EXPECT_EQ(unsyncable_reason(std::filesystem::temp_directory_path()), "");
  EXPECT_EQ(unsyncable_reason(std::filesystem::current_path()), "");
  EXPECT_EQ(unsyncable_reason("/devices-of-a-project"), "");  // only /dev itself and below
}

}  // namespace
}  // namespace offload::daemon
