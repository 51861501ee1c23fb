// Real engines: starts dockerd in network namespaces, runs containers, destroys everything and
// checks the host independently for leftovers. Needs root and docker.io; skips otherwise.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "offload/common/process.h"
#include "offload/common/token.h"
#include "offload/engine/engine.h"
#include "offload/engine/userns.h"

using namespace offload;
using namespace offload::engine;
using namespace std::chrono;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace ip = boost::asio::ip;

namespace {

const char* kDockerCli = "/usr/local/bin/docker";
constexpr int kPublishedPort = 18081;

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

long ms_since(steady_clock::time_point t) {
  return static_cast<long>(duration_cast<milliseconds>(steady_clock::now() - t).count());
}

// One pool per test process, so parallel runs of this test on one host do not collide.
AddressPool& test_pool() {
  static AddressPool pool(
      ip::make_network_v4("10.251." + std::to_string(::getpid() % 250) + ".0/24"));
  return pool;
}

EngineSpec make_spec() {
  EngineSpec spec;
  spec.session_id = random_hex(8);
  auto slot = test_pool().allocate(spec.session_id);
  if (!slot) throw std::runtime_error("test address pool exhausted");
  spec.slot = *slot;
  spec.data_dir = fs::path("/tmp/offload-engine-test") / spec.session_id;
  spec.run_dir = fs::path("/run/offload-test") / spec.session_id.substr(0, 8);
  spec.ready_timeout = 60s;
  return spec;
}

CommandResult docker(const Engine& engine, std::vector<std::string> args,
                     milliseconds timeout = 60s) {
  std::vector<std::string> argv = {kDockerCli, "-H", "unix://" + engine.api_socket().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
}

std::vector<std::string> processes_mentioning(const std::string& text) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    if (std::stoi(name) == ::getpid()) continue;
    std::string cmdline = slurp(entry.path() / "cmdline");
    if (cmdline.find(text) != std::string::npos) {
      std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
      found.push_back(name + ": " + cmdline);
    }
  }
  return found;
}

// Every path under /run (four levels deep) with a directory named "<id8>" or "<id8>.<anything>".
std::vector<std::string> entries_under_run_named(const std::string& id8) {
  std::vector<std::string> found;
  std::error_code ec;
  fs::recursive_directory_iterator it("/run", fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (name == id8 || name.rfind(id8 + ".", 0) == 0) found.push_back(it->path().string());
    if (it.depth() >= 3 || it->is_symlink()) it.disable_recursion_pending();
  }
  return found;
}

// Checks the host for every trace of the engine without using the library's own verification.
void expect_no_trace(const EngineSpec& spec) {
  auto netns = run_command({"ip", "netns", "list"});
  EXPECT_TRUE(netns.ok());
  EXPECT_EQ(netns.output.find(spec.slot.netns), std::string::npos) << netns.output;
  EXPECT_FALSE(run_command({"ip", "link", "show", spec.slot.host_veth}).ok());
  auto rules = run_command({"iptables-save"});
  EXPECT_TRUE(rules.ok());
  EXPECT_EQ(rules.output.find("offload:" + spec.session_id), std::string::npos) << rules.output;
  EXPECT_FALSE(fs::is_directory(spec.data_dir)) << spec.data_dir;
  EXPECT_FALSE(fs::exists(spec.run_dir)) << spec.run_dir;
  EXPECT_EQ(processes_mentioning(spec.run_dir.string()), std::vector<std::string>{});
  EXPECT_EQ(processes_mentioning(spec.data_dir.string()), std::vector<std::string>{});
  // Nothing named after the session anywhere under /run either: a remapped dockerd makes
  // "<name>.<uid>.<gid>" copies of its exec-root path there.
  EXPECT_EQ(entries_under_run_named(spec.session_id.substr(0, 8)), std::vector<std::string>{});
  const std::string mountinfo = slurp("/proc/self/mountinfo");
  EXPECT_EQ(mountinfo.find(spec.session_id), std::string::npos);
  EXPECT_EQ(mountinfo.find(spec.run_dir.string() + "/"), std::string::npos);
  for (const auto& hierarchy : fs::directory_iterator("/sys/fs/cgroup"))
    EXPECT_FALSE(fs::exists(hierarchy.path() / ("offload-" + spec.session_id))) << hierarchy;
  // The disk quota's image and its loop device (losetup -j lists the devices bound to a file).
  const fs::path image = spec.data_dir.string() + ".disk";
  EXPECT_FALSE(fs::exists(fs::symlink_status(image))) << image;
  auto loops = run_command({"losetup", "-j", image.string()});
  EXPECT_TRUE(loops.ok()) << loops.output;
  EXPECT_EQ(loops.output, "") << image;
  auto all_loops = run_command({"losetup", "-a"});
  EXPECT_EQ(all_loops.output.find(spec.session_id), std::string::npos) << all_loops.output;
}

