// Network isolation of session engines, with real engines: from a container of session A, the
// runner host's own services, session B's published port, the metadata address and a private
// network are out of reach, a "public" address is not; an --egress-allow entry opens the private
// network to session B. Every server here lives on the host or in namespaces this test creates.
// Needs root, docker.io and the docker CLI; skips otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "offload/common/process.h"
#include "offload/common/token.h"
#include "offload/engine/egress_rules.h"
#include "offload/engine/engine.h"
#include "e2e_support.h"

using namespace offload;
using namespace offload::engine;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace ip = boost::asio::ip;

namespace {

const char* kDockerCli = "/usr/local/bin/docker";
const char* kImage = "offload-egress-bb:1";
constexpr int kPublishedPort = 18090;

// Per test process, so parallel runs on one host do not collide (engine_root_test uses 10.251).
const int kSalt = ::getpid() % 60;
const std::string kPool = "10.250." + std::to_string(::getpid() % 250) + ".0/24";
// A private network (allowed only for B) and a "public" one, each a /30 inside its own netns.
const std::string kPrivateHost = "10.249." + std::to_string(::getpid() % 250) + ".1";
const std::string kPrivateServer = "10.249." + std::to_string(::getpid() % 250) + ".2";
const std::string kPrivateCidr = "10.249." + std::to_string(::getpid() % 250) + ".0/30";
const std::string kPublicHost = "203.0.113." + std::to_string(kSalt * 4 + 1);
const std::string kPublicServer = "203.0.113." + std::to_string(kSalt * 4 + 2);
const int kHostPort = 20000 + ::getpid() % 10000;

CommandResult docker(const Engine& engine, std::vector<std::string> args,
                     std::chrono::milliseconds timeout = 60s) {
  std::vector<std::string> argv = {kDockerCli, "-H", "unix://" + engine.api_socket().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
}

void import_busybox(const Engine& engine, const fs::path& scratch) {
  auto error = e2e::import_network_image(engine.api_socket(), scratch, kImage);
  ASSERT_EQ(error, "");
}

std::map<std::string, std::string> probe(const Engine& engine,
                                         const std::vector<std::string>& targets) {
  return e2e::probe_from_container(engine.api_socket(), kImage, targets);
}

std::string host_get(const std::string& target) { return e2e::probe_from_host(target); }

// The packet count of the session chain's DROP rule for `cidr`.
long drop_count(const std::string& session_id, const std::string& cidr) {
  return e2e::iptables_packets(egress_chain(session_id), "DROP", "", cidr);
}

class EgressRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (auto missing = check_prerequisites(); !missing.empty()) GTEST_SKIP() << missing;
    if (!fs::exists(kDockerCli)) GTEST_SKIP() << "needs the docker CLI at " << kDockerCli;
    if (!fs::exists("/bin/busybox")) GTEST_SKIP() << "needs busybox-static";
    scratch_ = fs::path("/tmp/offload-egress-test") / std::to_string(::getpid());
    fs::create_directories(scratch_ / "www");
    std::ofstream(scratch_ / "www" / "index.html") << "reached\n";
  }

  void TearDown() override {
    for (auto& engine : engines_)
      if (engine) engine->destroy("test teardown");
    for (pid_t pid : servers_) terminate_process(pid, 2s);
    for (const auto& ns : namespaces_) {
      run_command({"ip", "link", "del", ns + "h"});
      run_command({"ip", "netns", "del", ns});
    }
    std::error_code ec;
    fs::remove_all(scratch_, ec);
  }

  void serve(std::vector<std::string> argv) {
    std::string error;
    pid_t pid = spawn_process(argv, {}, error);
    ASSERT_GT(pid, 0) << error;
    servers_.push_back(pid);
  }

  // A namespace joined to the host by a /30 veth: host side `host_address`, namespace side
  // `server_address`, serving scratch/www over HTTP on port 80.
  void server_namespace(const std::string& name, const std::string& host_address,
                        const std::string& server_address) {
    namespaces_.push_back(name);
    const std::string h = name + "h", n = name + "n";
    for (std::vector<std::string> argv : std::vector<std::vector<std::string>>{
             {"ip", "netns", "add", name},
             {"ip", "link", "add", h, "type", "veth", "peer", "name", n, "netns", name},
             {"ip", "addr", "add", host_address + "/30", "dev", h},
             {"ip", "link", "set", h, "up"},
             {"ip", "-n", name, "addr", "add", server_address + "/30", "dev", n},
             {"ip", "-n", name, "link", "set", n, "up"},
             {"ip", "-n", name, "link", "set", "lo", "up"}}) {
      auto r = run_command(argv);
      ASSERT_TRUE(r.ok()) << argv[0] << " " << argv[1] << " " << argv[2] << ": " << r.output
                          << r.error;
    }
    serve({"ip", "netns", "exec", name, "busybox", "httpd", "-f", "-p", server_address + ":80",
           "-h", (scratch_ / "www").string()});
  }

