#include "host_network.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "offload/common/process.h"
#include "offload/engine/host_state.h"

namespace offload::engine::detail {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// iptables holds a host-wide lock; concurrent engines starting or stopping must wait for it.
const std::vector<std::string> kIptables = {"iptables", "-w", "10"};

void must(const std::vector<std::string>& argv, const std::string& step) {
  CommandResult r = run_command(argv);
  if (r.ok()) return;
  std::string why = !r.error.empty() ? r.error : last_lines(r.output, 2);
  throw std::runtime_error(step + " failed: " + why);
}

std::vector<std::string> iptables(const std::string& table, std::vector<std::string> args) {
  std::vector<std::string> argv = kIptables;
  argv.insert(argv.end(), {"-t", table});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

void enable_ip_forward() {
  std::ifstream in("/proc/sys/net/ipv4/ip_forward");
  char current = '0';
  in >> current;
  if (current == '1') return;
  // Never switched back off: other engines and the host's own docker may rely on it.
  std::ofstream out("/proc/sys/net/ipv4/ip_forward");
  out << "1\n";
  if (!out.flush())
    throw std::runtime_error("cannot enable net.ipv4.ip_forward: run as root on a host that "
                             "allows changing it");
}

std::string slot_network(const NetworkSlot& slot) {
  return boost::asio::ip::address_v4(slot.host_address.to_uint() - 1).to_string() + "/30";
}

void add_nat_rules(const EngineSpec& spec) {
  const auto& s = spec.slot;
  const std::vector<std::string> tag = {"-m", "comment", "--comment", spec.rule_comment()};
  auto rule = [&](std::vector<std::string> args) {
    args.insert(args.end(), tag.begin(), tag.end());
    return args;
  };
  // Inserted at the top of FORWARD, in this order, so a host FORWARD policy of DROP (the host's
  // own docker sets one) does not cut the engine off. Link-local is the cloud metadata service:
  // containers must not reach it through the runner.
  must(iptables("filter", rule({"-I", "FORWARD", "1", "-i", s.host_veth, "-d", "169.254.0.0/16",
                                "-j", "DROP"})),
       "iptables (block metadata service)");
  must(iptables("filter", rule({"-I", "FORWARD", "2", "-i", s.host_veth, "-j", "ACCEPT"})),
       "iptables (forward from engine)");
  must(iptables("filter", rule({"-I", "FORWARD", "3", "-o", s.host_veth, "-m", "conntrack",
                                "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"})),
       "iptables (forward replies to engine)");
  must(iptables("nat", rule({"-I", "POSTROUTING", "1", "-s", slot_network(s), "!", "-o",
                             s.host_veth, "-j", "MASQUERADE"})),
       "iptables (masquerade engine traffic)");
}

std::vector<std::string> rules_with_comment(const std::string& comment) {
  std::vector<std::string> found;
  CommandResult r = run_command({"iptables-save"});
  if (!r.ok()) return {"iptables-save failed: " + r.error + last_lines(r.output, 1)};
  for (auto& line : iptables_deletions(r.output, comment)) {
    std::string text;
    for (const auto& w : line) text += (text.empty() ? "" : " ") + w;
    found.push_back("iptables rule " + text.substr(3));  // without the "-D "
  }
  return found;
}

}  // namespace

bool netns_exists(const std::string& name) {
  std::error_code ec;
  return fs::exists(fs::path("/var/run/netns") / name, ec);
}

bool link_exists(const std::string& name) {
  std::error_code ec;
  return fs::exists(fs::path("/sys/class/net") / name, ec);
}

void create_session_network(const EngineSpec& spec) {
  const auto& s = spec.slot;
  enable_ip_forward();
  must({"ip", "netns", "add", s.netns}, "ip netns add " + s.netns);
  must({"ip", "link", "add", s.host_veth, "type", "veth", "peer", "name", s.engine_veth, "netns",
        s.netns},
       "creating veth pair " + s.host_veth);
  must({"ip", "addr", "add", s.host_address.to_string() + "/30", "dev", s.host_veth},
       "addressing " + s.host_veth);
  must({"ip", "link", "set", s.host_veth, "up"}, "bringing up " + s.host_veth);
  must({"ip", "-n", s.netns, "addr", "add", s.engine_address.to_string() + "/30", "dev",
        s.engine_veth},
       "addressing " + s.engine_veth);
  must({"ip", "-n", s.netns, "link", "set", s.engine_veth, "up"}, "bringing up " + s.engine_veth);
  must({"ip", "-n", s.netns, "link", "set", "lo", "up"}, "bringing up lo in " + s.netns);
  must({"ip", "-n", s.netns, "route", "add", "default", "via", s.host_address.to_string()},
       "default route in " + s.netns);
  add_nat_rules(spec);
}

void remove_session_network(const EngineSpec& spec, TeardownReport& report) {
  for (const char* table : {"filter", "nat"}) {
    CommandResult saved = run_command({"iptables-save", "-t", table});
    for (auto& deletion : iptables_deletions(saved.output, spec.rule_comment())) {
      CommandResult r = run_command(iptables(table, deletion));
      if (r.ok()) report.removed.push_back(std::string("iptables rule in ") + table);
    }
  }
  const auto& s = spec.slot;
  // Deleting the host end removes the pair at once; a namespace is destroyed asynchronously.
  if (!s.host_veth.empty() && link_exists(s.host_veth) &&
      run_command({"ip", "link", "del", s.host_veth}).ok())
    report.removed.push_back("veth " + s.host_veth);
  if (!s.netns.empty() && netns_exists(s.netns) && run_command({"ip", "netns", "del", s.netns}).ok())
    report.removed.push_back("netns " + s.netns);
}

void verify_session_network(const EngineSpec& spec, TeardownReport& report) {
  const auto& s = spec.slot;
  if (!s.netns.empty() && netns_exists(s.netns)) report.leftovers.push_back("netns " + s.netns);
  if (!s.host_veth.empty()) {
    // The kernel may still be dismantling the namespace that held the peer: give it a moment.
    auto until = std::chrono::steady_clock::now() + 3s;
    while (link_exists(s.host_veth) && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(50ms);
    if (link_exists(s.host_veth)) report.leftovers.push_back("link " + s.host_veth);
  }
  for (auto& rule : rules_with_comment(spec.rule_comment())) report.leftovers.push_back(rule);
}

}  // namespace offload::engine::detail