// A tiny image from the host's static busybox: no registry needed.
void import_busybox(const Engine& engine, const fs::path& scratch) {
  fs::create_directories(scratch / "rootfs" / "bin");
  fs::copy_file("/bin/busybox", scratch / "rootfs" / "bin" / "busybox",
                fs::copy_options::overwrite_existing);
  for (const char* applet : {"sh", "httpd", "sleep", "dd", "rm"}) {
    std::error_code ec;
    fs::create_symlink("busybox", scratch / "rootfs" / "bin" / applet, ec);
  }
  auto tar = run_command({"tar", "-C", (scratch / "rootfs").string(), "-cf",
                          (scratch / "rootfs.tar").string(), "."});
  ASSERT_TRUE(tar.ok()) << tar.output;
  auto imported = docker(engine, {"import", (scratch / "rootfs.tar").string(), "offload-bb:1"});
  ASSERT_TRUE(imported.ok()) << imported.output << imported.error;
}

// Sends a GET and returns the status line ("" if nothing answered within ~10 s).
std::string http_status_line(const ip::address_v4& address, int port) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<uint16_t>(port));
    sa.sin_addr.s_addr = htonl(address.to_uint());
    timeval tv{2, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string response;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
      const std::string request = "GET / HTTP/1.0\r\n\r\n";
      (void)!::write(fd, request.data(), request.size());
      char buf[512];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) response.assign(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    if (!response.empty()) return response.substr(0, response.find("\r\n"));
    std::this_thread::sleep_for(100ms);
  }
  return "";
}

bool can_bind_loopback(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 && ::listen(fd, 1) == 0;
  ::close(fd);
  return ok;
}

class EngineRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::getenv("OFFLOAD_TEST_DEBUG")) spdlog::set_level(spdlog::level::debug);
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    if (auto missing = check_prerequisites(); !missing.empty()) GTEST_SKIP() << missing;
    if (!fs::exists(kDockerCli)) GTEST_SKIP() << "needs the docker CLI at " << kDockerCli;
  }
  void TearDown() override {
    // Whatever an assertion left running is still destroyed.
    for (auto& engine : engines_)
      if (engine) engine->destroy("test teardown");
    for (const auto& spec : specs_) test_pool().release(spec.slot.index);
  }

  EngineSpec new_spec() {
    specs_.push_back(make_spec());
    return specs_.back();
  }
  Engine& keep(std::unique_ptr<Engine> engine) {
    engines_.push_back(std::move(engine));
    return *engines_.back();
  }

  std::vector<EngineSpec> specs_;
  std::vector<std::unique_ptr<Engine>> engines_;
};

