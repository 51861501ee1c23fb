// The engine's network on the host: namespace, veth pair, addresses, default route and NAT.
#pragma once

#include "offload/engine/engine.h"

namespace offload::engine::detail {

// Creates everything; throws std::runtime_error naming the step that failed. Partial state is
// left for remove_session_network, which tolerates any subset.
void create_session_network(const EngineSpec& spec);

// Deletes the iptables rules carrying the engine's comment, its egress chain, the veth pair and
// the namespace.
void remove_session_network(const EngineSpec& spec, TeardownReport& report);

// Adds to report.leftovers whatever of the network still exists.
void verify_session_network(const EngineSpec& spec, TeardownReport& report);

bool netns_exists(const std::string& name);
bool link_exists(const std::string& name);

}  // namespace offload::engine::detail
