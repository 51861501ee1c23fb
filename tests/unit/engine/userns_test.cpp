#include "offload/engine/userns.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "temp_dir.h"

using namespace offload::engine;
namespace fs = std::filesystem;

namespace {
std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }
}  // namespace

TEST(Userns, SlotRangesAreDisjointAndAboveTheBase) {
  auto a = slot_range(kDefaultSubidBase, 0);
  auto b = slot_range(kDefaultSubidBase, 1);
  EXPECT_EQ(a.owner, "offload-s0");
  EXPECT_EQ(b.owner, "offload-s1");
  EXPECT_EQ(a.start, 1000000000u);
  EXPECT_EQ(a.count, 65536u);
  EXPECT_EQ(b.start, a.start + 65536);
  EXPECT_FALSE(a.overlaps(b));
  EXPECT_FALSE(b.overlaps(a));
  EXPECT_TRUE(a.overlaps(SubidRange{"x", a.start + 65535, 1}));
  EXPECT_FALSE(a.overlaps(SubidRange{"x", a.start + 65536, 1}));
}

TEST(Userns, RangePastTwoToThe31IsRefused) {
  EXPECT_THROW(slot_range(2147483647ULL - 65535, 0), std::out_of_range);
  EXPECT_THROW(slot_range(kDefaultSubidBase, 20000), std::out_of_range);
  EXPECT_NO_THROW(slot_range(kDefaultSubidBase, 1000));
  EXPECT_NO_THROW(slot_range(2147483647ULL - 65536, 0));  // last id 2^31 - 2: still valid
}

TEST(Userns, ParsesSubidLinesAndSkipsJunk) {
  auto ranges = parse_subid("alice:100000:65536\n# comment\n\nbad line\nbob:165536:65536\r\nx:1:\n");
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].owner, "alice");
  EXPECT_EQ(ranges[0].start, 100000u);
  EXPECT_EQ(ranges[1].owner, "bob");
  EXPECT_EQ(ranges[1].count, 65536u);
}

TEST(Userns, AddsTheEntryOnceAndKeepsOtherLines) {
  const auto range = slot_range(kDefaultSubidBase, 2);
  const std::string before = "# keep me\nalice:100000:65536";
  auto once = with_subid_entry(before, range);
  EXPECT_EQ(once, "# keep me\nalice:100000:65536\noffload-s2:1000131072:65536\n");
  EXPECT_EQ(with_subid_entry(once, range), once);
  EXPECT_EQ(with_subid_entry("", range), "offload-s2:1000131072:65536\n");
}

TEST(Userns, RefusesOverlapWithAnotherUsersRange) {
  const auto range = slot_range(kDefaultSubidBase, 0);
  try {
    with_subid_entry("mallory:999990000:20000\n", range);
    FAIL() << "overlap accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("mallory:999990000:20000"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--subid-base"), std::string::npos) << e.what();
  }
}

TEST(Userns, RefusesASecondRangeForTheSlotUser) {
  const auto range = slot_range(kDefaultSubidBase, 0);
  EXPECT_THROW(with_subid_entry("offload-s0:5000000:65536\n", range), std::runtime_error);
}

TEST(Userns, EnsureSubidEntryEditsTheFileInPlace) {
  offload::test::TempDir dir;
  const auto file = dir / "subuid";
  write(file, "alice:100000:65536\n");
  ensure_subid_entry(file, slot_range(kDefaultSubidBase, 0));
  ensure_subid_entry(file, slot_range(kDefaultSubidBase, 1));
  ensure_subid_entry(file, slot_range(kDefaultSubidBase, 0));
  EXPECT_EQ(read(file),
            "alice:100000:65536\noffload-s0:1000000000:65536\noffload-s1:1000065536:65536\n");
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_FALSE(fs::exists(file.string() + ".offload-tmp"));
}

TEST(Userns, EnsureSubidEntryCreatesAMissingFile) {
  offload::test::TempDir dir;
  ensure_subid_entry(dir / "subgid", slot_range(kDefaultSubidBase, 3));
  EXPECT_EQ(read(dir / "subgid"), "offload-s3:1000196608:65536\n");
}

TEST(Userns, EnsureSubidEntryLeavesTheFileAloneOnOverlap) {
  offload::test::TempDir dir;
  const auto file = dir / "subuid";
  write(file, "bob:1000000100:10\n");
  EXPECT_THROW(ensure_subid_entry(file, slot_range(kDefaultSubidBase, 0)), std::runtime_error);
  EXPECT_EQ(read(file), "bob:1000000100:10\n");
}

TEST(Userns, GrantTraverseAddsOnlyOtherExecute) {
  offload::test::TempDir dir;
  const auto inner = dir / "a/b";
  fs::create_directories(inner);
  ::chmod((dir / "a").c_str(), 0700);
  ::chmod(inner.c_str(), 0700);
  grant_traverse(inner);
  struct stat st {};
  ASSERT_EQ(::stat(inner.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0701u);
  ASSERT_EQ(::stat((dir / "a").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0701u);
}
