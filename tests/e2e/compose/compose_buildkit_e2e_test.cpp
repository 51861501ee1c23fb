// End to end (issue 14, item 6): docker-compose v1 and dockerd's built-in BuildKit through
// `docker offload`. Neither compose v2 nor buildx is packaged for Debian 12 (and their Go sources
// cannot be fetched here), so:
//  - `Compose.*` drives docker-compose 1.29 (docker-py) through the `docker-offload` context: a
//    build, two services on a named network, a published port serving a bind-mounted directory,
//    ps, logs, exec (through the docker CLI and through docker-py), `down -v`;
//  - `BuildKit.*` does on the raw Engine API what buildx does against dockerd's BuildKit: the
//    `POST /session` upgrade to h2c with a gRPC server on the client's side (buildkit_session.h),
//    and `POST /build?version=2` builds, one of them with a build secret fetched through that
//    session.
// Each suite runs in a process of its own (ctest e2e-compose, e2e-buildkit) with its own session,
// started by `docker offload start` on the embedded local runner; waits poll with an upper bound.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "buildkit_session.h"
#include "e2e_support.h"
#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"

namespace offload::e2e {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kImage = "offload-compose/busybox:latest";
const std::string kProject = "offloadcompose";

fs::path g_dir;  // everything of this run
fs::path g_docker_config;

Shell sh(const std::string& command, std::chrono::milliseconds timeout = 120s) {
  return run_shell(g_dir, command, timeout);
}

// One shell word, whatever `s` holds.
std::string q(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}
std::string q(const fs::path& p) { return q(p.string()); }

#define ASSERT_SH_OK(shell) ASSERT_EQ((shell).exit_code, 0) << (shell).err << (shell).out
#define EXPECT_SH_OK(shell) EXPECT_EQ((shell).exit_code, 0) << (shell).err << (shell).out

fs::path offload_dir() { return g_docker_config / "offload"; }

std::string daemon_log_tail(std::size_t lines = 30) {
  return "\n--- offloadd.log (tail) ---\n" +
         sh("tail -n " + std::to_string(lines) + " " + q(offload_dir() / "offloadd.log")).out;
}

void put(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  ASSERT_TRUE(out.good()) << "cannot write " << file;
}

json status_json() {
  auto doc = json::parse(sh("docker offload status --format json").out, nullptr, false);
  return doc.is_object() ? doc : json::object();
}

// The context's endpoint: offloadd's Docker socket.
std::string offload_socket() {
  auto host = trim(sh("docker context inspect docker-offload --format '{{.Endpoints.docker.Host}}'").out);
  return host.starts_with("unix://") ? host.substr(7) : host;
}

// The session engine's own socket on the runner (this host), bypassing offload: the reference.
std::string engine_socket() {
  auto id = status_json().value("sessionId", "");
  if (id.size() < 8) return "";
  return trim(sh("ls /run/docker-offload/*/" + id.substr(0, 8) + "/docker.sock 2>/dev/null | head -1").out);
}

// A raw API call with curl: the JSON answer, or null.
json api(const std::string& socket, const std::string& method, const std::string& path) {
  auto r = sh("curl -gsS --max-time 60 --unix-socket " + q(socket) + " -X " + method + " " +
              q("http://docker/v1.41" + path));
  auto doc = json::parse(r.out, nullptr, false);
  return doc.is_discarded() ? json() : doc;
}

// A TCP port nothing listens on right now (the kernel's pick), for a published port.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) ::close(fd);
  return port;
}

class OffloadEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (::geteuid() != 0 || !find_program("dockerd") || !fs::exists("/usr/bin/busybox")) {
      skip_ = "needs root, dockerd and busybox-static";
      return;
    }
    g_dir = fs::path("/tmp") / ("offload-compose-e2e-" + random_hex(4));
    g_docker_config = g_dir / "docker";
    fs::create_directories(g_dir);
    // This suite's own address pool (no other e2e uses 10.242.0.0/16).
    make_docker_config(g_docker_config, OFFLOAD_BIN_DIR, "{\n\t\"auths\": {}\n}",
                       R"({"version": 1, "logLevel": "debug", "local": {"addressPool": "10.242.0.0/16"}})");
    ::setenv("DOCKER_CONFIG", g_docker_config.c_str(), 1);
    ::unsetenv("DOCKER_HOST");
    ::unsetenv("DOCKER_CONTEXT");

    make_busybox_rootfs(g_dir / "rootfs", OFFLOAD_ECHO_SERVER);
    auto started = sh("docker offload start", 180s);
    ASSERT_SH_OK(started);
    ASSERT_EQ(trim(sh("docker context show").out), "docker-offload");
    auto import = sh("tar -C " + q(g_dir / "rootfs") + " -c . | docker import - " + kImage);
    ASSERT_SH_OK(import);
  }

  void TearDown() override {
    if (!skip_.empty()) return;
    sh("docker offload stop --force", 180s);
    std::string pid;
    if (!read_file(offload_dir() / "offloadd.pid", pid)) {
      try {
        terminate_process(std::stoi(pid), 10s);
      } catch (...) {
      }
    }
    run_command({"rm", "-rf", g_dir.string()});
  }

  static std::string skip_;
};
std::string OffloadEnvironment::skip_;

// ============================== docker-compose v1 ==============================================

class Compose : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    project_ = g_dir / "project";
    port_ = free_port();
  }
  void SetUp() override {
    if (!OffloadEnvironment::skip_.empty()) GTEST_SKIP() << OffloadEnvironment::skip_;
    if (!find_program("docker-compose")) GTEST_SKIP() << "docker-compose is not installed";
  }
  // docker-compose as a user runs it: in the project directory, no DOCKER_HOST, so docker-py
  // takes the endpoint of the current docker context (`docker-offload`) from DOCKER_CONFIG.
  static Shell compose(const std::string& args, std::chrono::milliseconds timeout = 180s,
                       const std::string& env = "") {
    return sh("cd " + q(project_) + " && " + env + " docker-compose -p " + kProject + " " + args,
              timeout);
  }
  static std::string get(const std::string& path) {
    return sh("curl -sS --max-time 4 http://127.0.0.1:" + std::to_string(port_) + path, 10s).out;
  }

  static fs::path project_;
  static int port_;
};
fs::path Compose::project_;
int Compose::port_ = -1;

TEST_F(Compose, BuildAndUpStartTwoServicesOnANamedNetwork) {
  ASSERT_GT(port_, 0);
  put(project_ / "app" / "index.html", "served from the laptop\n");
  put(project_ / "client" / "greeting.txt", "built by compose\n");
  put(project_ / "client" / "Dockerfile",
      "FROM " + kImage + "\nCOPY greeting.txt /greeting.txt\n");
  put(project_ / "docker-compose.yml",
      "version: \"2.4\"\n"
      "services:\n"
      "  web:\n"
      "    image: " + kImage + "\n"
      "    command: httpd -f -v -p 80 -h /app\n"
      "    ports:\n"
      "      - \"" + std::to_string(port_) + ":80\"\n"
      "    volumes:\n"
      "      - ./app:/app\n"
      "      - data:/data\n"
      "    networks:\n"
      "      - appnet\n"
      "  client:\n"
      "    build: ./client\n"
      "    image: offload-compose/client:latest\n"
      "    command: sleep 600\n"
      "    networks:\n"
      "      - appnet\n"
      "networks:\n"
      "  appnet:\n"
      "volumes:\n"
      "  data:\n");

  // docker-py's build: the classic builder's POST /build with the context as a tar.
  auto built = compose("build");
  ASSERT_SH_OK(built) << daemon_log_tail();
  auto up = compose("up -d");
  ASSERT_SH_OK(up) << daemon_log_tail();

  auto running = compose("ps --services --filter status=running | sort");
  EXPECT_SH_OK(running);
  EXPECT_EQ(running.out, "client\nweb\n") << running.err;
  auto ps = compose("ps");
  EXPECT_SH_OK(ps);
  EXPECT_NE(ps.out.find(kProject + "_web_1"), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find(kProject + "_client_1"), std::string::npos) << ps.out;
  EXPECT_NE(ps.out.find(std::to_string(port_) + "->80/tcp"), std::string::npos) << ps.out;

  // What compose made is on the session's engine, asked directly.
  std::string engine = engine_socket();
  ASSERT_FALSE(engine.empty());
  auto networks = api(engine, "GET", "/networks?filters=" +
                                         std::string("%7B%22name%22%3A%7B%22") + kProject +
                                         "_appnet%22%3Atrue%7D%7D");
  ASSERT_TRUE(networks.is_array()) << networks.dump();
  EXPECT_EQ(networks.size(), 1u) << networks.dump();
}