  Engine& start_engine(EgressPolicy egress) {
    EngineSpec spec;
    spec.session_id = random_hex(8);
    auto slot = pool_.allocate(spec.session_id);
    if (!slot) throw std::runtime_error("test address pool exhausted");
    spec.slot = *slot;
    spec.data_dir = fs::path("/tmp/offload-egress-test") / spec.session_id;
    spec.run_dir = fs::path("/run/offload-test") / spec.session_id.substr(0, 8);
    spec.egress = std::move(egress);
    spec.egress.pool = ip::make_network_v4(kPool);
    engines_.push_back(Engine::start(spec));
    return *engines_.back();
  }

  fs::path scratch_;
  AddressPool pool_{ip::make_network_v4(kPool)};
  std::vector<std::unique_ptr<Engine>> engines_;
  std::vector<pid_t> servers_;
  std::vector<std::string> namespaces_;
};

TEST_F(EgressRootTest, SessionReachesThePublicNetOnlyAndTeardownLeavesNoRule) {
  const std::string tag = std::to_string(::getpid() % 100000);
  ASSERT_NO_FATAL_FAILURE(server_namespace("oflpriv" + tag, kPrivateHost, kPrivateServer));
  ASSERT_NO_FATAL_FAILURE(server_namespace("oflpub" + tag, kPublicHost, kPublicServer));
  // Stands in for the runner's gRPC port and sshd: every address of the host.
  ASSERT_NO_FATAL_FAILURE(serve({"busybox", "httpd", "-f", "-p", "0.0.0.0:" + std::to_string(kHostPort),
                                 "-h", (scratch_ / "www").string()}));

  Engine& a = start_engine({});
  EgressPolicy b_policy;
  b_policy.allow = {*parse_cidr(kPrivateCidr)};
  Engine& b = start_engine(b_policy);
  ASSERT_NO_FATAL_FAILURE(import_busybox(a, scratch_ / "a"));
  ASSERT_NO_FATAL_FAILURE(import_busybox(b, scratch_ / "b"));
  auto published = docker(b, {"run", "-d", "-p", std::to_string(kPublishedPort) + ":80", kImage,
                              "sh", "-c", "echo reached >/index.html && exec httpd -f -p 80 -h /"});
  ASSERT_TRUE(published.ok()) << published.output << published.error;

  // Each target answers from the runner host itself: a failure below is the isolation.
  const std::string host_server = a.spec().slot.host_address.to_string() + ":" +
                                  std::to_string(kHostPort);
  const std::string host_public = kPublicHost + ":" + std::to_string(kHostPort);
  const std::string b_port = b.spec().slot.engine_address.to_string() + ":" +
                             std::to_string(kPublishedPort);
  const std::string private_server = kPrivateServer + ":80";
  const std::string public_server = kPublicServer + ":80";
  EXPECT_EQ(host_get("127.0.0.1:" + std::to_string(kHostPort)), "ok");
  EXPECT_EQ(host_get(host_server), "ok");
  EXPECT_EQ(host_get(host_public), "ok");
  EXPECT_EQ(host_get(private_server), "ok");
  EXPECT_EQ(host_get(public_server), "ok");
  bool b_up = false;
  for (int i = 0; i < 50 && !b_up; ++i) {
    b_up = host_get(b_port) == "ok";
    if (!b_up) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(b_up) << "B's published port does not answer on the host: " << host_get(b_port);

  const long metadata_drops_before = drop_count(a.spec().session_id, "169.254.0.0/16");
  auto from_a = probe(a, {host_server, host_public, b_port, "169.254.169.254:80", private_server,
                          public_server});
  EXPECT_EQ(from_a[host_server], "fail") << "the runner host's services";
  EXPECT_EQ(from_a[host_public], "fail") << "the runner host's services on another address";
  EXPECT_EQ(from_a[b_port], "fail") << "session B's published port";
  EXPECT_EQ(from_a["169.254.169.254:80"], "fail");
  EXPECT_EQ(from_a[private_server], "fail") << "a private network";
  EXPECT_EQ(from_a[public_server], "ok") << "the internet";
  EXPECT_EQ(from_a.count("docker run"), 0u) << from_a["docker run"];
  // The metadata address failed because of our rule, not because nothing is there.
  EXPECT_GT(drop_count(a.spec().session_id, "169.254.0.0/16"), metadata_drops_before);

  auto from_b = probe(b, {private_server, public_server});
  EXPECT_EQ(from_b[private_server], "ok") << "--egress-allow " << kPrivateCidr;
  EXPECT_EQ(from_b[public_server], "ok");

  // IPv6 is not routed for sessions: off on the host end of the veth.
  std::ifstream v6("/proc/sys/net/ipv6/conf/" + a.spec().slot.host_veth + "/disable_ipv6");
  std::string v6_off;
  if (v6 >> v6_off) {
    EXPECT_EQ(v6_off, "1");
  }

  for (auto& engine : engines_) {
    const auto spec = engine->spec();
    auto report = engine->destroy("test end");
    EXPECT_TRUE(report.clean()) << report.leftovers.size();
    for (const auto& l : report.leftovers) ADD_FAILURE() << "left: " << l;
    auto saved = run_command({"iptables-save"});
    EXPECT_EQ(saved.output.find(spec.rule_comment()), std::string::npos);
    EXPECT_EQ(saved.output.find(egress_chain(spec.session_id)), std::string::npos);
    pool_.release(spec.slot.index);
  }
  engines_.clear();
}

}  // namespace