TEST_F(EngineRootTest, TwoEnginesRunSideBySideAndLeaveNoTrace) {
  ASSERT_TRUE(can_bind_loopback(2375));
  const auto spec_a = new_spec(), spec_b = new_spec();

  auto t0 = steady_clock::now();
  Engine& a = keep(Engine::start(spec_a));
  const long start_a_ms = ms_since(t0);
  t0 = steady_clock::now();
  Engine& b = keep(Engine::start(spec_b));
  const long start_b_ms = ms_since(t0);

  EXPECT_TRUE(a.alive());
  EXPECT_TRUE(b.alive());
  EXPECT_NE(a.pid(), b.pid());
  EXPECT_NE(a.api_socket(), b.api_socket());

  auto version = a.version();
  EXPECT_EQ(version.version.rfind("20.10.", 0), 0u) << version.version;
  EXPECT_FALSE(version.api_version.empty());
  EXPECT_EQ(version.os, "linux");

  std::string body;
  EXPECT_EQ(a.get("/containers/json", body), 200);
  EXPECT_EQ(nlohmann::json::parse(body), nlohmann::json::array());
  EXPECT_EQ(b.get("/no-such-endpoint", body), 404);

  auto info = docker(a, {"info", "--format", "{{.ServerVersion}} {{.DockerRootDir}}"});
  ASSERT_TRUE(info.ok()) << info.output << info.error;
  EXPECT_NE(info.output.find("20.10."), std::string::npos) << info.output;
  EXPECT_NE(info.output.find(spec_a.data_root().string()), std::string::npos) << info.output;

  // The same published port in both engines: each lives in its own namespace, reachable at its
  // engine address, while the host's loopback port stays free.
  const fs::path scratch = spec_a.data_dir.parent_path() / ("scratch-" + spec_a.session_id);
  for (Engine* engine : {&a, &b}) {
    import_busybox(*engine, scratch);
    auto run = docker(*engine, {"run", "-d", "--restart", "always", "-p",
                                std::to_string(kPublishedPort) + ":80", "offload-bb:1",
                                "/bin/httpd", "-f", "-p", "80", "-h", "/"});
    ASSERT_TRUE(run.ok()) << run.output << run.error;
  }
  fs::remove_all(scratch);
  auto sleeper = docker(b, {"run", "-d", "--network", "host", "offload-bb:1", "/bin/sleep", "600"});
  ASSERT_TRUE(sleeper.ok()) << sleeper.output;
  EXPECT_EQ(http_status_line(spec_a.slot.engine_address, kPublishedPort).rfind("HTTP/1.", 0), 0u);
  EXPECT_EQ(http_status_line(spec_b.slot.engine_address, kPublishedPort).rfind("HTTP/1.", 0), 0u);
  EXPECT_TRUE(can_bind_loopback(kPublishedPort));
  EXPECT_TRUE(can_bind_loopback(2375));
  EXPECT_EQ(a.get("/containers/json", body), 200);
  EXPECT_EQ(nlohmann::json::parse(body).size(), 1u);

  t0 = steady_clock::now();
  auto report_a = a.destroy("test");
  const long destroy_a_ms = ms_since(t0);
  EXPECT_TRUE(report_a.clean()) << ::testing::PrintToString(report_a.leftovers);
  EXPECT_FALSE(a.alive());
  expect_no_trace(spec_a);

  // B is untouched by A's teardown.
  EXPECT_TRUE(b.alive());
  EXPECT_EQ(b.get("/_ping", body), 200);
  EXPECT_EQ(http_status_line(spec_b.slot.engine_address, kPublishedPort).rfind("HTTP/1.", 0), 0u);

  t0 = steady_clock::now();
  auto report_b = b.destroy("test");
  const long destroy_b_ms = ms_since(t0);
  EXPECT_TRUE(report_b.clean()) << ::testing::PrintToString(report_b.leftovers);
  expect_no_trace(spec_b);

  auto again = b.destroy("again");
  EXPECT_TRUE(again.clean());
  EXPECT_TRUE(again.removed.empty()) << ::testing::PrintToString(again.removed);

  std::cout << "[timing] start A " << start_a_ms << " ms, start B " << start_b_ms
            << " ms, destroy A (1 container) " << destroy_a_ms << " ms, destroy B (2 containers) "
            << destroy_b_ms << " ms\n";
  RecordProperty("start_ms", std::to_string(start_a_ms));
  RecordProperty("destroy_ms", std::to_string(destroy_a_ms));
}