TEST_F(Compose, ThePublishedPortServesTheBindMountedFileAndFollowsLocalEdits) {
  std::string body;
  EXPECT_TRUE(wait_for([&] { return (body = get("/index.html")) == "served from the laptop\n"; },
                       30s))
      << "GET through offloadd's forwarded port " << port_ << ": " << body << daemon_log_tail();

  // The bind mount is live: an edit here is what the container serves next.
  put(project_ / "app" / "index.html", "edited on the laptop\n");
  EXPECT_TRUE(wait_for([&] { return (body = get("/index.html")) == "edited on the laptop\n"; },
                       15s))
      << body << daemon_log_tail();
}

TEST_F(Compose, ExecThroughTheCliAndThroughDockerPyReachesTheOtherServiceByName) {
  // By default compose 1.29 runs `docker exec` (the CLI, with the same environment).
  auto by_cli = compose("exec -T client sh -c " +
                        q(std::string("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc web 80")));
  EXPECT_SH_OK(by_cli);
  EXPECT_NE(by_cli.out.find("200 OK"), std::string::npos) << by_cli.out << by_cli.err;
  EXPECT_NE(by_cli.out.find("on the laptop\n"), std::string::npos) << by_cli.out;

  // COMPOSE_INTERACTIVE_NO_CLI: docker-py's own exec (create, then a hijacked start).
  auto by_sdk = compose("exec -T client cat /greeting.txt", 60s, "COMPOSE_INTERACTIVE_NO_CLI=1");
  EXPECT_SH_OK(by_sdk);
  EXPECT_EQ(by_sdk.out, "built by compose\n") << by_sdk.err;

  auto run = compose("run --rm -T client cat /greeting.txt");
  EXPECT_SH_OK(run);
  EXPECT_EQ(run.out, "built by compose\n") << run.err;
}

TEST_F(Compose, LogsShowTheServicesOutput) {
  ASSERT_FALSE(get("/index.html").empty());
  Shell logs;
  EXPECT_TRUE(wait_for([&] {
    logs = compose("logs --no-color web", 60s);
    return logs.out.find("response:200") != std::string::npos;
  }, 15s)) << logs.out << logs.err;
  EXPECT_NE(logs.out.find("web_1"), std::string::npos) << logs.out;
}

TEST_F(Compose, DownWithVolumesLeavesNothingOnTheSessionEngine) {
  std::string engine = engine_socket();
  ASSERT_FALSE(engine.empty());
  auto down = compose("down -v");
  ASSERT_SH_OK(down) << daemon_log_tail();

  const std::string label = "%7B%22label%22%3A%7B%22com.docker.compose.project%3D" + kProject +
                            "%22%3Atrue%7D%7D";
  for (const std::string& socket : {offload_socket(), engine}) {
    auto containers = api(socket, "GET", "/containers/json?all=1&filters=" + label);
    auto networks = api(socket, "GET", "/networks?filters=" + label);
    auto volumes = api(socket, "GET", "/volumes?filters=" + label);
    EXPECT_EQ(containers, json::array()) << socket;
    EXPECT_EQ(networks, json::array()) << socket;
    EXPECT_EQ(volumes.value("Volumes", json()), json::array()) << socket << volumes.dump();
  }
  // Nor a forwarded port on this machine.
  std::string body;
  EXPECT_TRUE(wait_for([&] { return (body = get("/index.html")).empty(); }, 15s)) << body;
}

