// What a session's containers may reach, as iptables rules: pure functions, so the order and the
// exceptions are unit-tested without root. host_network.cpp runs what they return.
#pragma once

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace offload::engine {

// The operator's say over a session's egress (runner flags --egress-allow / --egress-deny).
struct EgressPolicy {
  // The runner's address pool: other sessions' engines. Always unreachable, even when an allow
  // entry covers it. Unset: only the session's own /30 is known (tests that start one engine).
  std::optional<boost::asio::ip::network_v4> pool;
  // Reachable although a built-in or `deny` range covers them (e.g. a registry on 10.1.2.3/32).
  std::vector<boost::asio::ip::network_v4> allow;
  // Unreachable in addition to the built-in ranges.
  std::vector<boost::asio::ip::network_v4> deny;
  // A TCP service of the runner host the session's engine may open connections to (the image
  // cache's registry mirror): an INPUT exception above the session's guard that drops the rest.
  struct HostService {
    boost::asio::ip::address_v4 address;
    unsigned short port = 0;
    bool operator==(const HostService&) const = default;
  };
  std::optional<HostService> host_service;
};

// Destinations no session reaches unless allowed: RFC 1918, CGNAT, link-local (cloud metadata),
// loopback, "this network", multicast and reserved.
const std::vector<boost::asio::ip::network_v4>& blocked_destinations();

// Everything the rule builder needs about one session.
struct EgressPlan {
  std::string session_id;       // lowercase hex, >= 8 chars
  std::string comment;          // on every rule, so teardown finds them all
  std::string host_veth;        // the session's host-side interface
  boost::asio::ip::network_v4 slot_network;  // the session's /30 (masqueraded)
  EgressPolicy policy;
  // The nameservers dockerd hands to containers: DNS (53/udp+tcp) to exactly these is accepted
  // even when they sit in a blocked range (typical on clouds) or on the runner host itself.
  std::vector<boost::asio::ip::address_v4> nameservers;
};

// One iptables invocation: `iptables -w 10 -t <table> <args...>`.
struct IptablesCommand {
  std::string table;
  std::vector<std::string> args;
  bool operator==(const IptablesCommand&) const = default;
};

// "OFL-<first 8 hex digits>": the session's filter chain for traffic it sends through the host.
std::string egress_chain(std::string_view session_id);

// The commands that set up the session's isolation and NAT, in the order to run them: create the
// chain, fill it, then hook it and the INPUT guard in at the top of FORWARD/INPUT (so a host
// FORWARD policy of DROP does not cut the session off), then masquerade. Every rule carries
// plan.comment.
std::vector<IptablesCommand> egress_setup(const EgressPlan& plan);

// From the iptables-save output of one table, the commands that remove everything of a session:
// each rule carrying `comment`, then (filter table) the session's chain if it exists. Deleting
// the hooks before the chain is what lets -X succeed.
std::vector<IptablesCommand> egress_teardown(std::string_view table, std::string_view save_output,
                                             std::string_view session_id,
                                             std::string_view comment);

// True when iptables-save output of the filter table still declares the session's chain.
bool egress_chain_exists(std::string_view save_output, std::string_view session_id);

// The IPv4 nameservers of a resolv.conf; loopback ones are left out (dockerd replaces them with
// public resolvers, which need no exception).
std::vector<boost::asio::ip::address_v4> resolv_conf_nameservers(std::string_view text);

// Parses "a.b.c.d/n" (or a bare address as /32) strictly; nullopt when malformed.
std::optional<boost::asio::ip::network_v4> parse_cidr(std::string_view text);

}  // namespace offload::engine
