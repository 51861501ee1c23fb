#include <gtest/gtest.h>

#include "offload/sync/wire.h"

namespace offload::sync {
namespace {

v1::SyncEntry file_entry(std::uint32_t mode) {
  v1::SyncEntry e;
  e.set_path("bin/tool");
  e.set_type(v1::SyncEntry::TYPE_FILE);
  e.set_mode(mode);
  e.set_size(3);
  return e;
}

TEST(WireEntry, SetIdBitsFromThePeerAreDropped) {
  // A hostile runner may send any mode: what comes off the wire never asks for set-id bits.
  auto e = from_wire(file_entry(06755));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->mode, 0755u);
  auto sticky = from_wire(file_entry(01777 | 0170000));
  ASSERT_TRUE(sticky);
  EXPECT_EQ(sticky->mode, 01777u);  // file-type bits never count either
}

TEST(WireEntry, RoundTripKeepsPermissions) {
  Entry in;
  in.path = "a/b";
  in.type = EntryType::file;
  in.mode = 0640;
  in.size = 7;
  in.mtime_ns = 42;
  auto out = from_wire(to_wire(in));
  ASSERT_TRUE(out);
  EXPECT_TRUE(out->same_as(in));
  EXPECT_EQ(out->path, in.path);
}

TEST(WireEntry, UnsafePathsAreRefused) {
  for (const char* path : {"/etc/passwd", "../up", "a/../../b", "a//b"}) {
    auto e = file_entry(0644);
    e.set_path(path);
    EXPECT_FALSE(from_wire(e)) << path;
  }
}

}  // namespace
}  // namespace offload::sync