// ============================== BuildKit (dockerd's own) =======================================

class BuildKit : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!OffloadEnvironment::skip_.empty()) GTEST_SKIP() << OffloadEnvironment::skip_;
  }
};

// A build context as a tar file: `files` (name → content) under a fresh directory.
fs::path context_tar(const std::string& name, const std::map<std::string, std::string>& files) {
  fs::path dir = g_dir / "contexts" / name;
  fs::remove_all(dir);
  for (const auto& [file, text] : files) put(dir / file, text);
  fs::path tar = g_dir / "contexts" / (name + ".tar");
  sh("tar -C " + q(dir) + " -cf " + q(tar) + " .");
  return tar;
}

// POST /build on `socket` with `query`; the JSON-lines answer.
std::string post_build(const std::string& socket, const fs::path& tar, const std::string& query) {
  return sh("curl -sS --max-time 170 --unix-socket " + q(socket) +
                " -X POST -H 'Content-Type: application/x-tar' --data-binary @" + q(tar) + " " +
                q("http://docker/v1.41/build?" + query),
            180s)
      .out;
}

// The upgrade, then gRPC both ways on the hijacked connection: BuildKit checks the session's
// health every second, and this client answers. Through offload the exchange must be the same as
// on the engine's own socket.
TEST_F(BuildKit, SessionUpgradeCarriesGrpcBothWaysAsOnTheEngineItself) {
  std::string engine = engine_socket();
  ASSERT_FALSE(engine.empty());
  auto exchange = [](const std::string& socket) {
    BuildKitSession session(socket, {});
    std::string error = session.start();
    EXPECT_EQ(error, "") << socket;
    // Three answered checks: dockerd's BuildKit keeps the session, so both ways work.
    wait_for([&] { return session.seen().calls.size() >= 3; }, 20s);
    auto seen = session.seen();
    session.stop();
    return seen;
  };
  auto direct = exchange(engine);
  auto offloaded = exchange(offload_socket());

  EXPECT_EQ(direct.status_line, "HTTP/1.1 101 Switching Protocols");
  EXPECT_EQ(direct.upgrade, "h2c");
  EXPECT_TRUE(direct.client_preface && direct.settings && direct.settings_acked);
  ASSERT_GE(direct.calls.size(), 3u) << direct.error;

  EXPECT_EQ(offloaded.status_line, direct.status_line);
  EXPECT_EQ(offloaded.upgrade, direct.upgrade);
  EXPECT_TRUE(offloaded.client_preface) << offloaded.error << daemon_log_tail();
  EXPECT_TRUE(offloaded.settings);
  EXPECT_TRUE(offloaded.settings_acked) << "our SETTINGS did not reach dockerd";
  EXPECT_EQ(offloaded.error, "");
  EXPECT_FALSE(offloaded.closed) << "dockerd dropped the session";
  ASSERT_GE(offloaded.calls.size(), 3u) << offloaded.error << daemon_log_tail();
  for (const auto& call : offloaded.calls) EXPECT_EQ(call, "/grpc.health.v1.Health/Check");
}

