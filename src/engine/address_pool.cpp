#include <stdexcept>

#include "offload/engine/engine.h"

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

std::optional<NetworkSlot> AddressPool::allocate(const std::string& session_id) {
  if (!valid_session_id(session_id))
    throw std::invalid_argument("session id '" + session_id +
                                "' is not lowercase hex of at least 8 characters");
  std::lock_guard lock(mutex_);
  if (prefix_in_use(session_id))
    throw std::invalid_argument("session id " + session_id +
                                " shares its first 8 characters with a live session");
  // used_ is ordered, so the first gap is the lowest free index.
  std::uint32_t index = 0;
  for (const auto& [taken, id] : used_) {
    if (taken != index) break;
    ++index;
  }
  if (index >= capacity_) return std::nullopt;
  used_.emplace(index, session_id);
  return make_slot(index, session_id);
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
