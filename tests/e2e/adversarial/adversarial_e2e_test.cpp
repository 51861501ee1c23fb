// Issue 11's adversarial suite. A real `offload-runner serve`
// (TLS, token file, real session engines) with two accounts, alice and bob, and one session
// each, created through the runner's gRPC API as a hostile client would: no offloadd, no
// docker-offload, no RunnerClient. Everything below talks to the runner with a bare gRPC stub and,
// for the engine API, writes raw HTTP/1.1 bytes into the tunnel itself, so nothing a client-side
// check could refuse is in the way. Attacks:
//  - container creates shaped as the docker CLI 28 sends them for --privileged, --pid=host,
//    -v /:/host, -v <runner state dir>:/x, -v <bob's sync root>:/x, --device, --cap-add
//    SYS_ADMIN, --network host; exec --privileged on an allowed container; a build with
//    networkmode=host; a privileged create chunked, and pipelined behind an allowed request:
//    each 403 with a Docker-style {"message"} naming the option, and no
//    container (or image) appears, seen through the tunnel and on the engine's own socket;
//  - alice's session token with bob's session id, an account token as a session token, no
//    token, a wrong token, on every per-session call;
//  - Sync calls with bad mount ids, bad paths (.., absolute, NUL, very long, through a planted
//    symlink), messages before or instead of open, data without a change, oversized messages:
//    each refused, the runner serves the next call, and nothing is written outside the mount.
//  - from a container of alice's session: the runner's gRPC port and an HTTP service on the
//    runner host's address, bob's published port at bob's engine address, 169.254.169.254, and
//    an address in the runner's --egress-deny all fail; a "public" address and a private
//    network in --egress-allow answer (servers in namespaces the suite creates).
// An allowed create (a bind inside alice's own sync root) succeeds, so the suite can fail.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "docker_cli_bodies.h"
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"
#include "offload/engine/engine.h"
#include "offload/runner/docker_backend.h"
#include "offload/tls/tls.h"
#include "offload/v1/runner.grpc.pb.h"
#include "e2e_support.h"

using namespace offload;
using namespace std::chrono_literals;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kRunnerBin = OFFLOAD_RUNNER_BIN;
const char* kDocker = "/usr/local/bin/docker";
// The engines are docker.io 20.10: the CLI 28 negotiates down to its API version.
const std::string kApi = "/v1.41";

std::string slurp(const fs::path& path) {
  std::string text;
  (void)read_file(path, text);
  return text;
}

struct Creds {
  std::string id, token;
};

// ---- the runner, started once for the whole suite ---------------------------------------------

struct World {
  fs::path dir, run_dir;
  std::string pool;
  pid_t pid = 0;
  std::string address, fingerprint;
  std::string alice_token, bob_token;
  Creds alice, bob;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Runner::Stub> stub;
  std::string skip;  // why the suite cannot run here

  // The network the suite builds (addresses only in namespaces it creates, see net_setup):
  // `outside` stands for the internet, joined to the host by a /29 veth: the host end
  // (runner_host) is where the runner listens and a host HTTP service runs, as on a cloud VM's
  // own address; `public_server` serves in the namespace, `denied_server` too but is in the
  // runner's --egress-deny; `lan` stands for a private network, with `lan_server` in the
  // runner's --egress-allow.
  std::string tag;
  std::string outside, lan;
  std::string runner_host, public_server, denied_server, lan_host, lan_server, lan_cidr;
  int host_http_port = 0;
  std::vector<pid_t> servers;

  fs::path state() const { return dir / "state"; }
  fs::path engine_socket(const Creds& s) const { return run_dir / s.id.substr(0, 8) / "docker.sock"; }
  fs::path sync_root(const Creds& s) const { return state() / "sessions" / s.id / "sync"; }
  bool runner_alive() const {
    int status = 0;
    return pid > 0 && ::waitpid(pid, &status, WNOHANG) == 0;
  }
};
World* world = nullptr;

void authorize(grpc::ClientContext& ctx, const std::string& token, const std::string& session) {
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  if (!session.empty()) ctx.AddMetadata("offload-session", session);
  ctx.set_deadline(std::chrono::system_clock::now() + 60s);
}

v1::CreateSessionResponse create_session(const std::string& account_token, grpc::Status& st) {
  grpc::ClientContext ctx;
  authorize(ctx, account_token, "");
  ctx.set_deadline(std::chrono::system_clock::now() + 180s);
  v1::CreateSessionRequest req;
  req.set_client_label("hostile@adversarial");
  v1::CreateSessionResponse resp;
  st = world->stub->CreateSession(&ctx, req, &resp);
  return resp;
}

// Runs each command; the first failure, as text ("" when all ran).
std::string run_all(const std::vector<std::vector<std::string>>& commands) {
  for (const auto& argv : commands) {
    auto r = run_command(argv);
    if (!r.ok()) {
      std::string line;
      for (const auto& a : argv) line += a + " ";
      return line + ": " + r.output + r.error;
    }
  }
  return "";
}

std::string serve_http(World& w, std::vector<std::string> argv) {
  std::string error;
  pid_t pid = spawn_process(argv, {}, error);
  if (pid <= 0) return "cannot start " + argv[0] + ": " + error;
  w.servers.push_back(pid);
  return "";
}