// version=2 is BuildKit's builder: its progress comes as `moby.buildkit.trace` records, which the
// classic builder never sends. The tar context needs no session (dockerd hands it to BuildKit).
TEST_F(BuildKit, AVersion2BuildRunsOnTheEnginesBuildKit) {
  auto tar = context_tar("plain", {{"Dockerfile", "FROM " + kImage + "\n"
                                                   "COPY hello.txt /hello.txt\n"
                                                   "RUN cat /hello.txt > /built.txt && echo ran >> /built.txt\n"},
                                   {"hello.txt", "hello buildkit\n"}});
  auto out = post_build(offload_socket(), tar, "version=2&t=offload-bk/plain:1");
  EXPECT_NE(out.find("\"moby.buildkit.trace\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"moby.image.id\""), std::string::npos) << out;
  EXPECT_EQ(out.find("errorDetail"), std::string::npos) << out;
  auto run = sh("docker run --rm offload-bk/plain:1 cat /built.txt");
  EXPECT_SH_OK(run);
  EXPECT_EQ(run.out, "hello buildkit\nran\n");

  // Without version=2 the same context goes to the classic builder: no BuildKit records.
  auto classic = post_build(offload_socket(), tar, "t=offload-bk/classic:1");
  EXPECT_EQ(classic.find("moby.buildkit.trace"), std::string::npos) << classic;
  EXPECT_NE(classic.find("Successfully tagged offload-bk/classic:1"), std::string::npos) << classic;
}

// `RUN --mount=type=secret`: BuildKit asks the client's session for the secret (GetSecret over
// the hijacked h2c connection, through the tunnel); the step sees it, the image keeps nothing.
TEST_F(BuildKit, ABuildSecretComesFromTheClientsSessionThroughTheTunnel) {
  const std::string secret = "s3cret-" + random_hex(8);
  BuildKitSession session(offload_socket(), {{"token", secret}});
  ASSERT_EQ(session.start(), "") << daemon_log_tail();

  auto tar = context_tar(
      "secret",
      {{"Dockerfile", "FROM " + kImage + "\n"
                      "RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 > /secret.sha256\n"}});
  auto out = post_build(offload_socket(), tar, "version=2&t=offload-bk/secret:1&session=" + session.id());
  auto seen = session.seen();
  session.stop();

  EXPECT_EQ(out.find("errorDetail"), std::string::npos) << out << daemon_log_tail();
  EXPECT_NE(out.find("\"moby.image.id\""), std::string::npos) << out;
  EXPECT_EQ(seen.secret_ids, std::vector<std::string>{"token"}) << seen.error;
  EXPECT_EQ(seen.error, "");

  auto expected = sh("printf %s " + q(secret) + " | sha256sum | cut -c1-64");
  auto in_image = sh("docker run --rm offload-bk/secret:1 sh -c 'cat /secret.sha256; ls /run/secrets 2>&1'");
  EXPECT_SH_OK(in_image);
  EXPECT_EQ(in_image.out.substr(0, 65), expected.out);
  EXPECT_EQ(sh("docker history --no-trunc offload-bk/secret:1 | grep -c " + q(secret)).out, "0\n");
  EXPECT_EQ(sh("grep -c " + q(secret) + " " + q(offload_dir() / "offloadd.log")).out, "0\n")
      << "a build secret in offloadd's log";
}

