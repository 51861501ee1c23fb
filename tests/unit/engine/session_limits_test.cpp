#include "offload/engine/session_limits.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "temp_dir.h"

namespace offload::engine {
namespace {
namespace fs = std::filesystem;
using test::TempDir;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void touch(const fs::path& p, const std::string& content = "max\n") {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << content;
}

TEST(ParseByteSize, AcceptsBinaryUnitsAndPlainBytes) {
  EXPECT_EQ(parse_byte_size("4GiB"), 4ull << 30);
  EXPECT_EQ(parse_byte_size("4G"), 4ull << 30);
  EXPECT_EQ(parse_byte_size("512MiB"), 512ull << 20);
  EXPECT_EQ(parse_byte_size("512mb"), 512ull << 20);
  EXPECT_EQ(parse_byte_size("64k"), 64ull << 10);
  EXPECT_EQ(parse_byte_size("1000000"), 1000000u);
  EXPECT_EQ(parse_byte_size("0"), 0u);
  EXPECT_EQ(parse_byte_size("2TiB"), 2ull << 40);
}

TEST(ParseByteSize, RefusesGarbageNegativesAndOverflow) {
  EXPECT_FALSE(parse_byte_size(""));
  EXPECT_FALSE(parse_byte_size("GiB"));
  EXPECT_FALSE(parse_byte_size("-1G"));
  EXPECT_FALSE(parse_byte_size("4 GiB"));
  EXPECT_FALSE(parse_byte_size("4XB"));
  EXPECT_FALSE(parse_byte_size("1.5G"));
  EXPECT_FALSE(parse_byte_size("99999999999T"));
  EXPECT_FALSE(parse_byte_size("99999999999999999999999"));
}

TEST(ParseCpus, AcceptsFractionsAndZero) {
  EXPECT_EQ(parse_cpus("2"), 2.0);
  EXPECT_EQ(parse_cpus("0.5"), 0.5);
  EXPECT_EQ(parse_cpus("0"), 0.0);
  EXPECT_FALSE(parse_cpus(""));
  EXPECT_FALSE(parse_cpus("-1"));
  EXPECT_FALSE(parse_cpus("two"));
  EXPECT_FALSE(parse_cpus("1e3"));
  EXPECT_FALSE(parse_cpus("0.001"));  // below what the kernel accepts as a quota
  EXPECT_FALSE(parse_cpus("100000"));
}

TEST(DetectCgroupVersion, Cgroup2RootHasControllersFile) {
  TempDir tmp;
  EXPECT_EQ(detect_cgroup_version(tmp.path()), CgroupVersion::v1);
  touch(tmp.path() / "cgroup.controllers", "cpu memory pids\n");
  EXPECT_EQ(detect_cgroup_version(tmp.path()), CgroupVersion::v2);
}

TEST(CgroupWrites, V1WritesQuotaMemoryBeforeMemswAndPids) {
  SessionLimits limits{1.5, 64ull << 20, 100};
  auto writes = cgroup_writes(limits, CgroupVersion::v1);
  std::vector<std::string> got;
  for (const auto& w : writes) got.push_back(w.controller + "/" + w.file + "=" + w.value);
  EXPECT_EQ(got, (std::vector<std::string>{
                     "cpu/cpu.cfs_period_us=100000", "cpu/cpu.cfs_quota_us=150000",
                     "memory/memory.use_hierarchy=1", "memory/memory.limit_in_bytes=67108864",
                     "memory/memory.memsw.limit_in_bytes=67108864", "pids/pids.max=100"}));
}

TEST(CgroupWrites, V2UsesUnifiedFiles) {
  SessionLimits limits{0.5, 1ull << 30, 4096};
  std::vector<std::string> got;
  for (const auto& w : cgroup_writes(limits, CgroupVersion::v2))
    got.push_back(w.controller + "/" + w.file + "=" + w.value);
  EXPECT_EQ(got, (std::vector<std::string>{"/cpu.max=50000 100000", "/memory.max=1073741824",
                                           "/memory.swap.max=0", "/pids.max=4096"}));
}

TEST(CgroupWrites, ZeroMeansNoLimitAndNoWrite) {
  EXPECT_TRUE(cgroup_writes(SessionLimits{0, 0, 0}, CgroupVersion::v1).empty());
  EXPECT_TRUE(cgroup_writes(SessionLimits{0, 0, 0}, CgroupVersion::v2).empty());
  auto only_pids = cgroup_writes(SessionLimits{0, 0, 7}, CgroupVersion::v1);
  ASSERT_EQ(only_pids.size(), 1u);
  EXPECT_EQ(only_pids[0].file, "pids.max");
}

// A fake v1 tree: the kernel creates the control files with the directory; here the test does,
// for the parent cgroup the limits go into (memsw missing: swap accounting off).
TEST(ApplySessionLimits, V1WritesIntoEachControllersParentAndSkipsMissingMemsw) {
  TempDir tmp;
  const auto root = tmp.path();
  for (const char* f : {"cpu/offload-abc/cpu.cfs_period_us", "cpu/offload-abc/cpu.cfs_quota_us",
                        "memory/offload-abc/memory.limit_in_bytes",
                        "memory/offload-abc/memory.use_hierarchy", "pids/offload-abc/pids.max"})
    touch(root / f);
  auto error = apply_session_limits(root, CgroupVersion::v1, "offload-abc",
                                    SessionLimits{2, 4ull << 30, 4096});
  EXPECT_EQ(error, "");
  EXPECT_EQ(slurp(root / "cpu/offload-abc/cpu.cfs_quota_us"), "200000");
  EXPECT_EQ(slurp(root / "cpu/offload-abc/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(slurp(root / "memory/offload-abc/memory.limit_in_bytes"), "4294967296");
  EXPECT_EQ(slurp(root / "pids/offload-abc/pids.max"), "4096");
  EXPECT_FALSE(fs::exists(root / "memory/offload-abc/memory.memsw.limit_in_bytes"));
}

// The runner's umask is 077; runc, started as a remapped (unprivileged) root, must still reach
// its container's cgroup under the session's parent, or every `docker run` fails with
// "error mounting cgroup ... permission denied".
TEST(ApplySessionLimits, TheSessionsParentIsTraversableByARemappedRoot) {
  TempDir tmp;
  const auto root = tmp.path();
  for (const char* f : {"cpu/offload-abc/cpu.cfs_period_us", "cpu/offload-abc/cpu.cfs_quota_us",
                        "pids/offload-abc/pids.max"})
    touch(root / f);
  for (const char* d : {"cpu/offload-abc", "pids/offload-abc"})
    fs::permissions(root / d, fs::perms::owner_all, fs::perm_options::replace);
  ASSERT_EQ(apply_session_limits(root, CgroupVersion::v1, "offload-abc", SessionLimits{2, 0, 64}),
            "");
  for (const char* d : {"cpu/offload-abc", "pids/offload-abc"}) {
    auto perms = fs::status(root / d).permissions();
    EXPECT_EQ(perms & (fs::perms::others_exec | fs::perms::others_write),
              fs::perms::others_exec)
        << d;
  }
}

TEST(ApplySessionLimits, MissingControllerFileIsAnActionableError) {
  TempDir tmp;
  touch(tmp.path() / "cpu/offload-abc/cpu.cfs_period_us");
  touch(tmp.path() / "cpu/offload-abc/cpu.cfs_quota_us");
  auto error = apply_session_limits(tmp.path(), CgroupVersion::v1, "offload-abc",
                                    SessionLimits{2, 0, 10});
  EXPECT_NE(error.find("has no pids.max"), std::string::npos) << error;
  EXPECT_NE(error.find("set the session limit to 0"), std::string::npos) << error;
}

TEST(ApplySessionLimits, V2EnablesControllersAndWritesUnifiedFiles) {
  TempDir tmp;
  const auto root = tmp.path();
  touch(root / "cgroup.controllers", "cpu memory pids\n");
  touch(root / "cgroup.subtree_control", "");
  for (const char* f : {"offload-abc/cpu.max", "offload-abc/memory.max",
                        "offload-abc/memory.swap.max", "offload-abc/pids.max"})
    touch(root / f);
  auto error = apply_session_limits(root, CgroupVersion::v2, "offload-abc",
                                    SessionLimits{1, 512ull << 20, 64});
  EXPECT_EQ(error, "");
  EXPECT_EQ(slurp(root / "offload-abc/cpu.max"), "100000 100000");
  EXPECT_EQ(slurp(root / "offload-abc/memory.max"), "536870912");
  EXPECT_EQ(slurp(root / "offload-abc/memory.swap.max"), "0");
  EXPECT_EQ(slurp(root / "offload-abc/pids.max"), "64");
  // A regular file keeps only the last write; the kernel's keeps each "+controller".
  EXPECT_EQ(slurp(root / "cgroup.subtree_control"), "+pids");
}

TEST(DescribeLimits, SaysWhatIsLimited) {
  EXPECT_EQ(describe(SessionLimits{}), "2 CPUs, 4GiB memory, 4096 pids, 20GiB disk");
  EXPECT_EQ(describe(SessionLimits{0.5, 0, 0, 0}),
            "0.5 CPUs, unlimited memory, unlimited pids, unlimited disk");
  EXPECT_EQ(describe(SessionLimits{0, 1536ull << 20, 1, 512ull << 20}),
            "unlimited CPU, 1536MiB memory, 1 pids, 512MiB disk");
}

}  // namespace
}  // namespace offload::engine
