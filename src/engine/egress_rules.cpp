#include "offload/engine/egress_rules.h"

#include <algorithm>
#include <charconv>

#include "offload/engine/host_state.h"

namespace offload::engine {
namespace ip = boost::asio::ip;

namespace {

std::vector<std::string_view> words_of(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

const std::vector<ip::network_v4>& blocked_destinations() {
  static const std::vector<ip::network_v4> blocked = {
      ip::make_network_v4("0.0.0.0/8"),       // "this network"
      ip::make_network_v4("10.0.0.0/8"),      // RFC 1918
      ip::make_network_v4("100.64.0.0/10"),   // carrier-grade NAT (RFC 6598)
      ip::make_network_v4("127.0.0.0/8"),     // loopback
      ip::make_network_v4("169.254.0.0/16"),  // link-local: cloud metadata services
      ip::make_network_v4("172.16.0.0/12"),   // RFC 1918
      ip::make_network_v4("192.168.0.0/16"),  // RFC 1918
      ip::make_network_v4("224.0.0.0/4"),     // multicast
      ip::make_network_v4("240.0.0.0/4"),     // reserved, and broadcast
  };
  return blocked;
}

std::string egress_chain(std::string_view session_id) {
  return "OFL-" + std::string(session_id.substr(0, 8));
}

std::vector<IptablesCommand> egress_setup(const EgressPlan& plan) {
  const std::string chain = egress_chain(plan.session_id);
  const std::vector<std::string> tag = {"-m", "comment", "--comment", plan.comment};
  std::vector<IptablesCommand> out;
  auto filter = [&](std::vector<std::string> match, const std::string& target) {
    match.insert(match.end(), tag.begin(), tag.end());
    match.insert(match.end(), {"-j", target});
    out.push_back({"filter", std::move(match)});
  };
  auto dns = [](const ip::address_v4& ns, const char* proto) {
    return std::vector<std::string>{"-d", ns.to_string() + "/32", "-p", proto, "--dport", "53"};
  };

  out.push_back({"filter", {"-N", chain}});
  // Other sessions first: no allow entry opens them up.
  filter({"-A", chain, "-d", (plan.policy.pool ? *plan.policy.pool : plan.slot_network).to_string()},
         "DROP");
  for (const auto& ns : plan.nameservers)
    for (const char* proto : {"udp", "tcp"}) {
      auto match = dns(ns, proto);
      match.insert(match.begin(), {"-A", chain});
      filter(match, "ACCEPT");
    }
  for (const auto& cidr : plan.policy.allow) filter({"-A", chain, "-d", cidr.to_string()}, "ACCEPT");
  for (const auto& cidr : blocked_destinations())
    filter({"-A", chain, "-d", cidr.to_string()}, "DROP");
  for (const auto& cidr : plan.policy.deny) filter({"-A", chain, "-d", cidr.to_string()}, "DROP");
  // The rest is the internet: accepted here, so the host's FORWARD policy does not matter.
  filter({"-A", chain}, "ACCEPT");

  // Hooks at the top, so rules the host's docker (or anyone) put there first cannot bypass them.
  // Each is inserted at position 1, in reverse of the order wanted: another session setting up
  // at the same time only ever inserts above, so the relative order of this session's hooks
  // holds whatever the interleaving. (Numbered positions did not: a neighbour's insert between
  // two of them put this session's INPUT drop above its accept for replies, and the runner's
  // own port tunnels to the engine were cut off.)
  std::vector<std::pair<std::string, std::vector<std::string>>> hooks;  // chain, match → target
  auto hook = [&](const std::string& hooked, std::vector<std::string> match,
                  const std::string& target) {
    match.insert(match.end(), tag.begin(), tag.end());
    match.insert(match.end(), {"-j", target});
    hooks.emplace_back(hooked, std::move(match));
  };
  hook("FORWARD", {"-i", plan.host_veth}, chain);
  hook("FORWARD", {"-o", plan.host_veth, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"},
       "ACCEPT");
  // The runner host itself: only answers to what it dialled (port tunnels to the engine), and
  // DNS when the nameserver runs on the host.
  hook("INPUT", {"-i", plan.host_veth, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"},
       "ACCEPT");
  for (const auto& ns : plan.nameservers)
    for (const char* proto : {"udp", "tcp"}) {
      auto match = dns(ns, proto);
      match.insert(match.begin(), {"-i", plan.host_veth});
      hook("INPUT", match, "ACCEPT");
    }
  if (const auto& service = plan.policy.host_service)
    hook("INPUT",
         {"-i", plan.host_veth, "-d", service->address.to_string() + "/32", "-p", "tcp", "--dport",
          std::to_string(service->port)},
         "ACCEPT");
  hook("INPUT", {"-i", plan.host_veth}, "DROP");
  for (auto it = hooks.rbegin(); it != hooks.rend(); ++it) {
    std::vector<std::string> args = {"-I", it->first, "1"};
    args.insert(args.end(), it->second.begin(), it->second.end());
    out.push_back({"filter", std::move(args)});
  }

  std::vector<std::string> masquerade = {"-I", "POSTROUTING", "1", "-s",
                                         plan.slot_network.to_string(), "!", "-o", plan.host_veth};
  masquerade.insert(masquerade.end(), tag.begin(), tag.end());
  masquerade.insert(masquerade.end(), {"-j", "MASQUERADE"});
  out.push_back({"nat", std::move(masquerade)});
  return out;
}

bool egress_chain_exists(std::string_view save_output, std::string_view session_id) {
  const std::string declaration = ":" + egress_chain(session_id) + " ";
  for (auto line : lines_of(save_output))
    if (line.rfind(declaration, 0) == 0) return true;
  return false;
}

std::vector<IptablesCommand> egress_teardown(std::string_view table, std::string_view save_output,
                                             std::string_view session_id,
                                             std::string_view comment) {
  std::vector<IptablesCommand> out;
  for (auto& deletion : iptables_deletions(save_output, comment))
    out.push_back({std::string(table), std::move(deletion)});
  if (table == "filter" && egress_chain_exists(save_output, session_id))
    out.push_back({"filter", {"-X", egress_chain(session_id)}});
  return out;
}

std::vector<ip::address_v4> resolv_conf_nameservers(std::string_view text) {
  std::vector<ip::address_v4> out;
  for (auto line : lines_of(text)) {
    auto w = words_of(line);
    if (w.size() < 2 || w[0] != "nameserver") continue;
    boost::system::error_code ec;
    auto address = ip::make_address_v4(std::string(w[1]), ec);
    if (ec || address.is_loopback()) continue;
    out.push_back(address);
  }
  return out;
}

std::optional<ip::network_v4> parse_cidr(std::string_view text) {
  auto slash = text.find('/');
  std::string address_text(text.substr(0, slash));
  unsigned prefix = 32;
  if (slash != std::string_view::npos) {
    auto digits = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || prefix > 32)
      return std::nullopt;
  }
  // inet_pton-strict: four dotted decimals, so "10.1.2" is not silently 10.1.0.2.
  if (std::count(address_text.begin(), address_text.end(), '.') != 3) return std::nullopt;
  boost::system::error_code ec;
  auto address = ip::make_address_v4(address_text, ec);
  if (ec) return std::nullopt;
  return ip::network_v4(address, static_cast<unsigned short>(prefix)).canonical();
}

}  // namespace offload::engine