TEST_F(EngineRootTest, DockerdThatCannotStartFailsClearlyAndLeavesNothing) {
  auto spec = new_spec();
  spec.extra_dockerd_args = {"--no-such-flag"};
  try {
    Engine::start(spec);
    FAIL() << "start succeeded with a bad flag";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    std::cout << "[message] " << message << "\n";
    EXPECT_NE(message.find("dockerd exited during start-up"), std::string::npos) << message;
    EXPECT_NE(message.find("no-such-flag"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  expect_no_trace(spec);
}

// The failed engine's data directory goes with its teardown; its dockerd.log is kept for the
// operator, and the error says where.
TEST_F(EngineRootTest, DockerdThatCannotStartKeepsItsLogForTheOperator) {
  auto spec = new_spec();
  spec.extra_dockerd_args = {"--no-such-flag"};
  const fs::path kept_dir = fs::path("/tmp/offload-engine-test") / ("failed-" + spec.session_id);
  spec.kept_logs_dir = kept_dir;
  const fs::path kept = kept_dir / (spec.session_id + ".dockerd.log");
  try {
    Engine::start(spec);
    FAIL() << "start succeeded with a bad flag";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("dockerd log kept at " + kept.string() + " on the runner"),
              std::string::npos)
        << e.what();
  }
  EXPECT_NE(slurp(kept).find("no-such-flag"), std::string::npos) << slurp(kept);
  expect_no_trace(spec);
  fs::remove_all(kept_dir);
}

TEST_F(EngineRootTest, TeardownThatFindsDockerdDeadKeepsItsLog) {
  auto spec = new_spec();
  const fs::path kept_dir = fs::path("/tmp/offload-engine-test") / ("failed-" + spec.session_id);
  spec.kept_logs_dir = kept_dir;
  auto& engine = keep(Engine::start(spec));
  ASSERT_GT(engine.pid(), 0);
  ASSERT_EQ(::kill(engine.pid(), SIGKILL), 0);
  for (int i = 0; i < 100 && engine.alive(); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_FALSE(engine.alive());
  engine.destroy("test");
  const fs::path kept = kept_dir / (spec.session_id + ".dockerd.log");
  EXPECT_NE(slurp(kept).find("API listen on"), std::string::npos) << slurp(kept);
  expect_no_trace(spec);
  fs::remove_all(kept_dir);
}

TEST_F(EngineRootTest, DataDirThatIsAFileFailsClearlyAndIsLeftAlone) {
  auto spec = new_spec();
  fs::create_directories(spec.data_dir.parent_path());
  { std::ofstream(spec.data_dir) << "not a directory"; }
  try {
    Engine::start(spec);
    FAIL() << "start succeeded with a file as data_dir";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create directory " + spec.data_dir.string()),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(slurp(spec.data_dir), "not a directory");
  fs::remove(spec.data_dir);
  expect_no_trace(spec);
}

TEST_F(EngineRootTest, RefusesASecondEngineForTheSameSession) {
  auto spec = new_spec();
  Engine& engine = keep(Engine::start(spec));
  try {
    Engine::start(spec);
    FAIL() << "a second engine started for the same session";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
  // The refusal must not have torn down the first engine.
  std::string body;
  EXPECT_EQ(engine.get("/_ping", body), 200);
  EXPECT_TRUE(engine.destroy("test").clean());
  expect_no_trace(spec);
}

TEST_F(EngineRootTest, AnAdoptedEngineCanBeDestroyedAfterARestart) {
  auto spec = new_spec();
  pid_t pid = 0;
  {
    auto engine = Engine::start(spec);
    pid = engine->pid();
  }  // the runner "restarts": dropping the handle does not stop the engine
  ASSERT_TRUE(process_alive(pid));
  auto adopted = Engine::adopt(spec);
  EXPECT_EQ(adopted->pid(), pid);
  EXPECT_TRUE(adopted->alive());
  EXPECT_EQ(adopted->version().version.rfind("20.10.", 0), 0u);
  auto report = adopted->destroy("test");
  EXPECT_TRUE(report.clean()) << ::testing::PrintToString(report.leftovers);
  EXPECT_FALSE(process_alive(pid));
  expect_no_trace(spec);
}

TEST_F(EngineRootTest, CleansUpAfterAnEngineWhoseDockerdWasKilled) {
  auto spec = new_spec();
  auto engine = Engine::start(spec);
  const pid_t pid = engine->pid();
  const fs::path scratch = spec.data_dir.parent_path() / ("scratch-" + spec.session_id);
  import_busybox(*engine, scratch);
  fs::remove_all(scratch);
  auto run = docker(*engine, {"run", "-d", "-p", "18082:80", "offload-bb:1", "/bin/httpd", "-f",
                              "-p", "80", "-h", "/"});
  ASSERT_TRUE(run.ok()) << run.output << run.error;
  // SIGKILL: dockerd cannot clean up after itself.
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  for (int i = 0; i < 100 && process_alive(pid); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_FALSE(process_alive(pid));
  auto adopted = Engine::adopt(spec);
  EXPECT_EQ(adopted->pid(), 0);
  auto report = adopted->destroy("test");
  EXPECT_TRUE(report.clean()) << ::testing::PrintToString(report.leftovers);
  auto removed = ::testing::PrintToString(report.removed);
  // containerd and docker-proxy die with dockerd (parent-death signal); the shim and the
  // container do not, nor do the mounts.
  EXPECT_NE(removed.find("(containerd-shim)"), std::string::npos) << removed;
  EXPECT_NE(removed.find("(httpd)"), std::string::npos) << removed;
  EXPECT_NE(removed.find("/merged"), std::string::npos) << removed;
  EXPECT_NE(removed.find("/exec/netns/"), std::string::npos) << removed;
  EXPECT_NE(removed.find("shim socket /run/containerd/s/"), std::string::npos) << removed;
  expect_no_trace(spec);
}


// Container root of a remapped engine is the slot's unprivileged host uid: what it writes into a
// bind mount is owned by that uid on the host, and a host-root-owned directory refuses it.
TEST_F(EngineRootTest, RemappedEnginesMapContainerRootToDisjointUnprivilegedUids) {
  auto spec_a = new_spec(), spec_b = new_spec();
  spec_a.userns = prepare_userns(kDefaultSubidBase, spec_a.slot.index);
  spec_b.userns = prepare_userns(kDefaultSubidBase, spec_b.slot.index);
  const auto range_a = slot_range(kDefaultSubidBase, spec_a.slot.index);
  const auto range_b = slot_range(kDefaultSubidBase, spec_b.slot.index);
  EXPECT_FALSE(range_a.overlaps(range_b));
  EXPECT_EQ(spec_a.userns->root_uid, range_a.start);
  const auto subuid = slurp("/etc/subuid");
  EXPECT_NE(subuid.find(range_a.owner + ":" + std::to_string(range_a.start) + ":65536\n"),
            std::string::npos) << subuid;

  Engine& a = keep(Engine::start(spec_a));
  Engine& b = keep(Engine::start(spec_b));
  const auto config = nlohmann::json::parse(slurp(spec_a.config_file()));
  EXPECT_EQ(config.value("userns-remap", ""), range_a.owner + ":" + range_a.owner);
  std::string info;
  ASSERT_EQ(a.get("/info", info), 200);
  EXPECT_NE(info.find("name=userns"), std::string::npos) << info.substr(0, 400);

  const fs::path scratch = spec_a.data_dir.parent_path() / ("scratch-" + spec_a.session_id);
  import_busybox(a, scratch);
  fs::remove_all(scratch);
  // The runner's sync replica owns what it creates there by the mapped root (see sync).
  const fs::path shared = spec_a.data_dir / "sync" / "work";
  fs::create_directories(shared);
  ASSERT_EQ(::chown((spec_a.data_dir / "sync").c_str(), spec_a.userns->root_uid,
                    spec_a.userns->root_gid), 0);
  ASSERT_EQ(::chown(shared.c_str(), spec_a.userns->root_uid, spec_a.userns->root_gid), 0);
  auto run = docker(a, {"run", "--rm", "-v", shared.string() + ":/w", "offload-bb:1", "/bin/sh",
                        "-c", "echo hi > /w/made-by-root && id -u"});
  ASSERT_TRUE(run.ok()) << run.output << run.error;
  EXPECT_NE(run.output.find("0"), std::string::npos) << run.output;  // root inside
  struct stat st {};
  ASSERT_EQ(::stat((shared / "made-by-root").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, spec_a.userns->root_uid);
  EXPECT_EQ(st.st_gid, spec_a.userns->root_gid);
  EXPECT_NE(st.st_uid, 0u);
  EXPECT_EQ(slurp(shared / "made-by-root"), "hi\n");

  // A directory of host root is not writable by container root any more.
  const fs::path host_owned = spec_a.data_dir / "sync" / "host-owned";
  fs::create_directories(host_owned);
  ::chmod(host_owned.c_str(), 0755);
  auto denied = docker(a, {"run", "--rm", "-v", host_owned.string() + ":/h", "offload-bb:1",
                           "/bin/sh", "-c", "echo x > /h/f"});
  EXPECT_FALSE(denied.ok()) << denied.output;
  EXPECT_FALSE(fs::exists(host_owned / "f"));

  for (auto* engine : {&a, &b}) {
    auto report = engine->destroy("test");
    EXPECT_TRUE(report.clean()) << ::testing::PrintToString(report.leftovers);
    expect_no_trace(engine->spec());
  }
}

}  // namespace

namespace {

std::string first_line(const fs::path& file) {
  std::string text = slurp(file);
  return text.substr(0, text.find('\n'));
}

}  // namespace

// cgroup v1 only (this runner); the v2 file layout is unit-tested against a fake tree.
TEST_F(EngineRootTest, ForkBombAndMemoryHogHitTheirSessionsLimitsWhileTheOtherSessionRuns) {
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers")) GTEST_SKIP() << "cgroup v2 host";
  auto spec_a = new_spec();
  spec_a.limits = SessionLimits{1, 64ull << 20, 64};
  specs_.back() = spec_a;
  const auto spec_b = new_spec();  // defaults
  Engine& a = keep(Engine::start(spec_a));
  Engine& b = keep(Engine::start(spec_b));

  const fs::path pids_a = "/sys/fs/cgroup/pids/" + spec_a.cgroup_parent();
  const fs::path memory_a = "/sys/fs/cgroup/memory/" + spec_a.cgroup_parent();
  EXPECT_EQ(first_line(pids_a / "pids.max"), "64");
  EXPECT_EQ(first_line(memory_a / "memory.limit_in_bytes"), std::to_string(64ull << 20));
  EXPECT_EQ(first_line("/sys/fs/cgroup/cpu/" + spec_a.cgroup_parent() + "/cpu.cfs_quota_us"),
            "100000");
  EXPECT_EQ(first_line("/sys/fs/cgroup/pids/" + spec_b.cgroup_parent() + "/pids.max"), "4096");

  for (Engine* engine : {&a, &b}) {
    const fs::path scratch =
        engine->spec().data_dir.parent_path() / ("scratch-" + engine->spec().session_id);
    import_busybox(*engine, scratch);
    fs::remove_all(scratch);
  }

  // Fork bomb in A, bounded: at most 2000 forks of 30 s sleepers, and the container is removed.
  auto bomb = docker(a, {"run", "-d", "--name", "bomb", "offload-bb:1", "/bin/sh", "-c",
                         "i=0; while [ $i -lt 2000 ]; do /bin/sleep 30 & i=$((i+1)); done; wait"});
  ASSERT_TRUE(bomb.ok()) << bomb.output;
  // ash gives up at the first refused fork: its exit, with "can't fork" logged, is A's pids.max.
  std::string logs;
  for (int i = 0; i < 60 && logs.find("can't fork") == std::string::npos; ++i) {  // <= ~30 s
    std::this_thread::sleep_for(500ms);
    logs = docker(a, {"logs", "bomb"}, 10s).output;
  }
  EXPECT_NE(logs.find("can't fork"), std::string::npos) << logs;
  EXPECT_LE(std::stol(first_line(pids_a / "pids.current")), 64);

  // B is not starved while A sits at its pids limit.
  auto t0 = steady_clock::now();
  auto quick = docker(b, {"run", "--rm", "offload-bb:1", "/bin/sh", "-c", "exit 0"}, 30s);
  const long b_run_ms = ms_since(t0);
  EXPECT_TRUE(quick.ok()) << quick.output << quick.error;
  EXPECT_LT(b_run_ms, 30000);
  auto removed = docker(a, {"rm", "-f", "bomb"}, 60s);
  EXPECT_TRUE(removed.ok()) << removed.output;

  // Memory hog in A: tail buffers the newline-free stream, at most 256 MiB of it; the kernel's
  // OOM killer stops it at A's 64 MiB (no swap: memsw is capped too).
  auto hog = docker(a, {"run", "--rm", "offload-bb:1", "/bin/sh", "-c",
                        "/bin/busybox head -c 256m /dev/zero | /bin/busybox tail >/dev/null"},
                    60s);
  EXPECT_EQ(hog.exit_code, 137) << hog.output << hog.error;
  EXPECT_LE(std::stoull(first_line(memory_a / "memory.max_usage_in_bytes")), 64ull << 20);
  t0 = steady_clock::now();
  quick = docker(b, {"run", "--rm", "offload-bb:1", "/bin/sh", "-c", "exit 0"}, 30s);
  EXPECT_TRUE(quick.ok()) << quick.output << quick.error;
  std::cout << "[timing] B's docker run during A's fork bomb " << b_run_ms << " ms, after A's hog "
            << ms_since(t0) << " ms\n";

  auto report_a = a.destroy("test");
  EXPECT_TRUE(report_a.clean()) << ::testing::PrintToString(report_a.leftovers);
  expect_no_trace(spec_a);
  auto report_b = b.destroy("test");
  EXPECT_TRUE(report_b.clean()) << ::testing::PrintToString(report_b.leftovers);
  expect_no_trace(spec_b);
}

namespace {

struct FsInfo {
  unsigned long type = 0;
  std::uint64_t bytes = 0;
  std::pair<int, int> fsid{};
};
FsInfo fs_info(const fs::path& path) {
  struct statfs st {};
  FsInfo info;
  if (::statfs(path.c_str(), &st) != 0) return info;
  info.type = static_cast<unsigned long>(st.f_type);
  info.bytes = static_cast<std::uint64_t>(st.f_blocks) * st.f_bsize;
  info.fsid = {st.f_fsid.__val[0], st.f_fsid.__val[1]};
  return info;
}
constexpr unsigned long kExt4Magic = 0xEF53;

// Writes zeros to `file` until `limit` bytes or an error; returns the errno (0 if none).
int fill(const fs::path& file, std::uint64_t limit, std::uint64_t& written) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  const std::string chunk(1 << 20, '\0');
  int error = 0;
  written = 0;
  while (written < limit) {
    ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n < 0) {
      error = errno;
      break;
    }
    written += static_cast<std::uint64_t>(n);
  }
  if (error == 0 && ::fsync(fd) != 0) error = errno;
  ::close(fd);
  return error;
}

}  // namespace

// The disk quota: A's data_dir is its own 256 MiB ext4 on a loop device, so a container filling
// its disk and the runner writing into A's sync root both hit ENOSPC there, while B (no quota)
// and the host's disk are untouched; teardown leaves no mount, loop device or image.
TEST_F(EngineRootTest, DiskQuotaStopsAContainerAndTheSyncRootAtTheSessionsOwnLimit) {
  auto spec_a = new_spec();
  spec_a.limits.disk_bytes = 256ull << 20;
  specs_.back() = spec_a;
  auto spec_b = new_spec();
  spec_b.limits.disk_bytes = 0;
  specs_.back() = spec_b;
  Engine& a = keep(Engine::start(spec_a));
  Engine& b = keep(Engine::start(spec_b));
  const fs::path image = spec_a.data_dir.string() + ".disk";

  // A's data_dir is the image, loop-mounted (findmnt: the kernel's view, not the library's).
  auto mount = run_command({"findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--mountpoint",
                            spec_a.data_dir.string()});
  ASSERT_TRUE(mount.ok()) << mount.output;
  EXPECT_EQ(mount.output.rfind("/dev/loop", 0), 0u) << mount.output;
  EXPECT_NE(mount.output.find(" ext4 "), std::string::npos) << mount.output;
  EXPECT_NE(mount.output.find("nosuid"), std::string::npos) << mount.output;
  EXPECT_NE(mount.output.find("nodev"), std::string::npos) << mount.output;
  auto bound = run_command({"losetup", "-j", image.string()});
  EXPECT_EQ(bound.output.substr(0, bound.output.find(':')),
            mount.output.substr(0, mount.output.find(' ')))
      << bound.output;
  const auto a_fs = fs_info(spec_a.data_dir);
  EXPECT_EQ(a_fs.type, kExt4Magic);
  EXPECT_LE(a_fs.bytes, 256ull << 20);
  EXPECT_GT(a_fs.bytes, 200ull << 20);
  EXPECT_EQ((fs::status(spec_a.data_dir).permissions() & fs::perms::all), fs::perms::owner_all);
  EXPECT_FALSE(fs::exists(spec_a.data_dir / "lost+found"));
  // The data root is on it.
  EXPECT_EQ(fs_info(spec_a.data_root()).fsid, a_fs.fsid);
  // B has no quota: its data_dir is a plain directory of the host's filesystem.
  EXPECT_FALSE(run_command({"findmnt", "--mountpoint", spec_b.data_dir.string()}).ok());
  EXPECT_EQ(fs_info(spec_b.data_dir).fsid, fs_info(spec_b.data_dir.parent_path()).fsid);
  EXPECT_FALSE(fs::exists(spec_b.data_dir.string() + ".disk"));

  for (Engine* engine : {&a, &b}) {
    const fs::path scratch =
        engine->spec().data_dir.parent_path() / ("scratch-" + engine->spec().session_id);
    import_busybox(*engine, scratch);
    fs::remove_all(scratch);
  }

  // A container of A writes until its disk is full. Deleting a file of the image first leaves
  // a whiteout (a 0:0 device node) in the layer: overlay2 works on the nodev filesystem.
  auto full = docker(a, {"run", "--rm", "offload-bb:1", "/bin/sh", "-c",
                         "rm /bin/sleep && [ ! -e /bin/sleep ] && echo whiteout-ok; "
                         "dd if=/dev/zero of=/big bs=1M count=1000"},
                     120s);
  EXPECT_FALSE(full.ok()) << full.output;
  EXPECT_NE(full.output.find("whiteout-ok"), std::string::npos) << full.output;
  EXPECT_NE(full.output.find("No space left on device"), std::string::npos) << full.output;
  // The host's disk held no more than the quota for it.
  struct stat st {};
  ASSERT_EQ(::stat(image.c_str(), &st), 0);
  EXPECT_LE(static_cast<std::uint64_t>(st.st_blocks) * 512, 256ull << 20);

  // B, without a quota, writes more than A's whole disk.
  auto big_b = docker(b, {"run", "--rm", "offload-bb:1", "/bin/sh", "-c",
                          "dd if=/dev/zero of=/big bs=1M count=300 && echo wrote-300"},
                      120s);
  EXPECT_TRUE(big_b.ok()) << big_b.output;
  EXPECT_NE(big_b.output.find("wrote-300"), std::string::npos) << big_b.output;

  // --rm gave A its space back: A still runs containers.
  auto again = docker(a, {"run", "--rm", "offload-bb:1", "/bin/sh", "-c", "echo fine"}, 60s);
  EXPECT_TRUE(again.ok()) << again.output;

  // The sync root (where the runner writes the laptop's files) is on A's disk too: writing
  // more than the quota there fails with ENOSPC instead of filling the host.
  const fs::path sync_root = spec_a.data_dir / "sync";
  fs::create_directories(sync_root);
  EXPECT_EQ(fs_info(sync_root).fsid, a_fs.fsid);
  std::uint64_t written = 0;
  EXPECT_EQ(fill(sync_root / "big", 400ull << 20, written), ENOSPC) << written;
  EXPECT_LT(written, 256ull << 20);
  ASSERT_EQ(::stat(image.c_str(), &st), 0);
  EXPECT_LE(static_cast<std::uint64_t>(st.st_blocks) * 512, 256ull << 20);

  for (const EngineSpec* spec : {&spec_a, &spec_b}) {
    Engine& engine = spec == &spec_a ? a : b;
    auto report = engine.destroy("test");
    EXPECT_TRUE(report.clean()) << ::testing::PrintToString(report.leftovers);
    expect_no_trace(*spec);
  }
  EXPECT_FALSE(fs::exists(image));
}

// The quota's prerequisites missing: the session does not start, the error says what to
// install and how to run without a quota, and nothing is left.
TEST_F(EngineRootTest, NoMkfsFailsClearlyNamingTheWayOut) {
  // A PATH with everything of the real one except mkfs.ext4.
  const fs::path bin = fs::path("/tmp/offload-engine-test") / ("path-" + random_hex(4));
  fs::create_directories(bin);
  const std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  std::istringstream dirs(old_path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const auto name = it->path().filename();
      if (name == "mkfs.ext4" || fs::exists(fs::symlink_status(bin / name))) continue;
      std::error_code ignored;
      fs::create_symlink(it->path(), bin / name, ignored);
    }
  }
  auto spec = new_spec();
  ::setenv("PATH", bin.c_str(), 1);
  std::string message;
  try {
    keep(Engine::start(spec));
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  ::setenv("PATH", old_path.c_str(), 1);
  fs::remove_all(bin);
  std::cout << "[message] " << message << "\n";
  EXPECT_NE(message.find("mkfs.ext4 not found"), std::string::npos) << message;
  EXPECT_NE(message.find("e2fsprogs"), std::string::npos) << message;
  EXPECT_NE(message.find("--session-disk 0"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  expect_no_trace(spec);
}