// The namespaces and servers the network attacks need (see World). TEST-NET-2 for the
// "internet", a 10.246/16 /30 for the private network: neither is in the runner's pool.
std::string net_setup(World& w) {
  const int salt = ::getpid() % 30;
  const std::string net = "198.51.100." + std::to_string(salt * 8);
  w.outside = "ofladvo" + w.tag;
  w.lan = "ofladvl" + w.tag;
  w.runner_host = "198.51.100." + std::to_string(salt * 8 + 1);
  w.public_server = "198.51.100." + std::to_string(salt * 8 + 2);
  w.denied_server = "198.51.100." + std::to_string(salt * 8 + 3);
  const std::string lan_net = "10.246." + std::to_string(::getpid() % 250) + ".";
  w.lan_host = lan_net + "1";
  w.lan_server = lan_net + "2";
  w.lan_cidr = lan_net + "0/30";
  w.host_http_port = 21000 + ::getpid() % 9000;
  const fs::path www = w.dir / "www";
  fs::create_directories(www);
  if (write_file_atomic(www / "index.html", "reached\n", fs::perms(0644)))
    return "cannot write " + (www / "index.html").string();
  for (auto& [ns, host, server_addresses, prefix] :
       std::vector<std::tuple<std::string, std::string, std::vector<std::string>, std::string>>{
           {w.outside, w.runner_host, {w.public_server, w.denied_server}, "/29"},
           {w.lan, w.lan_host, {w.lan_server}, "/30"}}) {
    const std::string h = ns + "h", n = ns + "n";
    std::vector<std::vector<std::string>> commands = {
        {"ip", "netns", "add", ns},
        {"ip", "link", "add", h, "type", "veth", "peer", "name", n, "netns", ns},
        {"ip", "addr", "add", host + prefix, "dev", h},
        {"ip", "link", "set", h, "up"},
        {"ip", "-n", ns, "link", "set", n, "up"},
        {"ip", "-n", ns, "link", "set", "lo", "up"}};
    for (const auto& a : server_addresses)
      commands.push_back({"ip", "-n", ns, "addr", "add", a + prefix, "dev", n});
    if (auto error = run_all(commands); !error.empty()) return error;
    if (auto error = serve_http(w, {"ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "80",
                                    "-h", www.string()});
        !error.empty())
      return error;
  }
  // A service of the runner host on its own address, like sshd or an HTTP admin page.
  return serve_http(w, {"busybox", "httpd", "-f", "-p",
                        w.runner_host + ":" + std::to_string(w.host_http_port), "-h",
                        www.string()});
}

class Adversarial : public ::testing::Test {
 public:
  static void SetUpTestSuite() {
    world = new World;
    if (::geteuid() != 0) {
      world->skip = "needs root";
      return;
    }
    if (auto missing = engine::check_prerequisites(); !missing.empty()) {
      world->skip = missing;
      return;
    }
    const std::string tag = random_hex(4);
    World& w = *world;
    w.tag = tag.substr(0, 6);
    w.dir = fs::temp_directory_path() / ("offload-adversarial-" + tag);
    w.run_dir = fs::path("/run") / ("offload-test-adv-" + tag);
    w.pool = "10.254." + std::to_string(::getpid() % 250) + ".0/24";
    if (ensure_private_dir(w.dir)) throw std::runtime_error("cannot create " + w.dir.string());
    w.alice_token = random_hex(24);
    w.bob_token = random_hex(24);
    if (write_file_atomic(w.dir / "tokens",
                          "alice:" + w.alice_token + "\nbob:" + w.bob_token + "\n"))
      throw std::runtime_error("cannot write the token file");
    if (auto error = net_setup(w); !error.empty()) throw std::runtime_error(error);
    SpawnOptions options;
    options.log_file = w.dir / "runner.out";
    std::string error;
    w.pid = spawn_process({kRunnerBin.string(), "serve", "--listen", w.runner_host + ":0",
                           "--token-file", (w.dir / "tokens").string(), "--state-dir",
                           w.state().string(), "--run-dir", w.run_dir.string(), "--address-pool",
                           w.pool, "--ready-file", (w.dir / "ready.json").string(),
                           "--egress-allow", w.lan_cidr, "--egress-deny",
                           w.denied_server + "/32"},
                          options, error);
    if (w.pid <= 0) throw std::runtime_error("cannot start the runner: " + error);
    const auto until = std::chrono::steady_clock::now() + 120s;
    while (std::chrono::steady_clock::now() < until && w.address.empty()) {
      if (!w.runner_alive()) throw std::runtime_error("runner exited:\n" + slurp(options.log_file));
      auto doc = json::parse(slurp(w.dir / "ready.json"), nullptr, false);
      if (doc.is_object()) {
        w.address = doc.value("address", "");
        w.fingerprint = doc.value("fingerprint", "");
      } else {
        std::this_thread::sleep_for(50ms);
      }
    }
    if (w.address.empty()) throw std::runtime_error("no ready file:\n" + slurp(options.log_file));
    grpc::ChannelArguments args;
    // A hostile client sends what it likes: the runner's own limit must hold, not ours.
    args.SetMaxSendMessageSize(-1);
    args.SetMaxReceiveMessageSize(-1);
    w.channel = grpc::CreateCustomChannel(w.address, tls::pinned_channel_credentials(w.fingerprint),
                                          args);
    w.stub = v1::Runner::NewStub(w.channel);
    grpc::Status st;
    auto a = create_session(w.alice_token, st);
    if (!st.ok()) throw std::runtime_error("alice's session: " + st.error_message());
    w.alice = {a.session_id(), a.session_token()};
    auto b = create_session(w.bob_token, st);
    if (!st.ok()) throw std::runtime_error("bob's session: " + st.error_message());
    w.bob = {b.session_id(), b.session_token()};
  }

