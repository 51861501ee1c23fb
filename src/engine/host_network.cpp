#include "host_network.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

#include "offload/common/process.h"
#include "offload/engine/egress_rules.h"
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

// The nameservers dockerd hands to containers: the host's resolv.conf, or systemd-resolved's
// upstream list when the host's names only its loopback stub (dockerd does the same).
std::vector<boost::asio::ip::address_v4> container_nameservers() {
  std::string text;
  if (std::ifstream in("/etc/resolv.conf"); in) text.assign(std::istreambuf_iterator<char>(in), {});
  auto found = resolv_conf_nameservers(text);
  if (!found.empty()) return found;
  text.clear();
  if (std::ifstream in("/run/systemd/resolve/resolv.conf"); in)
    text.assign(std::istreambuf_iterator<char>(in), {});
  return resolv_conf_nameservers(text);
}

// IPv6 is not routed for sessions: with it off on the host end, nothing on the runner is
// reachable over the veth's link-local addresses either. Kernels without IPv6 need nothing.
void disable_ipv6(const std::string& link) {
  const fs::path knob = fs::path("/proc/sys/net/ipv6/conf") / link / "disable_ipv6";
  std::error_code ec;
  if (!fs::exists(knob.parent_path(), ec)) return;
  std::ofstream out(knob);
  out << "1\n";
  if (!out.flush()) throw std::runtime_error("cannot disable IPv6 on " + link);
}

void add_egress_rules(const EngineSpec& spec) {
  EgressPlan plan;
  plan.session_id = spec.session_id;
  plan.comment = spec.rule_comment();
  plan.host_veth = spec.slot.host_veth;
  plan.slot_network = boost::asio::ip::network_v4(
      boost::asio::ip::address_v4(spec.slot.host_address.to_uint() - 1), 30);
  plan.policy = spec.egress;
  plan.nameservers = container_nameservers();
  for (const auto& command : egress_setup(plan)) {
    std::string text;
    for (const auto& a : command.args) text += (text.empty() ? "" : " ") + a;
    must(iptables(command.table, command.args), "iptables -t " + command.table + " " + text);
  }
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
  disable_ipv6(s.host_veth);
  must({"ip", "link", "set", s.host_veth, "up"}, "bringing up " + s.host_veth);
  must({"ip", "-n", s.netns, "addr", "add", s.engine_address.to_string() + "/30", "dev",
        s.engine_veth},
       "addressing " + s.engine_veth);
  must({"ip", "-n", s.netns, "link", "set", s.engine_veth, "up"}, "bringing up " + s.engine_veth);
  must({"ip", "-n", s.netns, "link", "set", "lo", "up"}, "bringing up lo in " + s.netns);
  must({"ip", "-n", s.netns, "route", "add", "default", "via", s.host_address.to_string()},
       "default route in " + s.netns);
  add_egress_rules(spec);
}

void remove_session_network(const EngineSpec& spec, TeardownReport& report) {
  for (const char* table : {"filter", "nat"}) {
    CommandResult saved = run_command({"iptables-save", "-t", table});
    // The hooks and rules first: a chain can only be deleted once empty and unreferenced.
    for (auto& command :
         egress_teardown(table, saved.output, spec.session_id, spec.rule_comment())) {
      CommandResult r = run_command(iptables(command.table, command.args));
      if (r.ok())
        report.removed.push_back(command.args[0] == "-X"
                                     ? "iptables chain " + command.args[1]
                                     : std::string("iptables rule in ") + table);
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
  CommandResult filter = run_command({"iptables-save", "-t", "filter"});
  if (filter.ok() && egress_chain_exists(filter.output, spec.session_id))
    report.leftovers.push_back("iptables chain " + egress_chain(spec.session_id));
}

}  // namespace offload::engine::detail