// `--output type=tar` (what `docker buildx build -o type=tar,dest=out.tar` asks for): BuildKit
// streams the result's file system to the client over the session (FileSend/DiffCopy: dockerd the
// gRPC client sending, this test the server receiving), over 3 MiB here, so HTTP/2 flow control
// must work both ways through the tunnel. The file a RUN step made arrives byte for byte.
// (Files a COPY brought from the context are missing from such exports on the session's engine:
// dockerd 20.10 with userns-remap leaves them out, on its own socket as well; see README.)
TEST_F(BuildKit, ATarOutputStreamsBackThroughTheSessionByteForByte) {
  auto tar = context_tar(
      "export", {{"Dockerfile", "FROM " + kImage + "\n"
                                "RUN head -c 2097152 /dev/urandom > /blob.bin && "
                                "sha256sum /blob.bin | cut -c1-64 > /blob.sha256\n"}});
  BuildKitSession session(offload_socket(), {});
  ASSERT_EQ(session.start(), "");
  // outputs=[{"Type":"tar"}]
  auto out = post_build(offload_socket(), tar,
                        "version=2&outputs=%5B%7B%22Type%22%3A%22tar%22%7D%5D&session=" + session.id());
  auto seen = session.seen();
  session.stop();
  EXPECT_EQ(out.find("errorDetail"), std::string::npos) << out << daemon_log_tail();
  EXPECT_EQ(seen.error, "");
  // One export stream (and health checks, one a second, while the build runs).
  EXPECT_EQ(std::count(seen.calls.begin(), seen.calls.end(), "/moby.filesync.v1.FileSend/DiffCopy"), 1);
  ASSERT_GT(seen.exported.size(), 3u << 20) << out;
  fs::path exported = g_dir / "exported";
  put(exported / "out.tar", seen.exported);
  auto unpacked = sh("cd " + q(exported) + " && tar -xf out.tar blob.bin blob.sha256 bin/busybox");
  ASSERT_SH_OK(unpacked);
  auto sum = sh("cd " + q(exported) + " && sha256sum blob.bin | cut -c1-64; cat blob.sha256");
  ASSERT_EQ(sum.out.size(), 130u) << sum.out << sum.err;
  EXPECT_EQ(sum.out.substr(0, 65), sum.out.substr(65)) << "blob.bin changed on the way";
  EXPECT_EQ(sh("cmp " + q(exported / "bin" / "busybox") + " /usr/bin/busybox && echo same").out,
            "same\n");
}

