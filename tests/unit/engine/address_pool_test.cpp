#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "offload/engine/engine.h"

using namespace offload::engine;
namespace ip = boost::asio::ip;

namespace {
AddressPool pool_of(const char* cidr) { return AddressPool(ip::make_network_v4(cidr)); }
}  // namespace

TEST(AddressPool, CarvesThirtiesOutOfThePool) {
  auto pool = pool_of("10.250.0.0/24");
  EXPECT_EQ(pool.capacity(), 64u);
  auto first = pool.allocate("0123456789abcdef");
  auto second = pool.allocate("fedcba9876543210");
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->index, 0u);
  EXPECT_EQ(first->host_address.to_string(), "10.250.0.1");
  EXPECT_EQ(first->engine_address.to_string(), "10.250.0.2");
  EXPECT_EQ(second->index, 1u);
  EXPECT_EQ(second->host_address.to_string(), "10.250.0.5");
  EXPECT_EQ(second->engine_address.to_string(), "10.250.0.6");
  EXPECT_EQ(pool.in_use(), 2u);
}

TEST(AddressPool, UsesTheNetworkEvenIfGivenWithHostBits) {
  auto pool = pool_of("10.250.1.77/28");
  EXPECT_EQ(pool.capacity(), 4u);
  auto slot = pool.allocate("aaaaaaaa");
  ASSERT_TRUE(slot);
  EXPECT_EQ(slot->host_address.to_string(), "10.250.1.65");
}

TEST(AddressPool, NamesFitInInterfaceNamesAndComeFromTheSessionId) {
  auto pool = pool_of("10.250.0.0/24");
  auto slot = pool.allocate("0123456789abcdef0123456789abcdef");
  ASSERT_TRUE(slot);
  EXPECT_LE(slot->host_veth.size(), 15u);
  EXPECT_LE(slot->engine_veth.size(), 15u);
  EXPECT_EQ(slot->host_veth, "ofl01234567h");
  EXPECT_EQ(slot->engine_veth, "ofl01234567n");
  EXPECT_EQ(slot->netns, "offload-0123456789abcdef0123456789abcdef");
}

TEST(AddressPool, ReusesAReleasedSlot) {
  auto pool = pool_of("10.250.0.0/29");
  auto a = pool.allocate("aaaaaaaa");
  auto b = pool.allocate("bbbbbbbb");
  ASSERT_TRUE(a && b);
  pool.release(a->index);
  auto c = pool.allocate("cccccccc");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->index, a->index);
  EXPECT_EQ(c->engine_address, a->engine_address);
  EXPECT_EQ(c->host_veth, "oflcccccccch");
}

TEST(AddressPool, ReportsExhaustion) {
  auto pool = pool_of("10.250.0.0/29");
  ASSERT_TRUE(pool.allocate("aaaaaaaa"));
  ASSERT_TRUE(pool.allocate("bbbbbbbb"));
  EXPECT_FALSE(pool.allocate("cccccccc").has_value());
  pool.release(1);
  EXPECT_TRUE(pool.allocate("cccccccc").has_value());
}

TEST(AddressPool, ReleasingAnUnknownIndexIsHarmless) {
  auto pool = pool_of("10.250.0.0/30");
  pool.release(0);
  pool.release(1234);
  EXPECT_TRUE(pool.allocate("aaaaaaaa").has_value());
  EXPECT_FALSE(pool.allocate("bbbbbbbb").has_value());
}

TEST(AddressPool, RejectsPoolsSmallerThanASlot) {
  EXPECT_THROW(pool_of("10.250.0.0/31"), std::invalid_argument);
  EXPECT_THROW(pool_of("10.250.0.0/32"), std::invalid_argument);
  EXPECT_EQ(pool_of("10.250.0.0/30").capacity(), 1u);
}

TEST(AddressPool, RejectsMalformedAndClashingSessionIds) {
  auto pool = pool_of("10.250.0.0/24");
  EXPECT_THROW(pool.allocate("abc"), std::invalid_argument);
  EXPECT_THROW(pool.allocate("ABCDEF0123"), std::invalid_argument);
  EXPECT_THROW(pool.allocate("0123456z"), std::invalid_argument);
  ASSERT_TRUE(pool.allocate("0123456789"));
  // Same first 8 chars would mean the same interface names.
  EXPECT_THROW(pool.allocate("01234567ff"), std::invalid_argument);
}

TEST(AddressPool, ReserveClaimsAChosenSlotOnce) {
  auto pool = pool_of("10.250.0.0/28");
  auto slot = pool.reserve(2, "aaaaaaaa");
  ASSERT_TRUE(slot);
  EXPECT_EQ(slot->engine_address.to_string(), "10.250.0.10");
  EXPECT_FALSE(pool.reserve(2, "bbbbbbbb"));
  EXPECT_FALSE(pool.reserve(4, "bbbbbbbb"));  // outside the pool
  auto next = pool.allocate("cccccccc");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->index, 0u);
}

TEST(AddressPool, DistinctSessionsGetDistinctSlotsAcrossThreads) {
  auto pool = pool_of("10.250.0.0/22");  // 256 slots
  std::vector<std::optional<NetworkSlot>> slots(200);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = t; i < 200; i += 4) {
        char id[17];
        std::snprintf(id, sizeof id, "%08x%08x", i, 0xabcdu);
        slots[i] = pool.allocate(id);
      }
    });
  for (auto& th : threads) th.join();
  std::set<std::uint32_t> indices;
  std::set<std::string> addresses, names;
  for (const auto& s : slots) {
    ASSERT_TRUE(s);
    indices.insert(s->index);
    addresses.insert(s->engine_address.to_string());
    addresses.insert(s->host_address.to_string());
    names.insert(s->host_veth);
    names.insert(s->engine_veth);
  }
  EXPECT_EQ(indices.size(), 200u);
  EXPECT_EQ(addresses.size(), 400u);
  EXPECT_EQ(names.size(), 400u);
  EXPECT_EQ(pool.in_use(), 200u);
}

TEST(AddressPool, SkipsSlotsWhoseAddressesTheHostAlreadyUses) {
  offload::engine::AddressPool pool(boost::asio::ip::make_network_v4("10.213.0.0/28"));
  // Another runner with the same pool already holds the first /30 (its host side .1).
  std::vector<boost::asio::ip::address_v4> host = {boost::asio::ip::make_address_v4("10.213.0.1"),
                                                   boost::asio::ip::make_address_v4("127.0.0.1")};
  auto slot = pool.allocate("aaaaaaaa01", [&](const offload::engine::NetworkSlot& s) {
    return offload::engine::slot_conflicts(s, host);
  });
  ASSERT_TRUE(slot);
  EXPECT_EQ(slot->index, 1u);
  EXPECT_EQ(slot->host_address.to_string(), "10.213.0.5");
  EXPECT_FALSE(offload::engine::slot_conflicts(*slot, host));
  // The skipped slot stays free for later, when the host no longer uses it.
  auto next = pool.allocate("bbbbbbbb02");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->index, 0u);
  EXPECT_FALSE(offload::engine::host_ipv4_addresses().empty());  // at least loopback
}