  static void TearDownTestSuite() {
    World& w = *world;
    if (w.pid > 0) {
      ::kill(w.pid, SIGTERM);
      int status = 0;
      for (int i = 0; i < 1200 && ::waitpid(w.pid, &status, WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(100ms);
      if (w.runner_alive()) {
        ::kill(w.pid, SIGKILL);
        ::waitpid(w.pid, &status, 0);
      }
    }
    for (pid_t server : w.servers) terminate_process(server, 2s);
    for (const auto& ns : {w.outside, w.lan})
      if (!ns.empty()) {
        run_command({"ip", "link", "del", ns + "h"});
        run_command({"ip", "netns", "del", ns});
      }
    if (!w.dir.empty()) {
      runner::DockerSessionBackend backend(
          {w.state(), w.run_dir, boost::asio::ip::make_network_v4(w.pool), {}, {}});
      for (const auto& line : backend.destroy_leftovers()) std::cout << "[teardown] " << line << "\n";
      std::error_code ec;
      fs::remove_all(w.dir, ec);
      fs::remove_all(w.run_dir, ec);
    }
    delete world;
    world = nullptr;
  }

 protected:
  void SetUp() override {
    if (!world->skip.empty()) GTEST_SKIP() << world->skip;
    ASSERT_FALSE(world->alice.id.empty());
    ASSERT_FALSE(world->bob.id.empty());
  }
  void TearDown() override {
    if (HasFailure()) std::cout << "[runner log]\n" << slurp(world->dir / "runner.out") << "\n";
  }
};

// ---- raw HTTP through the engine tunnel --------------------------------------------------------

struct HttpReply {
  grpc::Status status;
  int code = 0;
  std::string head, body;
};

std::string dechunk(const std::string& in) {
  std::string out;
  std::size_t pos = 0;
  while (pos < in.size()) {
    auto eol = in.find("\r\n", pos);
    if (eol == std::string::npos) break;
    std::size_t n = std::stoul(in.substr(pos, eol - pos), nullptr, 16);
    if (n == 0) break;
    out += in.substr(eol + 2, n);
    pos = eol + 2 + n + 2;
  }
  return out;
}

// `request` (raw bytes, ending in a request with Connection: close) through a fresh engine
// tunnel of session `s`; the reply is everything the tunnel answered, the first response parsed.
HttpReply raw_tunnel(const Creds& s, const std::string& request);

// One request, with Connection: close, through a fresh engine tunnel of session `s`.
HttpReply engine_http(const Creds& s, const std::string& method, const std::string& target,
                      const std::string& body = "",
                      const std::string& content_type = "application/json") {
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: api.moby.localhost\r\n" +
                        "User-Agent: Docker-Client/28.0.0 (linux)\r\nConnection: close\r\n";
  if (!body.empty() || method == "POST")
    request += "Content-Type: " + content_type + "\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n";
  request += "\r\n" + body;
  return raw_tunnel(s, request);
}

HttpReply raw_tunnel(const Creds& s, const std::string& request) {
  grpc::ClientContext ctx;
  authorize(ctx, s.token, s.id);
  auto rw = world->stub->Tunnel(&ctx);
  v1::TunnelFrame open;
  open.mutable_open()->set_target(v1::TunnelOpen::TARGET_ENGINE_API);
  open.mutable_open()->set_label("adversarial");
  v1::TunnelFrame data, eof;
  data.set_data(request);
  eof.set_eof(true);
  HttpReply reply;
  std::string raw;
  if (rw->Write(open) && rw->Write(data) && rw->Write(eof)) {
    v1::TunnelFrame in;
    while (rw->Read(&in)) raw += in.data();
  }
  rw->WritesDone();
  reply.status = rw->Finish();
  auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return reply;
  reply.head = raw.substr(0, end);
  reply.body = raw.substr(end + 4);
  if (reply.head.size() > 12) reply.code = std::atoi(reply.head.c_str() + 9);
  std::string lower = reply.head;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("transfer-encoding: chunked") != std::string::npos) reply.body = dechunk(reply.body);
  return reply;
}

// Container ids the engine has, asked through the tunnel.
std::vector<std::string> containers_via_tunnel(const Creds& s) {
  auto r = engine_http(s, "GET", kApi + "/containers/json?all=1");
  EXPECT_EQ(r.code, 200) << r.head << r.body;
  std::vector<std::string> ids;
  auto doc = json::parse(r.body, nullptr, false);
  if (doc.is_array())
    for (auto& c : doc) ids.push_back(c.value("Id", ""));
  else
    ADD_FAILURE() << "not a container list: " << r.body;
  return ids;
}

// The same, asked on the engine's own socket on the runner (no gate in the way).
std::vector<std::string> containers_on_engine(const Creds& s) {
  auto r = run_command({kDocker, "-H", "unix://" + world->engine_socket(s).string(), "ps", "-aq",
                        "--no-trunc"},
                       60s);
  EXPECT_EQ(r.exit_code, 0) << r.output << r.error;
  std::vector<std::string> ids;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) ids.push_back(line);
  return ids;
}

std::vector<std::string> images_on_engine(const Creds& s) {
  auto r = run_command({kDocker, "-H", "unix://" + world->engine_socket(s).string(), "images",
                        "-aq", "--no-trunc"},
                       60s);
  EXPECT_EQ(r.exit_code, 0) << r.output << r.error;
  return {r.output};
}

// `docker run adv:img /x` as the docker CLI 28 sends its create, with `host_config` merged into
// its HostConfig and `top` into the body.
std::string cli_create(const json& host_config = json::object(), const json& top = json::object()) {
  json body = {{"Image", "adv:img"}, {"Cmd", {"/x"}}};
  body.update(top);
  return test::cli_create(host_config, body);
}
using test::cli_exec;

// ---- Sync calls, raw ---------------------------------------------------------------------------

struct SyncRun {
  std::vector<v1::SyncMessage> received;
  grpc::Status status;
  std::string errors() const {
    std::string out;
    for (auto& m : received)
      if (m.has_error()) out += m.error().path() + ": " + m.error().message() + "\n";
    return out;
  }
  std::optional<std::string> bind_source() const {
    for (auto& m : received)
      if (m.has_ready()) return m.ready().bind_source();
    return std::nullopt;
  }
  bool acked(std::uint64_t id) const {
    for (auto& m : received)
      if (m.has_barrier_ack() && m.barrier_ack().id() == id) return true;
    return false;
  }
};

// Sends `messages`, then (when `barrier` is set) a barrier and reads until its ack, an end of the
// call, or 60 s; then half-closes and collects the status.
SyncRun sync_call(const Creds& s, const std::vector<v1::SyncMessage>& messages,
                  std::optional<std::uint64_t> barrier = std::nullopt) {
  grpc::ClientContext ctx;
  authorize(ctx, s.token, s.id);
  auto rw = world->stub->Sync(&ctx);
  SyncRun run;
  bool open = false;  // the reader stopped at the barrier's answer: the call is still on
  std::thread reader([&] {
    v1::SyncMessage m;
    while (rw->Read(&m)) {
      run.received.push_back(m);
      if (barrier && m.has_barrier_ack() && m.barrier_ack().id() == *barrier) {
        open = true;
        break;
      }
    }
  });
  bool ok = true;
  for (const auto& m : messages)
    if (ok) ok = rw->Write(m);
  if (ok && barrier) {
    v1::SyncMessage b;
    b.mutable_barrier()->set_id(*barrier);
    rw->Write(b);
  } else if (!barrier) {
    rw->WritesDone();
  }
  reader.join();
  if (open) ctx.TryCancel();
  run.status = rw->Finish();
  return run;
}

