#include <gtest/gtest.h>

#include "offload/tunnel/pump.h"

namespace offload::tunnel {
namespace {

TEST(ChunkSizer, StartsSmallAndGrowsOnlyWhileReadsFillTheBuffer) {
  ChunkSizer s;
  EXPECT_EQ(s.next(), kFirstChunkSize);
  s.filled(100);  // a request head: no reason to grow
  EXPECT_EQ(s.next(), kFirstChunkSize);
  s.filled(kFirstChunkSize);
  EXPECT_EQ(s.next(), 2 * kFirstChunkSize);
  for (int i = 0; i < 20; ++i) s.filled(s.next());
  EXPECT_EQ(s.next(), kChunkSize);  // capped
  s.filled(10);
  EXPECT_EQ(s.next(), kChunkSize);  // never shrinks: a bulk stream pauses, then goes on
}

}  // namespace
}  // namespace offload::tunnel
