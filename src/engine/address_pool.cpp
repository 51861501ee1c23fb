#include <stdexcept>

#include "offload/engine/engine.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>

namespace offload::engine {
namespace ip = boost::asio::ip;

namespace {
constexpr std::uint32_t kSlotSize = 4;  // a /30: network, host side, engine side, broadcast
}

bool valid_session_id(const std::string& session_id) {
  if (session_id.size() < 8) return false;
  for (char c : session_id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

AddressPool::AddressPool(ip::network_v4 pool) : pool_(pool.canonical()) {
  if (pool_.prefix_length() > 30)
    throw std::invalid_argument("address pool " + pool.to_string() +
                                " is smaller than a /30; give the runner at least a /30");
  capacity_ = (std::size_t{1} << (32 - pool_.prefix_length())) / kSlotSize;
}

std::size_t AddressPool::capacity() const { return capacity_; }

std::size_t AddressPool::in_use() const {
  std::lock_guard lock(mutex_);
  return used_.size();
}

NetworkSlot AddressPool::make_slot(std::uint32_t index, const std::string& session_id) const {
  const std::uint32_t base = pool_.network().to_uint() + index * kSlotSize;
  const std::string id8 = session_id.substr(0, 8);
  NetworkSlot slot;
  slot.index = index;
  slot.host_address = ip::address_v4(base + 1);
  slot.engine_address = ip::address_v4(base + 2);
  slot.netns = "offload-" + session_id;
  slot.host_veth = "ofl" + id8 + "h";
  slot.engine_veth = "ofl" + id8 + "n";
  return slot;
}

bool AddressPool::prefix_in_use(const std::string& session_id) const {
  for (const auto& [index, id] : used_)
    if (id.compare(0, 8, session_id, 0, 8) == 0) return true;
  return false;
}

bool slot_conflicts(const NetworkSlot& slot,
                    const std::vector<boost::asio::ip::address_v4>& host_addresses) {
  // The slot's /30 starts one below its host side (.1).
  auto base = slot.host_address.to_uint() - 1;
  for (const auto& a : host_addresses)
    if (a.to_uint() >= base && a.to_uint() < base + 4) return true;
  return false;
}

std::vector<boost::asio::ip::address_v4> host_ipv4_addresses() {
  std::vector<boost::asio::ip::address_v4> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    out.emplace_back(ntohl(in->sin_addr.s_addr));
  }
  ::freeifaddrs(list);
  return out;
}

std::optional<NetworkSlot> AddressPool::allocate(const std::string& session_id) {
  return allocate(session_id, [](const NetworkSlot&) { return false; });
}

std::optional<NetworkSlot> AddressPool::allocate(
    const std::string& session_id, const std::function<bool(const NetworkSlot&)>& unusable) {
  if (!valid_session_id(session_id))
    throw std::invalid_argument("session id '" + session_id +
                                "' is not lowercase hex of at least 8 characters");
  std::lock_guard lock(mutex_);
  if (prefix_in_use(session_id))
    throw std::invalid_argument("session id " + session_id +
                                " shares its first 8 characters with a live session");
  // The lowest free index whose addresses nobody else on this host uses.
  for (std::uint32_t index = 0; index < capacity_; ++index) {
    if (used_.count(index)) continue;
    auto slot = make_slot(index, session_id);
    if (unusable(slot)) continue;
    used_.emplace(index, session_id);
    return slot;
  }
  return std::nullopt;
}

std::optional<NetworkSlot> AddressPool::reserve(std::uint32_t index,
                                                const std::string& session_id) {
  if (!valid_session_id(session_id)) return std::nullopt;
  std::lock_guard lock(mutex_);
  if (index >= capacity_ || used_.count(index) || prefix_in_use(session_id)) return std::nullopt;
  used_.emplace(index, session_id);
  return make_slot(index, session_id);
}

void AddressPool::release(std::uint32_t index) {
  std::lock_guard lock(mutex_);
  used_.erase(index);
}

}  // namespace offload::engine