v1::SyncMessage sync_open(const std::string& mount_id, bool single = false,
                          const std::string& file = "") {
  v1::SyncMessage m;
  m.mutable_open()->set_mount_id(mount_id);
  m.mutable_open()->set_single_file(single);
  m.mutable_open()->set_file_name(file);
  return m;
}

v1::SyncMessage sync_file(const std::string& path, const std::string& content) {
  v1::SyncMessage m;
  auto* e = m.mutable_change()->mutable_entry();
  e->set_path(path);
  e->set_type(v1::SyncEntry::TYPE_FILE);
  e->set_mode(0644);
  e->set_size(content.size());
  e->set_mtime_ns(1'700'000'000'000'000'000);
  m.mutable_change()->set_data(content);
  return m;
}

v1::SyncMessage sync_symlink(const std::string& path, const std::string& target) {
  v1::SyncMessage m;
  auto* e = m.mutable_change()->mutable_entry();
  e->set_path(path);
  e->set_type(v1::SyncEntry::TYPE_SYMLINK);
  e->set_link_target(target);
  return m;
}

// Files anywhere under the runner's directories whose name contains `marker`.
std::vector<std::string> files_named(const std::string& marker) {
  std::vector<std::string> found;
  for (const fs::path& top : {world->dir, world->run_dir}) {
    std::error_code ec;
    for (fs::recursive_directory_iterator it(top, fs::directory_options::skip_permission_denied,
                                             ec),
         end;
         !ec && it != end; it.increment(ec)) {
      if (it->path().filename().string().find(marker) != std::string::npos)
        found.push_back(it->path().string());
      // Engines' own trees (overlay layers, netns mounts) are not where a sync write lands.
      if (it->is_directory() && (it->path().filename() == "docker" ||
                                 it->path().filename() == "overlay2"))
        it.disable_recursion_pending();
    }
  }
  return found;
}

// ---- the API policy through the raw tunnel -----------------------------------------------------

TEST_F(Adversarial, EngineApiAttacksAreRefusedAndCreateNothing) {
  World& w = *world;
  // An image to create containers from, imported on the engine directly (set-up, not an attack).
  const fs::path rootfs = w.dir / "rootfs";
  fs::create_directories(rootfs);
  ASSERT_FALSE(write_file_atomic(rootfs / "x", "not a program\n"));
  auto imported = run_command(
      {"sh", "-c", "tar -C " + rootfs.string() + " -c . | " + kDocker + " -H unix://" +
                       w.engine_socket(w.alice).string() + " import - adv:img"},
      120s);
  ASSERT_EQ(imported.exit_code, 0) << imported.output << imported.error;

  // Alice's one synchronised mount: what offloadd would bind; the allowed create uses it.
  auto opened = sync_call(w.alice, {sync_open("0123456789abcdef")}, 1);
  ASSERT_TRUE(opened.bind_source().has_value()) << opened.errors() << opened.status.error_message();
  const std::string mount = *opened.bind_source();
  ASSERT_THAT(mount, ::testing::StartsWith(w.sync_root(w.alice).string()));
  // Bob's synchronised mount, the neighbour alice would like to read.
  auto bob_opened = sync_call(w.bob, {sync_open("fedcba9876543210"),
                                      sync_file("secret.txt", "bob's secret\n")},
                              1);
  ASSERT_TRUE(bob_opened.bind_source().has_value()) << bob_opened.errors();
  const std::string bob_mount = *bob_opened.bind_source();

  ASSERT_TRUE(containers_via_tunnel(w.alice).empty());
  ASSERT_TRUE(containers_on_engine(w.alice).empty());
  const auto images_before = images_on_engine(w.alice);

  struct Attack {
    std::string what, target, body;
    std::vector<std::string> names;  // what the refusal must say
  };
  const std::string create = kApi + "/containers/create?name=attack";
  const json sda = json::parse(
      R"([{"PathOnHost":"/dev/sda","PathInContainer":"/dev/sda","CgroupPermissions":"rwm"}])");
  const std::vector<Attack> attacks = {
      {"--privileged", create, cli_create({{"Privileged", true}}), {"--privileged"}},
      {"--pid=host", create, cli_create({{"PidMode", "host"}}), {"--pid=host"}},
      {"-v /:/host", create, cli_create({{"Binds", {"/:/host"}}}), {"-v /"}},
      {"-v <state dir>:/x", create, cli_create({{"Binds", {w.state().string() + ":/x"}}}),
       {"-v " + w.state().string()}},
      {"-v <bob's sync root>:/x", create, cli_create({{"Binds", {bob_mount + ":/x"}}}),
       {"-v " + bob_mount}},
      {"-v <alice's mount>/..:/x", create, cli_create({{"Binds", {mount + "/../..:/x"}}}),
       {"-v "}},
      {"--device /dev/sda", create, cli_create({{"Devices", sda}}), {"--device"}},
      {"--cap-add SYS_ADMIN", create, cli_create({{"CapAdd", {"CAP_SYS_ADMIN"}}}),
       {"--cap-add SYS_ADMIN"}},
      {"--network host", create,
       cli_create({{"NetworkMode", "host"}},
                  {{"NetworkingConfig", {{"EndpointsConfig", {{"host", json::object()}}}}}}),
       {"--network=host"}},
  };
  for (const auto& a : attacks) {
    SCOPED_TRACE(a.what);
    auto r = engine_http(w.alice, "POST", a.target, a.body);
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.code, 403) << r.head << "\n" << r.body;
    auto doc = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(doc.is_object() && doc.contains("message") && doc["message"].is_string())
        << r.body;
    for (const auto& name : a.names) EXPECT_THAT(doc["message"].get<std::string>(), HasSubstr(name));
    EXPECT_TRUE(containers_via_tunnel(w.alice).empty());
    EXPECT_TRUE(containers_on_engine(w.alice).empty());
  }

  // Framing tricks against the real engine: a chunked privileged create, and one pipelined
  // behind an allowed request on the same connection (the first answer comes, the second is the
  // refusal).
  {
    const std::string body = cli_create({{"Privileged", true}});
    const std::string half = body.substr(0, body.size() / 2), rest = body.substr(body.size() / 2);
    auto hex = [](std::size_t n) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%zx", n);
      return std::string(buf);
    };
    auto r = raw_tunnel(w.alice, "POST " + create + " HTTP/1.1\r\nHost: x\r\n"
                                 "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                                 "Connection: close\r\n\r\n" +
                                     hex(half.size()) + "\r\n" + half + "\r\n" +
                                     hex(rest.size()) + "\r\n" + rest + "\r\n0\r\n\r\n");
    EXPECT_EQ(r.code, 403) << r.head << "\n" << r.body;
    EXPECT_THAT(r.body, HasSubstr("--privileged"));
    auto p = raw_tunnel(w.alice, "GET " + kApi + "/_ping HTTP/1.1\r\nHost: x\r\n\r\n"
                                 "POST " + create + " HTTP/1.1\r\nHost: x\r\n"
                                 "Content-Type: application/json\r\nContent-Length: " +
                                     std::to_string(body.size()) + "\r\n\r\n" + body);
    EXPECT_EQ(p.code, 200) << p.head;
    EXPECT_THAT(p.body, HasSubstr("HTTP/1.1 403"));
    EXPECT_THAT(p.body, HasSubstr("--privileged"));
    EXPECT_TRUE(containers_via_tunnel(w.alice).empty());
    EXPECT_TRUE(containers_on_engine(w.alice).empty());
  }

  // The build: DOCKER_BUILDKIT=0 docker build --network=host, with an empty tar as its context.
  const std::string build =
      kApi + "/build?buildargs=%7B%7D&cachefrom=%5B%5D&cgroupparent=&cpuperiod=0&cpuquota=0"
             "&cpusetcpus=&cpusetmems=&cpushares=0&dockerfile=Dockerfile&labels=%7B%7D&memory=0"
             "&memswap=0&networkmode=host&rm=1&shmsize=0&t=adv%3Ahost&target=&ulimits=%5B%5D"
             "&version=1";
  auto built = engine_http(w.alice, "POST", build, std::string(1024, '\0'), "application/x-tar");
  EXPECT_EQ(built.code, 403) << built.head << "\n" << built.body;
  EXPECT_THAT(built.body, HasSubstr("--network=host"));
  EXPECT_EQ(images_on_engine(w.alice), images_before);

  // What a session needs still works: a bind inside its own synchronised mount.
  auto allowed = engine_http(w.alice, "POST", kApi + "/containers/create?name=allowed",
                             cli_create({{"Binds", {mount + ":/data"}}}));
  ASSERT_EQ(allowed.code, 201) << allowed.head << "\n" << allowed.body;
  const std::string id = json::parse(allowed.body).value("Id", "");
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(containers_via_tunnel(w.alice), std::vector<std::string>{id});
  EXPECT_EQ(containers_on_engine(w.alice), std::vector<std::string>{id});

  // docker exec --privileged on that allowed container.
  auto exec = engine_http(w.alice, "POST", kApi + "/containers/" + id + "/exec", cli_exec(true));
  EXPECT_EQ(exec.code, 403) << exec.head << "\n" << exec.body;
  EXPECT_THAT(exec.body, HasSubstr("docker exec --privileged"));
  auto inspect = run_command({kDocker, "-H", "unix://" + w.engine_socket(w.alice).string(),
                              "inspect", "--format", "{{len .ExecIDs}}", id});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_THAT(inspect.output, AnyOf("0\n", "<no value>\n"));
  // A non-privileged exec is judged and passes to the engine (which may refuse: not running).
  auto plain = engine_http(w.alice, "POST", kApi + "/containers/" + id + "/exec", cli_exec(false));
  EXPECT_NE(plain.code, 403) << plain.body;

  // Bob's engine never saw any of it.
  EXPECT_TRUE(containers_on_engine(w.bob).empty());
}