// The repeated field 1 of a protobuf message (ListWorkersResponse.record, DiskUsageResponse.record),
// sorted: dockerd lists them in no fixed order (a Go map). {"<malformed>"} if it is not one.
std::vector<std::string> records(const std::string& m) {
  std::vector<std::string> out;
  std::size_t i = 0;
  auto varint = [&](std::uint64_t& v) {
    v = 0;
    for (int shift = 0; i < m.size() && shift < 64; shift += 7) {
      auto b = static_cast<unsigned char>(m[i++]);
      v |= std::uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (i < m.size()) {
    std::uint64_t key = 0, length = 0;
    if (!varint(key) || key != 0x0a || !varint(length) || length > m.size() - i)
      return {"<malformed>"};
    out.push_back(m.substr(i, length));
    i += length;
  }
  std::sort(out.begin(), out.end());
  return out;
}

// `--output type=local` (`docker buildx build -o type=local,dest=out`): dockerd sends the result's
// file system over the session with the fsutil protocol (FileSend/DiffCopy: its Stats, then the
// files this client requests), through the tunnel: busybox (about 2 MiB) and the file a RUN made
// arrive byte for byte.
TEST_F(BuildKit, ALocalOutputArrivesAsADirectoryThroughTheSession) {
  const std::string marker = "exported " + random_hex(6);
  auto tar = context_tar("local", {{"Dockerfile", "FROM " + kImage + "\nRUN echo " + marker +
                                                      " > /made.txt\n"}});
  BuildKitSession session(offload_socket(), {});
  session.receive_directory();
  ASSERT_EQ(session.start(), "");
  // outputs=[{"Type":"local"}]
  auto out = post_build(offload_socket(), tar,
                        "version=2&outputs=%5B%7B%22Type%22%3A%22local%22%7D%5D&session=" + session.id());
  auto seen = session.seen();
  session.stop();
  EXPECT_EQ(out.find("errorDetail"), std::string::npos) << out << daemon_log_tail();
  EXPECT_EQ(seen.error, "");
  EXPECT_EQ(std::count(seen.calls.begin(), seen.calls.end(), "/moby.filesync.v1.FileSend/DiffCopy"), 1);
  EXPECT_EQ(seen.received["made.txt"], marker + "\n");
  std::string busybox;
  ASSERT_FALSE(read_file("/usr/bin/busybox", busybox));
  EXPECT_TRUE(seen.received["bin/busybox"] == busybox)
      << "bin/busybox: " << seen.received["bin/busybox"].size() << " bytes, not " << busybox.size();
  // Directories and the applets' symlinks come as Stats only.
  EXPECT_GT(seen.received_entries, seen.received.size() + 100);
}

// `POST /grpc`: dockerd serves BuildKit's control API on the upgraded connection (buildx's docker
// driver lists workers, disk usage, and solves through it). Through offload the answers are the
// engine's own, record for record.
TEST_F(BuildKit, TheGrpcUpgradeServesBuildKitsControlApiAsTheEngineItself) {
  std::string engine = engine_socket();
  ASSERT_FALSE(engine.empty());
  // A build first, so that DiskUsage has BuildKit cache records to list.
  auto tar = context_tar("grpc", {{"Dockerfile", "FROM " + kImage + "\nRUN echo cached > /c.txt\n"}});
  auto built = post_build(offload_socket(), tar, "version=2&t=offload-bk/grpc:1");
  ASSERT_NE(built.find("\"moby.image.id\""), std::string::npos) << built;
  for (const std::string method : {"/moby.buildkit.v1.Control/ListWorkers",
                                   "/moby.buildkit.v1.Control/DiskUsage"}) {
    auto direct = grpc_call(engine, method, "");
    auto offloaded = grpc_call(offload_socket(), method, "");
    EXPECT_EQ(direct.error, "") << method;
    EXPECT_EQ(direct.status_line, "HTTP/1.1 101 Switching Protocols") << method;
    EXPECT_EQ(direct.grpc_status, "0") << method << ": " << direct.grpc_message;
    EXPECT_EQ(offloaded.error, "") << method << daemon_log_tail();
    EXPECT_EQ(offloaded.status_line, direct.status_line) << method;
    EXPECT_EQ(offloaded.upgrade, "h2c") << method;
    EXPECT_EQ(offloaded.grpc_status, "0") << method << ": " << offloaded.grpc_message;
    EXPECT_FALSE(offloaded.message.empty()) << method;
    EXPECT_EQ(records(offloaded.message), records(direct.message)) << method;
  }
  // The one worker is the engine's, for this machine's platform.
  auto workers = grpc_call(offload_socket(), "/moby.buildkit.v1.Control/ListWorkers", "");
  EXPECT_NE(workers.message.find("amd64"), std::string::npos);
  EXPECT_NE(workers.message.find("linux"), std::string::npos);
}

// Protobuf by hand, for the one request below: a length-delimited field.
std::string pb_bytes(unsigned field, const std::string& b) {
  std::string out(1, static_cast<char>((field << 3) | 2));
  for (std::size_t v = b.size(); ; v >>= 7) {
    if (v < 0x80) { out += static_cast<char>(v); break; }
    out += static_cast<char>((v & 0x7f) | 0x80);
  }
  return out + b;
}

// What `docker buildx build -t offload-bk/solve:1 .` does with the docker driver: a session on
// POST /session serving the build context and the Dockerfile (FileSync/DiffCopy, the fsutil
// protocol), and a Solve with the Dockerfile frontend on BuildKit's control API (POST /grpc),
// both through offload. The image is exported to the engine's image store ("moby").
TEST_F(BuildKit, ABuildxStyleSolveGetsItsContextFromTheClientsSession) {
  const std::string marker = "from the laptop " + random_hex(6) + "\n";
  BuildKitSession session(offload_socket(), {});
  const std::string dockerfile = "FROM " + kImage + "\n"
                                 "COPY hello.txt /hello.txt\n"
                                 "RUN cat /hello.txt > /built.txt && echo ran >> /built.txt\n";
  session.serve_directory("dockerfile", {{"Dockerfile", dockerfile}});
  session.serve_directory("context", {{"Dockerfile", dockerfile}, {"hello.txt", marker}});
  ASSERT_EQ(session.start(), "");

  // SolveRequest{Ref, Exporter "moby", ExporterAttrs{name}, Session, Frontend "dockerfile.v0"}
  const std::string request = pb_bytes(1, "offload-e2e-" + random_hex(8)) + pb_bytes(3, "moby") +
                              pb_bytes(4, pb_bytes(1, "name") + pb_bytes(2, "offload-bk/solve:1")) +
                              pb_bytes(5, session.id()) + pb_bytes(6, "dockerfile.v0");
  auto solved = grpc_call(offload_socket(), "/moby.buildkit.v1.Control/Solve", request, 150s);
  auto seen = session.seen();
  session.stop();

  EXPECT_EQ(solved.error, "") << daemon_log_tail();
  EXPECT_EQ(solved.grpc_status, "0") << solved.grpc_message;
  EXPECT_EQ(seen.error, "");
  // Through the tunnel BuildKit asked the session for the Dockerfile, the context's
  // .dockerignore (there is none) and then only what the COPY needs, and got them.
  auto synced = seen.synced;
  std::sort(synced.begin(), synced.end());
  EXPECT_EQ(synced, (std::vector<std::string>{"context:", "context: hello.txt", "dockerfile: Dockerfile"}));
  auto run = sh("docker run --rm offload-bk/solve:1 cat /built.txt");
  EXPECT_SH_OK(run);
  EXPECT_EQ(run.out, marker + "ran\n");
}

// `RUN --mount=type=ssh` (`docker buildx build --ssh default`): the build container's
// SSH_AUTH_SOCK leads, through BuildKit, the session and the tunnel, to the client's agent
// (SSH/ForwardAgent: a byte stream each way). A static client in the image talks to it.
TEST_F(BuildKit, AnSshMountReachesTheClientsAgentThroughTheSession) {
  const std::string hello = "ping-" + random_hex(6);
  BuildKitSession session(offload_socket(), {});
  ASSERT_EQ(session.start(), "");
  auto tar = context_tar(
      "ssh", {{"Dockerfile", "FROM " + kImage + "\n"
                             "RUN --mount=type=ssh printf " + hello +
                                 " | echo-server unix \"$SSH_AUTH_SOCK\" > /agent.txt\n"}});
  auto out = post_build(offload_socket(), tar, "version=2&t=offload-bk/ssh:1&session=" + session.id());
  auto seen = session.seen();
  session.stop();
  EXPECT_EQ(out.find("errorDetail"), std::string::npos) << out << daemon_log_tail();
  EXPECT_EQ(seen.error, "");
  EXPECT_NE(std::find(seen.calls.begin(), seen.calls.end(), "/moby.sshforward.v1.SSH/CheckAgent"),
            seen.calls.end());
  EXPECT_EQ(seen.agent_received, std::vector<std::string>{hello});
  auto run = sh("docker run --rm offload-bk/ssh:1 cat /agent.txt");
  EXPECT_SH_OK(run);
  EXPECT_EQ(run.out, "agent got: " + hello + "\n");
}

// A secret the session does not have: BuildKit's own error reaches the client, as with buildx.
TEST_F(BuildKit, AnUnknownSecretFailsTheBuildWithBuildKitsError) {
  BuildKitSession session(offload_socket(), {});
  ASSERT_EQ(session.start(), "");
  auto tar = context_tar("nosecret",
                         {{"Dockerfile", "FROM " + kImage + "\n"
                                         "RUN --mount=type=secret,id=missing,required=true cat /run/secrets/missing\n"}});
  auto out = post_build(offload_socket(), tar, "version=2&session=" + session.id());
  auto seen = session.seen();
  session.stop();
  EXPECT_EQ(seen.secret_ids, std::vector<std::string>{"missing"});
  EXPECT_NE(out.find("errorDetail"), std::string::npos) << out;
  EXPECT_NE(out.find("secret missing"), std::string::npos) << out;
}

}  // namespace
}  // namespace offload::e2e

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new offload::e2e::OffloadEnvironment);
  return RUN_ALL_TESTS();
}
