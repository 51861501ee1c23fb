// The session egress rules: what a container may reach through the runner host, in which order.
#include "offload/engine/egress_rules.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

using namespace offload::engine;
namespace ip = boost::asio::ip;

namespace {

EgressPlan plan() {
  EgressPlan p;
  p.session_id = "0123abcdef";
  p.comment = "offload:0123abcdef";
  p.host_veth = "ofl0123abcdh";
  p.slot_network = ip::make_network_v4("10.213.0.4/30");
  p.policy.pool = ip::make_network_v4("10.213.0.0/16");
  return p;
}

std::string joined(const IptablesCommand& c) {
  std::string s = c.table + ":";
  for (const auto& a : c.args) s += " " + a;
  return s;
}

// Index of the first command whose text contains every one of `needles`, or -1.
int find(const std::vector<IptablesCommand>& cmds, std::vector<std::string> needles) {
  for (std::size_t i = 0; i < cmds.size(); ++i) {
    auto text = joined(cmds[i]) + " ";
    if (std::all_of(needles.begin(), needles.end(),
                    [&](const std::string& n) { return text.find(n) != std::string::npos; }))
      return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

TEST(EgressRules, ChainNameIsPrefixedShortSessionId) {
  EXPECT_EQ(egress_chain("0123abcdef"), "OFL-0123abcd");
  EXPECT_LE(egress_chain("0123abcdef").size(), 28u);  // iptables' chain name limit
}

TEST(EgressRules, ChainCreatedFirstThenFilledThenHookedAtTheTop) {
  auto cmds = egress_setup(plan());
  ASSERT_FALSE(cmds.empty());
  EXPECT_EQ(joined(cmds[0]), "filter: -N OFL-0123abcd");
  int jump = find(cmds, {"-I FORWARD 1 -i ofl0123abcdh -m comment", "-j OFL-0123abcd"});
  int replies = find(cmds, {"-I FORWARD 1 -o ofl0123abcdh", "RELATED,ESTABLISHED", "-j ACCEPT"});
  int last_in_chain = find(cmds, {"-A OFL-0123abcd -m comment", "-j ACCEPT"});
  ASSERT_GE(jump, 0);
  ASSERT_GE(replies, 0);
  ASSERT_GE(last_in_chain, 0);
  EXPECT_LT(last_in_chain, jump) << "the chain is complete before traffic enters it";
  // Everything that the chain does not drop is accepted inside it: a FORWARD policy of DROP
  // must not cut the session off from the internet.
  for (std::size_t i = 0; i < cmds.size(); ++i) {
    if (cmds[i].args.size() > 1 && cmds[i].args[0] == "-A") {
      EXPECT_LE(static_cast<int>(i), last_in_chain) << joined(cmds[i]);
    }
  }
}

TEST(EgressRules, InputOnlyRepliesFromTheSession) {
  auto cmds = egress_setup(plan());
  int established = find(cmds, {"-I INPUT 1 -i ofl0123abcdh", "ESTABLISHED,RELATED", "-j ACCEPT"});
  int drop = find(cmds, {"-I INPUT 1 -i ofl0123abcdh -m comment", "-j DROP"});
  ASSERT_GE(established, 0);
  ASSERT_GE(drop, 0);
  // Both go to the top, the drop first, so the accept ends up above it.
  EXPECT_LT(drop, established);
}

namespace {

// Just enough of iptables to replay -N, -A and -I [position] on filter chains.
using Chains = std::map<std::string, std::vector<std::string>>;
void replay(Chains& chains, const IptablesCommand& c) {
  if (c.table != "filter") return;
  const auto& a = c.args;
  ASSERT_GE(a.size(), 2u) << joined(c);
  if (a[0] == "-N") {
    chains[a[1]];
    return;
  }
  std::size_t rest = 2;
  std::size_t position = 1;
  if (a[0] == "-I" && a.size() > 2 && std::all_of(a[2].begin(), a[2].end(), ::isdigit)) {
    position = std::stoul(a[2]);
    rest = 3;
  }
  std::string rule;
  for (std::size_t i = rest; i < a.size(); ++i) rule += a[i] + " ";
  auto& chain = chains[a[1]];
  if (a[0] == "-A")
    chain.push_back(rule);
  else if (a[0] == "-I")
    chain.insert(chain.begin() + std::min(position - 1, chain.size()), rule);
  else
    FAIL() << "cannot replay " << joined(c);
}

// The rules of `chain` that name `veth`, in order.
std::vector<std::string> rules_for(const Chains& chains, const std::string& chain,
                                   const std::string& veth) {
  std::vector<std::string> out;
  for (const auto& rule : chains.at(chain))
    if (rule.find(" " + veth + " ") != std::string::npos) out.push_back(rule);
  return out;
}

}  // namespace

// Two sessions start at once, and the runner runs their iptables commands interleaved: each
// session's hooks keep the order they have alone (in CI, a neighbour's insert landed between a
// session's numbered INPUT rules and put its drop above its accept for replies).
TEST(EgressRules, TwoSessionsSettingUpAtOnceKeepEachOthersHookOrder) {
  auto a = plan();
  auto b = plan();
  b.session_id = "4567abcdef";
  b.comment = "offload:4567abcdef";
  b.host_veth = "ofl4567abcdh";
  b.slot_network = ip::make_network_v4("10.213.0.8/30");
  for (auto* p : {&a, &b}) p->nameservers = {ip::make_address_v4("10.255.255.53")};
  auto ca = egress_setup(a), cb = egress_setup(b);

  Chains alone_a, alone_b;
  for (auto& c : ca) replay(alone_a, c);
  for (auto& c : cb) replay(alone_b, c);
  // Every interleaving that alternates runs of k commands, from either side first.
  for (std::size_t k = 1; k <= std::max(ca.size(), cb.size()); ++k)
    for (bool a_first : {true, false}) {
      Chains both;
      std::size_t i = 0, j = 0;
      bool turn_a = a_first;
      while (i < ca.size() || j < cb.size()) {
        for (std::size_t n = 0; n < k; ++n) {
          if (turn_a && i < ca.size()) replay(both, ca[i++]);
          if (!turn_a && j < cb.size()) replay(both, cb[j++]);
        }
        turn_a = !turn_a;
      }
      for (const char* hooked : {"INPUT", "FORWARD"}) {
        EXPECT_EQ(rules_for(both, hooked, a.host_veth), rules_for(alone_a, hooked, a.host_veth))
            << hooked << ", runs of " << k << (a_first ? ", a first" : ", b first");
        EXPECT_EQ(rules_for(both, hooked, b.host_veth), rules_for(alone_b, hooked, b.host_veth))
            << hooked << ", runs of " << k << (a_first ? ", a first" : ", b first");
      }
    }
  // And alone, the accept for replies comes before the drop.
  auto input = rules_for(alone_a, "INPUT", a.host_veth);
  ASSERT_FALSE(input.empty());
  EXPECT_NE(input.front().find("ESTABLISHED,RELATED"), std::string::npos) << input.front();
  EXPECT_NE(input.back().find("-j DROP"), std::string::npos) << input.back();
}

TEST(EgressRules, PoolDroppedBeforeAnyAllowEvenWhenAllowCoversIt) {
  auto p = plan();
  p.policy.allow = {ip::make_network_v4("10.0.0.0/8")};
  auto cmds = egress_setup(p);
  int pool = find(cmds, {"-A OFL-0123abcd -d 10.213.0.0/16", "-j DROP"});
  int allow = find(cmds, {"-A OFL-0123abcd -d 10.0.0.0/8", "-j ACCEPT"});
  ASSERT_GE(pool, 0);
  ASSERT_GE(allow, 0);
  EXPECT_LT(pool, allow);
}

TEST(EgressRules, WithoutPoolTheSlotItselfIsStillExcluded) {
  auto p = plan();
  p.policy.pool.reset();
  auto cmds = egress_setup(p);
  EXPECT_NE(find(cmds, {"-A OFL-0123abcd -d 10.213.0.4/30", "-j DROP"}), -1);
}

TEST(EgressRules, AllowBeforeBuiltinAndOperatorDeny) {
  auto p = plan();
  p.policy.allow = {ip::make_network_v4("10.1.2.3/32")};
  p.policy.deny = {ip::make_network_v4("198.51.100.0/24")};
  auto cmds = egress_setup(p);
  int allow = find(cmds, {"-A OFL-0123abcd -d 10.1.2.3/32", "-j ACCEPT"});
  int rfc1918 = find(cmds, {"-A OFL-0123abcd -d 10.0.0.0/8", "-j DROP"});
  int deny = find(cmds, {"-A OFL-0123abcd -d 198.51.100.0/24", "-j DROP"});
  ASSERT_GE(allow, 0);
  ASSERT_GE(rfc1918, 0);
  ASSERT_GE(deny, 0);
  EXPECT_LT(allow, rfc1918);
  EXPECT_LT(allow, deny);
}

TEST(EgressRules, EveryBuiltinRangeDropped) {
  auto cmds = egress_setup(plan());
  for (const char* cidr : {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                           "169.254.0.0/16", "127.0.0.0/8", "0.0.0.0/8", "224.0.0.0/4",
                           "240.0.0.0/4"})
    EXPECT_NE(find(cmds, {std::string("-A OFL-0123abcd -d ") + cidr + " ", "-j DROP"}), -1)
        << cidr;
}

TEST(EgressRules, NameserverGetsDnsOnlyBeforeTheDrops) {
  auto p = plan();
  p.nameservers = {ip::make_address_v4("10.255.255.53")};
  auto cmds = egress_setup(p);
  int udp = find(cmds, {"-A OFL-0123abcd -d 10.255.255.53/32 -p udp --dport 53", "-j ACCEPT"});
  int tcp = find(cmds, {"-A OFL-0123abcd -d 10.255.255.53/32 -p tcp --dport 53", "-j ACCEPT"});
  int rfc1918 = find(cmds, {"-A OFL-0123abcd -d 10.0.0.0/8", "-j DROP"});
  ASSERT_GE(udp, 0);
  ASSERT_GE(tcp, 0);
  EXPECT_LT(udp, rfc1918);
  EXPECT_LT(tcp, rfc1918);
  // A nameserver on the runner host itself answers through INPUT: DNS only, before the drop.
  int in_udp = find(cmds, {"INPUT", "-d 10.255.255.53/32 -p udp --dport 53", "-j ACCEPT"});
  int in_drop = find(cmds, {"INPUT", "-i ofl0123abcdh -m comment", "-j DROP"});
  ASSERT_GE(in_udp, 0);
  ASSERT_GE(in_drop, 0);
  EXPECT_NE(find(cmds, {"INPUT", "-d 10.255.255.53/32 -p tcp --dport 53", "-j ACCEPT"}), -1);
  // Nothing else opens the nameserver up.
  EXPECT_EQ(find(cmds, {"-d 10.255.255.53/32 -m comment"}), -1);
}

TEST(EgressRules, EveryRuleCarriesTheCommentAndMasqueradeIsKept) {
  auto cmds = egress_setup(plan());
  for (const auto& c : cmds) {
    if (c.args[0] == "-N") continue;
    EXPECT_NE(joined(c).find("-m comment --comment offload:0123abcdef"), std::string::npos)
        << joined(c);
  }
  EXPECT_NE(find(cmds, {"nat:", "-I POSTROUTING 1 -s 10.213.0.4/30 ! -o ofl0123abcdh",
                        "-j MASQUERADE"}),
            -1);
}

TEST(EgressRules, TeardownDeletesTaggedRulesThenTheChain) {
  const std::string save =
      "*filter\n"
      ":INPUT ACCEPT [0:0]\n"
      ":FORWARD DROP [0:0]\n"
      ":OFL-0123abcd - [0:0]\n"
      ":OFL-99999999 - [0:0]\n"
      "-A INPUT -i ofl0123abcdh -m comment --comment offload:0123abcdef -j DROP\n"
      "-A FORWARD -i ofl0123abcdh -m comment --comment \"offload:0123abcdef\" -j OFL-0123abcd\n"
      "-A FORWARD -i ofl99999999h -m comment --comment offload:99999999 -j OFL-99999999\n"
      "-A OFL-0123abcd -d 10.0.0.0/8 -m comment --comment offload:0123abcdef -j DROP\n"
      "COMMIT\n";
  auto cmds = egress_teardown("filter", save, "0123abcdef", "offload:0123abcdef");
  ASSERT_EQ(cmds.size(), 4u);
  EXPECT_EQ(cmds[0].args[0], "-D");
  EXPECT_EQ(cmds[1].args[0], "-D");
  EXPECT_EQ(cmds[2].args[0], "-D");
  EXPECT_EQ(joined(cmds[3]), "filter: -X OFL-0123abcd");
  for (const auto& c : cmds) EXPECT_EQ(joined(c).find("99999999"), std::string::npos);
  EXPECT_TRUE(egress_chain_exists(save, "0123abcdef"));
  EXPECT_FALSE(egress_chain_exists(save, "abababab"));
  // Nat has no chain of ours; a filter table without the chain yields no -X.
  EXPECT_TRUE(egress_teardown("nat", "*nat\nCOMMIT\n", "0123abcdef", "offload:0123abcdef").empty());
  EXPECT_TRUE(
      egress_teardown("filter", "*filter\nCOMMIT\n", "0123abcdef", "offload:0123abcdef").empty());
}

TEST(EgressRules, ResolvConfNameserversWithoutLoopback) {
  auto ns = resolv_conf_nameservers(
      "# generated\nsearch example.internal\nnameserver 10.255.255.53\n"
      "nameserver 127.0.0.53\nnameserver ::1\n  nameserver\t1.1.1.1 \nnameserverx 9.9.9.9\n");
  ASSERT_EQ(ns.size(), 2u);
  EXPECT_EQ(ns[0].to_string(), "10.255.255.53");
  EXPECT_EQ(ns[1].to_string(), "1.1.1.1");
}

TEST(EgressRules, ParseCidr) {
  EXPECT_EQ(parse_cidr("10.1.2.3/32")->to_string(), "10.1.2.3/32");
  EXPECT_EQ(parse_cidr("10.1.2.3")->to_string(), "10.1.2.3/32");
  EXPECT_EQ(parse_cidr("10.1.2.0/24")->to_string(), "10.1.2.0/24");
  // A host address with a prefix names its network, as iptables would read it.
  EXPECT_EQ(parse_cidr("10.1.2.7/24")->to_string(), "10.1.2.0/24");
  EXPECT_FALSE(parse_cidr("10.1.2/24"));
  EXPECT_FALSE(parse_cidr("10.1.2.3/33"));
  EXPECT_FALSE(parse_cidr("nonsense"));
  EXPECT_FALSE(parse_cidr(""));
}

// The image cache's registry mirror on the runner host: the one TCP service the session's engine
// may open connections to, accepted above the guard that drops everything else from the session.
TEST(EgressRules, TheImageCacheIsTheOnlyHostServiceAndSitsAboveTheInputDrop) {
  auto p = plan();
  EXPECT_EQ(find(egress_setup(p), {"INPUT", "--dport 5000"}), -1);
  p.policy.host_service = EgressPolicy::HostService{ip::make_address_v4("10.213.255.254"), 5000};
  auto cmds = egress_setup(p);
  int accept = find(cmds, {"-I INPUT 1 -i ofl0123abcdh -d 10.213.255.254/32 -p tcp --dport 5000",
                           "-j ACCEPT"});
  int drop = find(cmds, {"-I INPUT 1 -i ofl0123abcdh -m comment", "-j DROP"});
  ASSERT_GE(accept, 0);
  ASSERT_GE(drop, 0);
  // Each hook is inserted at position 1: the later insert ends up above.
  EXPECT_GT(accept, drop);
  EXPECT_NE(joined(cmds[accept]).find("--comment offload:0123abcdef"), std::string::npos);
  // Not through FORWARD: the pool (where the address lies) stays dropped for forwarded traffic.
  EXPECT_EQ(find(cmds, {"FORWARD", "10.213.255.254"}), -1);
}