// ---- authentication ----------------------------------------------------------------------------

// Every per-session call with the given credentials; each must be refused.
void expect_every_session_call_refused(const std::string& token, const std::string& session,
                                       const std::string& what) {
  SCOPED_TRACE(what);
  auto refused = [](const grpc::Status& st, const char* call) {
    EXPECT_THAT(st.error_code(),
                AnyOf(grpc::StatusCode::UNAUTHENTICATED, grpc::StatusCode::PERMISSION_DENIED))
        << call << ": " << st.error_code() << " " << st.error_message();
  };
  auto& stub = *world->stub;
  {
    grpc::ClientContext ctx;
    authorize(ctx, token, session);
    v1::SessionInfo out;
    refused(stub.GetSession(&ctx, {}, &out), "GetSession");
  }
  {
    grpc::ClientContext ctx;
    authorize(ctx, token, session);
    v1::ListContainersResponse out;
    refused(stub.ListContainers(&ctx, {}, &out), "ListContainers");
  }
  {
    grpc::ClientContext ctx;
    authorize(ctx, token, session);
    v1::ListImagesResponse out;
    refused(stub.ListImages(&ctx, {}, &out), "ListImages");
  }
  {
    grpc::ClientContext ctx;
    authorize(ctx, token, session);
    v1::DestroySessionRequest req;
    req.set_reason("hostile");
    v1::DestroySessionResponse out;
    refused(stub.DestroySession(&ctx, req, &out), "DestroySession");
  }
  for (auto target : {v1::TunnelOpen::TARGET_ENGINE_API, v1::TunnelOpen::TARGET_PUBLISHED_PORT}) {
    grpc::ClientContext ctx;
    authorize(ctx, token, session);
    auto rw = stub.Tunnel(&ctx);
    v1::TunnelFrame open, data;
    open.mutable_open()->set_target(target);
    open.mutable_open()->set_host_port(22);
    open.mutable_open()->set_protocol("tcp");
    data.set_data("GET /v1.41/containers/json?all=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    rw->Write(open);
    rw->Write(data);
    v1::TunnelFrame in;
    std::string got;
    while (rw->Read(&in)) got += in.data();
    EXPECT_EQ(got, "") << "the tunnel answered";
    refused(rw->Finish(), "Tunnel");
  }
  {
    grpc::ClientContext ctx;
    authorize(ctx, token, session);
    auto reader = stub.Events(&ctx, {});
    v1::SessionEvent ev;
    EXPECT_FALSE(reader->Read(&ev)) << "Events sent " << ev.DebugString();
    refused(reader->Finish(), "Events");
  }
  {
    grpc::ClientContext ctx;
    authorize(ctx, token, session);
    auto rw = stub.Sync(&ctx);
    rw->Write(sync_open("0123456789abcdef"));
    v1::SyncMessage m;
    EXPECT_FALSE(rw->Read(&m)) << "Sync sent " << m.DebugString();
    refused(rw->Finish(), "Sync");
  }
}

TEST_F(Adversarial, ForeignAndWrongCredentialsAreRefusedOnEveryCall) {
  World& w = *world;
  expect_every_session_call_refused(w.alice.token, w.bob.id, "alice's token, bob's session id");
  expect_every_session_call_refused(w.bob.token, w.alice.id, "bob's token, alice's session id");
  expect_every_session_call_refused(w.alice_token, w.alice.id, "alice's account token");
  expect_every_session_call_refused(w.bob_token, w.alice.id, "bob's account token, alice's id");
  expect_every_session_call_refused("", w.alice.id, "no token");
  expect_every_session_call_refused(random_hex(32), w.alice.id, "a wrong token");
  expect_every_session_call_refused(w.alice.token, "", "no session id");
  expect_every_session_call_refused(w.alice.token.substr(0, 63), w.alice.id, "a token cut short");
  expect_every_session_call_refused(w.alice.token + "0", w.alice.id, "a token made longer");

  // Account calls: a session token is no account token; nor is nothing.
  for (const auto& [token, what] : std::vector<std::pair<std::string, std::string>>{
           {w.alice.token, "session token"}, {"", "no token"}, {random_hex(24), "wrong token"}}) {
    SCOPED_TRACE(what);
    grpc::ClientContext ctx;
    authorize(ctx, token, "");
    v1::HelloRequest req;
    req.set_protocol(v1::PROTOCOL_VERSION_1);
    v1::HelloResponse out;
    EXPECT_EQ(w.stub->Hello(&ctx, req, &out).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    grpc::Status st;
    create_session(token, st);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  }

  // Both sessions live on and answer their own credentials.
  for (const Creds* s : {&w.alice, &w.bob}) {
    grpc::ClientContext ctx;
    authorize(ctx, s->token, s->id);
    v1::SessionInfo info;
    auto st = w.stub->GetSession(&ctx, {}, &info);
    EXPECT_TRUE(st.ok()) << st.error_message();
    EXPECT_EQ(info.session_id(), s->id);
    EXPECT_EQ(info.state(), v1::SESSION_STATE_RUNNING);
  }
  EXPECT_EQ(engine_http(w.bob, "GET", kApi + "/_ping").code, 200);
  // No secret in the log, whatever was tried.
  const std::string log = slurp(w.dir / "runner.out");
  for (const auto& secret : {w.alice.token, w.bob.token, w.alice_token, w.bob_token})
    EXPECT_THAT(log, ::testing::Not(HasSubstr(secret)));
}

// ---- Sync handlers over the wire ---------------------------------------------------------------

TEST_F(Adversarial, HostileSyncMessagesAreRefusedAndWriteNothingOutside) {
  World& w = *world;
  const std::string marker = "adv-escape-" + random_hex(4);
  const std::string mount_id = "00000000000000aa";
  // Bob's tree, which none of alice's attempts may touch.
  auto bob = sync_call(w.bob, {sync_open("fedcba9876543211"), sync_file("secret.txt", "bob\n")}, 1);
  ASSERT_TRUE(bob.acked(1)) << bob.errors();
  auto still_serving = [&](const char* after) {
    SCOPED_TRACE(after);
    EXPECT_TRUE(w.runner_alive());
    grpc::ClientContext ctx;
    authorize(ctx, w.alice.token, w.alice.id);
    v1::SessionInfo info;
    EXPECT_TRUE(w.stub->GetSession(&ctx, {}, &info).ok());
    auto fine = sync_call(w.alice, {sync_open(mount_id), sync_file("ok.txt", after)}, 7);
    EXPECT_TRUE(fine.acked(7)) << fine.errors() << fine.status.error_message();
    EXPECT_EQ(fine.errors(), "");
    EXPECT_EQ(slurp(w.sync_root(w.alice) / mount_id / "ok.txt"), after);
  };

  // Before or instead of open.
  {
    auto r = sync_call(w.alice, {sync_file(marker, "x")});
    EXPECT_THAT(r.errors(), HasSubstr("the first message of a Sync call must be open"));
    EXPECT_FALSE(r.bind_source().has_value());
  }
  {
    v1::SyncMessage barrier;
    barrier.mutable_barrier()->set_id(1);
    auto r = sync_call(w.alice, {barrier});
    EXPECT_THAT(r.errors(), HasSubstr("must be open"));
  }
  still_serving("after messages before open");

  // Mount ids that are not 16 lowercase hex digits (a path, above all).
  for (const std::string& id : {std::string("../../../../tmp"), std::string(""),
                                std::string("0123456789ABCDEF"), std::string("../" + marker),
                                std::string("/tmp/") + marker, std::string(4096, 'a'),
                                std::string("0123456789abcde\0", 16)}) {
    auto r = sync_call(w.alice, {sync_open(id)});
    EXPECT_THAT(r.errors(), HasSubstr("invalid mount id")) << id.substr(0, 40);
    EXPECT_FALSE(r.bind_source().has_value());
  }
  for (const std::string& name : {std::string(".."), std::string("a/b"), std::string(""),
                                  std::string("../") + marker}) {
    auto r = sync_call(w.alice, {sync_open(mount_id, true, name)});
    EXPECT_THAT(r.errors(), HasSubstr("invalid file name")) << name;
  }
  still_serving("after bad mount ids");

  // Bad paths inside an opened mount: each an error, the call stays usable (its barrier answers).
  {
    std::vector<v1::SyncMessage> ms = {sync_open(mount_id)};
    const std::vector<std::string> bad = {
        "../" + marker, "../../" + marker, "../../../../../../tmp/" + marker, "/tmp/" + marker,
        "a/../../" + marker, std::string("a\0/../../", 9) + marker, "./" + marker, "a//" + marker,
        std::string(300, 'n') + marker, std::string(70000, 'd') + "/" + marker};
    for (const auto& p : bad) ms.push_back(sync_file(p, "escaped\n"));
    // Through a symlink planted in the tree: the runner never follows one.
    ms.push_back(sync_symlink("link-" + marker, "/tmp"));
    ms.push_back(sync_file("link-" + marker + "/" + marker, "escaped\n"));
    v1::SyncMessage remove, rename, fetch;
    remove.mutable_remove()->set_path("../" + mount_id);
    rename.mutable_rename()->set_from("ok.txt");
    rename.mutable_rename()->set_to("../" + marker);
    fetch.mutable_fetch()->set_path("../../../tls/runner.key");
    ms.push_back(remove);
    ms.push_back(rename);
    ms.push_back(fetch);
    // Data with no change before it, and a second open.
    v1::SyncMessage data;
    data.mutable_data()->set_data("stray");
    ms.push_back(data);
    ms.push_back(sync_open("00000000000000bb"));
    auto r = sync_call(w.alice, ms, 3);
    EXPECT_TRUE(r.acked(3)) << r.errors() << r.status.error_message();
    const std::string errors = r.errors();
    EXPECT_THAT(errors, HasSubstr("invalid entry"));
    EXPECT_THAT(errors, HasSubstr("invalid path"));
    EXPECT_THAT(errors, HasSubstr("invalid rename"));
    EXPECT_THAT(errors, HasSubstr("unexpected message"));
    // One error per bad file path and one for the write through the symlink (at least).
    std::size_t count = 0;
    for (auto& m : r.received) count += m.has_error();
    EXPECT_GE(count, bad.size() + 1 + 4) << errors;
    for (auto& m : r.received) {
      // The runner's key never travels back.
      if (m.has_change()) {
        EXPECT_THAT(m.change().entry().path(), ::testing::Not(HasSubstr("tls")));
      }
    }
  }
  EXPECT_TRUE(fs::exists(w.sync_root(w.alice) / mount_id));
  still_serving("after bad paths");

  // A change whose content is interrupted by another message ends the call, not the runner.
  {
    auto first = sync_file("big-" + marker, "part one");
    first.mutable_change()->mutable_entry()->set_size(100);
    first.mutable_change()->set_more(true);
    auto r = sync_call(w.alice, {sync_open(mount_id), first, sync_file("other", "x")}, 4);
    EXPECT_THAT(r.errors(), HasSubstr("unexpected message in a change's content"));
    EXPECT_FALSE(r.acked(4));
  }
  still_serving("after an interrupted change");

  // Oversized: one message beyond the runner's 16 MiB limit is refused by gRPC itself.
  {
    auto r = sync_call(w.alice, {sync_open(mount_id), sync_file("huge-" + marker,
                                                                std::string(17 << 20, 'h'))},
                       5);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << r.status.error_message();
    EXPECT_FALSE(r.acked(5));
  }
  still_serving("after an oversized message");

  // Nothing arrived outside the mount: no file with the marker anywhere but the tree's own
  // refused-and-never-written names (none), and no conflict copies of them either.
  auto found = files_named(marker);
  // The planted symlink is a legitimate entry of the tree itself.
  std::erase_if(found, [&](const std::string& p) {
    return p == (w.sync_root(w.alice) / mount_id / ("link-" + marker)).string();
  });
  EXPECT_THAT(found, ::testing::IsEmpty());
  EXPECT_FALSE(fs::exists(fs::path("/tmp") / marker));
  EXPECT_TRUE(fs::is_symlink(w.sync_root(w.alice) / mount_id / ("link-" + marker)));
  // Bob's tree is untouched by all of it.
  EXPECT_EQ(slurp(w.sync_root(w.bob) / "fedcba9876543211" / "secret.txt"), "bob\n");
}


// ---- binds whose target could change under the check -----------------------------------------

// The gate checks a bind source, then dockerd mounts it, following symlinks. Anything the
// client (through Sync) or a container (through its own bind) can replace in between must not
// be bindable: a path inside a mount, a single-file mount that becomes a symlink, a mount id
// reopened in the other mode.
TEST_F(Adversarial, BindSourcesThatCouldBeSwappedAfterTheCheckAreRefused) {
  World& w = *world;
  const std::string create = kApi + "/containers/create";
  const auto containers_before = containers_on_engine(w.alice);
  auto dir_open = sync_call(w.alice, {sync_open("1111111111111111"),
                                      sync_file("inside.txt", "a file of the mount\n")},
                            1);
  ASSERT_TRUE(dir_open.bind_source().has_value()) << dir_open.errors();
  const std::string mount = *dir_open.bind_source();

  auto inside = engine_http(w.alice, "POST", create,
                            cli_create({{"Binds", {mount + "/inside.txt:/x"}}}));
  EXPECT_EQ(inside.code, 403) << inside.head << "\n" << inside.body;
  EXPECT_THAT(inside.body, HasSubstr("not a path inside one"));
  auto volume = engine_http(w.alice, "POST", kApi + "/volumes/create",
                            json{{"Name", "inside"},
                                 {"Driver", "local"},
                                 {"DriverOpts",
                                  {{"type", "none"}, {"o", "bind"}, {"device", mount + "/inside.txt"}}}}
                                .dump());
  EXPECT_EQ(volume.code, 403) << volume.head << "\n" << volume.body;
  EXPECT_EQ(containers_on_engine(w.alice), containers_before);

  // A single-file mount: its file is bindable, the directory holding it is not, and the client
  // cannot turn the file into a symlink (or a directory) afterwards.
  const std::string single_id = "2222222222222222";
  auto single = sync_call(w.alice, {sync_open(single_id, true, "app.yml"),
                                    sync_file("app.yml", "version: 1\n")},
                          1);
  ASSERT_TRUE(single.bind_source().has_value()) << single.errors();
  const fs::path file = *single.bind_source();
  EXPECT_EQ(file, w.sync_root(w.alice) / single_id / "app.yml");
  auto holder = engine_http(w.alice, "POST", create,
                            cli_create({{"Binds", {file.parent_path().string() + ":/x"}}}));
  EXPECT_EQ(holder.code, 403) << holder.body;
  auto swapped = sync_call(w.alice, {sync_open(single_id, true, "app.yml"),
                                     sync_symlink("app.yml", "/etc/shadow")},
                           2);
  EXPECT_THAT(swapped.errors(), HasSubstr("app.yml: invalid entry")) << swapped.status.error_message();
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(file))) << file;
  EXPECT_EQ(slurp(file), "version: 1\n");

  // The same mount id reopened as a directory (whose entries the client then chooses).
  auto reopened = sync_call(w.alice, {sync_open(single_id), sync_symlink("app.yml", "/")}, 3);
  EXPECT_FALSE(reopened.bind_source().has_value());
  EXPECT_THAT(reopened.errors(), HasSubstr("cannot now hold a directory"));
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(file))) << file;

  // What offloadd binds still works: the mount's directory and the single file.
  for (const std::string& source : {mount, file.string()}) {
    auto ok = engine_http(w.alice, "POST", create + "?name=adv-ok-" + std::to_string(source.size()),
                          cli_create({{"Binds", {source + ":/x"}}}));
    EXPECT_EQ(ok.code, 201) << source << ": " << ok.head << "\n" << ok.body;
  }
  auto removed = run_command({kDocker, "-H", "unix://" + w.engine_socket(w.alice).string(), "rm",
                              "-f", "adv-ok-" + std::to_string(mount.size()),
                              "adv-ok-" + std::to_string(file.string().size())},
                             60s);
  EXPECT_TRUE(removed.ok()) << removed.output << removed.error;
}

// ---- the network, from a container of alice's session ----------------------------------------

// The engine address of a session: the address of the veth end inside its namespace.
std::string engine_address(const Creds& s) {
  auto r = run_command({"ip", "-n", "offload-" + s.id, "-4", "-o", "addr", "show"});
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    auto inet = line.find(" inet ");
    if (inet == std::string::npos || line.find(" lo ") != std::string::npos) continue;
    auto start = inet + 6;
    return line.substr(start, line.find('/', start) - start);
  }
  return "";
}

// The containers are started on the engines' own sockets (set-up); the attacks are what they
// dial. Each target is first shown to answer from the runner host itself, so a failure from the
// container is the isolation and not an absent server.
TEST_F(Adversarial, AContainerReachesTheInternetAndNothingOfTheRunnerOrOtherSessions) {
  World& w = *world;
  const std::string image = "adv:net";
  for (const Creds* s : {&w.alice, &w.bob})
    ASSERT_EQ(e2e::import_network_image(w.engine_socket(*s), w.dir / ("net-" + s->id), image),
              "");
  const int bob_port = 18000 + ::getpid() % 1000;
  auto published = run_command(
      {kDocker, "-H", "unix://" + w.engine_socket(w.bob).string(), "run", "-d", "-p",
       std::to_string(bob_port) + ":80", image, "sh", "-c",
       "echo reached >/index.html && exec httpd -f -p 80 -h /"},
      60s);
  ASSERT_TRUE(published.ok()) << published.output << published.error;

  const std::string runner_port = w.address.substr(w.address.rfind(':') + 1);
  const std::string runner_grpc = w.runner_host + ":" + runner_port;
  const std::string host_service = w.runner_host + ":" + std::to_string(w.host_http_port);
  const std::string bob_service = engine_address(w.bob) + ":" + std::to_string(bob_port);
  const std::string metadata = "169.254.169.254:80";
  const std::string internet = w.public_server + ":80";
  const std::string denied = w.denied_server + ":80";
  const std::string lan = w.lan_server + ":80";
  ASSERT_NE(bob_service.front(), ':') << "no engine address for bob's session";
  for (const auto& target : {host_service, internet, denied, lan})
    EXPECT_EQ(e2e::probe_from_host(target), "ok") << target;
  EXPECT_TRUE(e2e::wait_for([&] { return e2e::probe_from_host(bob_service) == "ok"; }, 10s))
      << "bob's published port does not answer on the runner host";

  auto from_alice = e2e::probe_from_container(
      w.engine_socket(w.alice), image, {host_service, bob_service, metadata, internet, denied, lan});
  EXPECT_EQ(from_alice[host_service], "fail") << "the runner host's own service";
  EXPECT_EQ(from_alice[bob_service], "fail") << "bob's published port at bob's engine address";
  EXPECT_EQ(from_alice[metadata], "fail") << "the cloud metadata address";
  EXPECT_EQ(from_alice[denied], "fail") << "--egress-deny " << w.denied_server << "/32";
  EXPECT_EQ(from_alice[internet], "ok") << "the internet";
  EXPECT_EQ(from_alice[lan], "ok") << "--egress-allow " << w.lan_cidr;
  EXPECT_EQ(from_alice.count("docker run"), 0u) << from_alice["docker run"];

  // The runner's gRPC port says nothing to a plain GET either way, so the proof is the session's
  // INPUT drop rule counting the container's attempts, and the runner seeing no connection.
  const std::string alice_veth = "ofl" + w.alice.id.substr(0, 8) + "h";
  const long drops_before = e2e::iptables_packets("INPUT", "DROP", alice_veth, "");
  ASSERT_GE(drops_before, 0) << "no INPUT drop rule for " << alice_veth;
  auto grpc_probe = e2e::probe_from_container(w.engine_socket(w.alice), image, {runner_grpc});
  EXPECT_EQ(grpc_probe[runner_grpc], "fail");
  EXPECT_GT(e2e::iptables_packets("INPUT", "DROP", alice_veth, ""), drops_before)
      << "alice's connection to the runner's port " << runner_grpc << " was not dropped";
  // The runner itself still serves (from the host).
  grpc::ClientContext ctx;
  authorize(ctx, w.alice.token, w.alice.id);
  v1::GetSessionRequest get;
  v1::SessionInfo got;
  EXPECT_TRUE(w.stub->GetSession(&ctx, get, &got).ok());
}

}  // namespace
