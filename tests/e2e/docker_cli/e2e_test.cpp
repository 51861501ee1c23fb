// End to end: the real docker CLI (28.x) through `docker offload` to a real dockerd behind a
// real offload-runner, while a "system" dockerd of the test's own runs on the same machine.
//
// One session serves the whole suite (starting engines costs seconds); the environment starts
// it with `docker offload start`, and the last test stops it and looks for leftovers.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "offload/common/paths.h"
#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"
#include "e2e_support.h"

namespace offload::e2e {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

const std::string kImage = "offload-e2e/busybox:latest";

fs::path g_dir;          // everything of this run
fs::path g_docker_config;
fs::path g_host_socket;  // the "system" dockerd's API socket
pid_t g_host_dockerd = -1;

// Runs a shell command line with the suite's environment. stdout and stderr apart.
Shell sh(const std::string& command, std::chrono::milliseconds timeout = 120s) {
  return run_shell(g_dir, command, timeout);
}

// `docker` against the system engine, bypassing every context.
std::string host_docker(const std::string& args) {
  return "docker -H unix://" + g_host_socket.string() + " " + args;
}

#define ASSERT_SH_OK(shell) ASSERT_EQ((shell).exit_code, 0) << (shell).err << (shell).out

class OffloadEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (::geteuid() != 0 || !find_program("dockerd") || !fs::exists("/usr/bin/busybox")) {
      skip_ = "needs root, dockerd and busybox-static";
      return;
    }
    g_dir = fs::path("/tmp") / ("offload-e2e-" + random_hex(4));
    g_docker_config = g_dir / "docker";
    // The user's own settings, which must survive the session untouched, and the offload config:
    // the suite's own address pool, away from anything else on the machine.
    make_docker_config(g_docker_config, OFFLOAD_BIN_DIR,
                       "{\n\t\"auths\": {},\n\t\"detachKeys\": \"ctrl-e,e\"\n}",
                       R"({"version": 1, "logLevel": "debug", "local": {"addressPool": "10.231.0.0/24"}})");
    ::setenv("DOCKER_CONFIG", g_docker_config.c_str(), 1);
    ::unsetenv("DOCKER_HOST");
    ::unsetenv("DOCKER_CONTEXT");

    start_host_dockerd();
    make_busybox_rootfs(g_dir / "rootfs", OFFLOAD_ECHO_SERVER);

    auto started = sh("docker offload start", 180s);
    ASSERT_SH_OK(started);
    auto ctx = sh("docker context show");
    ASSERT_EQ(trim(ctx.out), "docker-offload") << ctx.err;
    auto import = sh("tar -C " + (g_dir / "rootfs").string() + " -c . | docker import - " + kImage);
    ASSERT_SH_OK(import);
  }

  void TearDown() override {
    if (!skip_.empty()) return;
    // Whatever a failed test left: stop the session (idempotent) and our host engine.
    sh("docker offload stop --force", 180s);
    auto pid_file = g_docker_config / "offload" / "offloadd.pid";
    std::string pid;
    if (!read_file(pid_file, pid)) terminate_process(std::stoi(pid), 10s);
    if (g_host_dockerd > 0) terminate_process(g_host_dockerd, 30s);
    run_command({"sh", "-c", "umount -R /run/offload-e2e-host 2>/dev/null; rm -rf /run/offload-e2e-host " + g_dir.string()});
  }

  static std::string skip_;

 private:
  void start_host_dockerd() {
    fs::path host = g_dir / "host";
    fs::create_directories(host);
    g_host_socket = host / "docker.sock";
    std::string error;
    SpawnOptions o;
    o.log_file = host / "dockerd.log";
    g_host_dockerd = spawn_process(
        {"dockerd", "--data-root", (host / "data").string(), "--exec-root",
         "/run/offload-e2e-host", "-H", "unix://" + g_host_socket.string(), "--pidfile",
         (host / "docker.pid").string(), "--bip", "172.30.99.1/24"},
        o, error);
    ASSERT_GT(g_host_dockerd, 0) << error;
    ASSERT_TRUE(wait_for([] { return sh(host_docker("version")).exit_code == 0; }, 60s))
        << "the system dockerd did not start";
  }

};
std::string OffloadEnvironment::skip_;

class E2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!OffloadEnvironment::skip_.empty()) GTEST_SKIP() << OffloadEnvironment::skip_;
  }
};

TEST_F(E2E, VersionAndInfoComeFromTheSessionEngine) {
  auto v = sh("docker version --format '{{.Server.Version}} {{.Server.APIVersion}}'");
  ASSERT_SH_OK(v);
  EXPECT_EQ(v.out.rfind("20.10.", 0), 0u) << v.out;
  auto info = sh("docker info --format '{{.DockerRootDir}}'");
  ASSERT_SH_OK(info);
  // The session engine's own data root, not the system engine's.
  EXPECT_EQ(info.out.rfind(StatePaths(g_docker_config).local_runner_data_dir.string() + "/", 0), 0u)
      << info.out;
  // Remapped: the session's root is an unprivileged range of its own (dockerd names the root
  // "<uid>.<gid>" under its data root).
  EXPECT_NE(info.out.find("/docker/1000"), std::string::npos) << info.out;
  auto host = sh(host_docker("info --format '{{.DockerRootDir}}'"));
  EXPECT_NE(trim(host.out), trim(info.out));
}

TEST_F(E2E, RunPrintsExactOutput) {
  auto r = sh("docker run --rm " + kImage + " echo hello");
  ASSERT_SH_OK(r);
  EXPECT_EQ(r.out, "hello\n");
}

TEST_F(E2E, StdinEndOfFileEndsAnInteractiveRun) {
  auto r = sh("echo data | docker run -i --rm " + kImage + " cat", 60s);
  ASSERT_SH_OK(r);
  EXPECT_EQ(r.out, "data\n");
}

TEST_F(E2E, ExitCodesPropagate) {
  auto r = sh("docker run --rm " + kImage + " sh -c 'exit 7'");
  EXPECT_EQ(r.exit_code, 7) << r.err;
}

TEST_F(E2E, LogsFollowShowsLinesWhileTheContainerRuns) {
  auto run = sh("docker run -d --name logger " + kImage +
                " sh -c 'i=0; while [ $i -lt 300 ]; do echo line$i; i=$((i+1)); sleep 1; done'");
  ASSERT_SH_OK(run);
  // `logs -f` never ends by itself while the container runs: read its first lines, then stop.
  auto r = sh("timeout 4 docker logs -f logger", 20s);
  EXPECT_NE(r.out.find("line0\n"), std::string::npos) << r.out << r.err;
  EXPECT_NE(r.out.find("line1\n"), std::string::npos) << r.out;
  EXPECT_EQ(r.exit_code, 124);  // still following when `timeout` ended it
  auto state = sh("docker inspect -f '{{.State.Running}}' logger");
  EXPECT_EQ(trim(state.out), "true");
  EXPECT_EQ(sh("docker rm -f logger").exit_code, 0);
}

TEST_F(E2E, ExecWithStdin) {
  ASSERT_SH_OK(sh("docker run -d --name execme " + kImage + " sleep 300"));
  auto r = sh("printf 'via exec' | docker exec -i execme cat");
  ASSERT_SH_OK(r);
  EXPECT_EQ(r.out, "via exec");
  auto ls = sh("docker exec execme sh -c 'echo $((6*7))'");
  EXPECT_EQ(ls.out, "42\n");
  EXPECT_EQ(sh("docker rm -f execme").exit_code, 0);
}

TEST_F(E2E, RunWithATerminal) {
  // `script` gives the docker CLI a pseudo-terminal, as an interactive shell would.
  auto r = sh("script -qec \"docker run -t --rm " + kImage +
                  " sh -c 'test -t 1 && echo on-a-tty'\" /dev/null",
              60s);
  ASSERT_SH_OK(r);
  EXPECT_NE(r.out.find("on-a-tty"), std::string::npos) << r.out;
}

TEST_F(E2E, CopyBothWays) {
  ASSERT_SH_OK(sh("docker run -d --name cpbox " + kImage + " sleep 300"));
  fs::path local = g_dir / "cp-in.txt";
  ASSERT_FALSE(write_file_atomic(local, "copied in\n"));
  ASSERT_SH_OK(sh("docker cp " + local.string() + " cpbox:/tmp/in.txt"));
  auto cat = sh("docker exec cpbox cat /tmp/in.txt");
  EXPECT_EQ(cat.out, "copied in\n");
  ASSERT_SH_OK(sh("docker exec cpbox sh -c 'echo made remotely > /tmp/out.txt'"));
  ASSERT_SH_OK(sh("docker cp cpbox:/tmp/out.txt " + (g_dir / "cp-out.txt").string()));
  std::string out;
  ASSERT_FALSE(read_file(g_dir / "cp-out.txt", out));
  EXPECT_EQ(out, "made remotely\n");
  EXPECT_EQ(sh("docker rm -f cpbox").exit_code, 0);
}

TEST_F(E2E, BuildWithCopyFromTheImportedImage) {
  fs::path ctx = g_dir / "build";
  fs::create_directories(ctx);
  ASSERT_FALSE(write_file_atomic(ctx / "message.txt", "built remotely\n"));
  ASSERT_FALSE(write_file_atomic(ctx / "Dockerfile",
                                 "FROM " + kImage + "\nCOPY message.txt /message.txt\n"
                                 "CMD [\"cat\", \"/message.txt\"]\n"));
  auto b = sh("docker build -q -t offload-e2e/built " + ctx.string(), 180s);
  ASSERT_SH_OK(b);
  auto r = sh("docker run --rm offload-e2e/built");
  EXPECT_EQ(r.out, "built remotely\n") << r.err;
}

TEST_F(E2E, SaveAndLoadKeepTheImageDigest) {
  fs::path ctx = g_dir / "big";
  fs::create_directories(ctx);
  ASSERT_SH_OK(sh("head -c 52428800 /dev/urandom > " + (ctx / "blob").string()));
  ASSERT_FALSE(write_file_atomic(ctx / "Dockerfile", "FROM " + kImage + "\nCOPY blob /blob\n"));
  ASSERT_SH_OK(sh("docker build -q -t offload-e2e/big " + ctx.string(), 300s));
  auto id = sh("docker image inspect -f '{{.Id}}' offload-e2e/big");
  ASSERT_SH_OK(id);
  fs::path tar = g_dir / "big.tar";
  ASSERT_SH_OK(sh("docker save -o " + tar.string() + " offload-e2e/big", 300s));
  EXPECT_GT(fs::file_size(tar), 50u * 1024 * 1024);
  ASSERT_SH_OK(sh("docker rmi offload-e2e/big"));
  EXPECT_NE(sh("docker image inspect offload-e2e/big").exit_code, 0);
  auto load = sh("docker load -i " + tar.string(), 300s);
  ASSERT_SH_OK(load);
  auto again = sh("docker image inspect -f '{{.Id}}' offload-e2e/big");
  EXPECT_EQ(trim(again.out), trim(id.out));
  auto sum = sh("docker run --rm offload-e2e/big md5sum /blob");
  auto local_sum = sh("md5sum < " + (ctx / "blob").string());
  EXPECT_EQ(sum.out.substr(0, 32), local_sum.out.substr(0, 32));
  sh("docker rmi offload-e2e/big");
}

TEST_F(E2E, EventsStreamWhileAContainerStarts) {
  fs::path events = g_dir / "events.txt";
  auto watcher = std::async(std::launch::async, [&] {
    return sh("timeout 15 docker events --filter type=container --filter "
              "container=evented --format '{{.Action}}' > " + events.string(),
              30s);
  });
  std::this_thread::sleep_for(1s);  // let the events request reach the engine first
  ASSERT_SH_OK(sh("docker run --rm --name evented " + kImage + " true"));
  bool seen = wait_for(
      [&] {
        std::string text;
        read_file(events, text);
        return text.find("start") != std::string::npos && text.find("die") != std::string::npos;
      },
      12s);
  std::string text;
  read_file(events, text);
  EXPECT_TRUE(seen) << text;
  watcher.wait();
}

TEST_F(E2E, VolumesAndNetworks) {
  ASSERT_SH_OK(sh("docker volume create offload-vol"));
  ASSERT_SH_OK(sh("docker run --rm -v offload-vol:/data " + kImage +
                  " sh -c 'echo persisted > /data/f'"));
  auto r = sh("docker run --rm -v offload-vol:/data " + kImage + " cat /data/f");
  EXPECT_EQ(r.out, "persisted\n");
  EXPECT_NE(sh("docker volume ls -q").out.find("offload-vol"), std::string::npos);
  ASSERT_SH_OK(sh("docker volume rm offload-vol"));

  ASSERT_SH_OK(sh("docker network create offload-net"));
  ASSERT_SH_OK(sh("docker run -d --name netpeer --network offload-net " + kImage +
                  " httpd -f -p 8080 -h /etc"));
  EXPECT_NE(sh("docker network ls --format '{{.Name}}'").out.find("offload-net"), std::string::npos);
  auto resolve = sh("docker run --rm --network offload-net " + kImage + " nslookup netpeer");
  EXPECT_NE(resolve.out.find("Address"), std::string::npos) << resolve.out << resolve.err;
  sh("docker rm -f netpeer");
  ASSERT_SH_OK(sh("docker network rm offload-net"));
}

TEST_F(E2E, TwentyParallelRunsAllSucceed) {
  std::vector<std::future<Shell>> runs;
  for (int i = 0; i < 20; ++i)
    runs.push_back(std::async(std::launch::async, [i] {
      return sh("docker run --rm " + kImage + " echo run" + std::to_string(i), 180s);
    }));
  for (int i = 0; i < 20; ++i) {
    auto r = runs[i].get();
    EXPECT_EQ(r.exit_code, 0) << "run " << i << ": " << r.err;
    EXPECT_EQ(r.out, "run" + std::to_string(i) + "\n");
  }
}

TEST_F(E2E, OffloadPsAndImagesListWhatTheContextShows) {
  ASSERT_SH_OK(sh("docker run -d --name listed " + kImage + " sleep 300"));
  auto ps = sh("docker offload ps");
  ASSERT_SH_OK(ps);
  EXPECT_NE(ps.out.find("listed"), std::string::npos) << ps.out;
  auto id = trim(sh("docker ps -q --filter name=listed").out);
  auto quiet = sh("docker offload ps -q");
  EXPECT_NE(quiet.out.find(id), std::string::npos) << quiet.out;
  auto json = sh("docker offload ps --format json");
  EXPECT_NE(json.out.find("\"listed\""), std::string::npos) << json.out;
  auto images = sh("docker offload images");
  ASSERT_SH_OK(images);
  EXPECT_NE(images.out.find("offload-e2e/busybox"), std::string::npos) << images.out;
  auto ids = sh("docker offload images -q");
  auto image_id = trim(sh("docker images -q " + kImage).out);
  EXPECT_NE(ids.out.find(image_id), std::string::npos) << ids.out;
  sh("docker rm -f listed");
}

TEST_F(E2E, StatusShowsTheSession) {
  auto s = sh("docker offload status");
  ASSERT_SH_OK(s);
  EXPECT_NE(s.out.find("Started"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("local"), std::string::npos) << s.out;
  auto j = sh("docker offload status --format json");
  EXPECT_NE(j.out.find("\"state\":\"started\""), std::string::npos) << j.out;
}

TEST_F(E2E, TheSystemDockerdIsUndisturbed) {
  ASSERT_SH_OK(sh("tar -C " + (g_dir / "rootfs").string() + " -c . | " +
                  host_docker("import - host/img")));
  ASSERT_SH_OK(sh(host_docker("run -d --name host-box host/img sleep 300")));
  // A session container and a host container at once; neither sees the other.
  ASSERT_SH_OK(sh("docker run -d --name session-box " + kImage + " sleep 300"));
  EXPECT_EQ(sh(host_docker("ps --format '{{.Names}}'")).out, "host-box\n");
  EXPECT_EQ(sh("docker ps --format '{{.Names}}'").out.find("host-box"), std::string::npos);
  EXPECT_EQ(trim(sh(host_docker("inspect -f '{{.State.Running}}' host-box")).out), "true");
  sh("docker rm -f session-box");
}

// ---- Published ports reach localhost ---------------------------------------------------------

int connect_local(int port, int type = SOCK_STREAM) {
  int fd = ::socket(AF_INET, type, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool port_open(int port) {
  int fd = connect_local(port);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}

std::string http_get(int port) {
  return sh("curl -s --max-time 3 http://127.0.0.1:" + std::to_string(port) + "/").out;
}

const std::string kWebServer =
    " sh -c 'mkdir -p /www && echo hello-from-remote > /www/index.html && exec httpd -f -p 80 -h "
    "/www'";

TEST_F(E2E, APublishedPortAnswersOnLocalhostAndFollowsTheContainer) {
  ASSERT_SH_OK(sh("docker run -d --name web -p 18081:80 " + kImage + kWebServer));
  EXPECT_TRUE(wait_for([] { return http_get(18081) == "hello-from-remote\n"; }, 10s));
  auto status = sh("docker offload status --format json");
  EXPECT_NE(status.out.find("127.0.0.1:18081"), std::string::npos) << status.out;
  auto pretty = sh("docker offload status");
  EXPECT_NE(pretty.out.find("127.0.0.1:18081"), std::string::npos) << pretty.out;

  ASSERT_SH_OK(sh("docker stop -t 1 web"));
  EXPECT_TRUE(wait_for([] { return !port_open(18081); }, 10s)) << "listener left open";
  ASSERT_SH_OK(sh("docker start web"));
  EXPECT_TRUE(wait_for([] { return http_get(18081) == "hello-from-remote\n"; }, 10s));
  ASSERT_SH_OK(sh("docker restart -t 1 web"));
  EXPECT_TRUE(wait_for([] { return http_get(18081) == "hello-from-remote\n"; }, 10s));
  ASSERT_SH_OK(sh("docker rm -f web"));
  EXPECT_TRUE(wait_for([] { return !port_open(18081); }, 10s)) << "listener left open";
  // The connections went through the runner's data channel, not the gRPC fallback.
  std::string log;
  ASSERT_FALSE(read_file(g_docker_config / "offload" / "offloadd.log", log));
  EXPECT_NE(log.find("forwarded TCP ports use its data channel on port"), std::string::npos);
  EXPECT_EQ(log.find("forwarded ports go through the gRPC connection"), std::string::npos)
      << "a data channel failure was logged: " << log;
}

TEST_F(E2E, AnExplicitLoopbackBindingStaysLoopback) {
  ASSERT_SH_OK(sh("docker run -d --name web-lo -p 127.0.0.1:18082:80 " + kImage + kWebServer));
  EXPECT_TRUE(wait_for([] { return http_get(18082) == "hello-from-remote\n"; }, 10s));
  sh("docker rm -f web-lo");
}

// The runner dials a container on one network directly, from inside the engine's namespace:
// the container sees the connection come from its network's gateway, as behind the engine's
// own proxy, not from the runner's end of the engine's veth (which NAT would show).
TEST_F(E2E, APublishedPortIsDialledStraightToTheContainer) {
  const std::string who_calls =
      " sh -c 'mkdir -p /w/cgi-bin && printf \"#!/bin/sh\\necho Content-Type: text/plain\\n"
      "echo\\necho \\$REMOTE_ADDR\\n\" > /w/cgi-bin/who && chmod +x /w/cgi-bin/who && "
      "exec httpd -f -p 80 -h /w'";
  // busybox httpd writes an IPv4 peer as "[::ffff:172.17.0.1]".
  auto caller = [](int port) {
    std::string who = trim(sh("curl -s --max-time 3 http://127.0.0.1:" + std::to_string(port) +
                              "/cgi-bin/who").out);
    for (const std::string mapped : {"[::ffff:", "["})
      if (who.rfind(mapped, 0) == 0 && who.back() == ']')
        return who.substr(mapped.size(), who.size() - mapped.size() - 1);
    return who;
  };
  ASSERT_SH_OK(sh("docker run -d --name who -p 18086:80 " + kImage + who_calls));
  const std::string gateway =
      trim(sh("docker inspect -f '{{.NetworkSettings.Gateway}}' who").out);
  ASSERT_FALSE(gateway.empty());
  std::string seen;
  EXPECT_TRUE(wait_for([&] { return !(seen = caller(18086)).empty(); }, 10s));
  EXPECT_EQ(seen, gateway) << "the connection did not come from inside the engine's network";

  // On two networks the engine chooses where its NAT forwards: the runner goes through it.
  ASSERT_SH_OK(sh("docker network create offload-e2e-second"));
  ASSERT_SH_OK(sh("docker create --name who2 -p 18087:80 " + kImage + who_calls));
  ASSERT_SH_OK(sh("docker network connect offload-e2e-second who2"));
  ASSERT_SH_OK(sh("docker start who2"));
  EXPECT_TRUE(wait_for([&] { return !(seen = caller(18087)).empty(); }, 10s));
  EXPECT_NE(seen, "");
  EXPECT_NE(seen, trim(sh("docker inspect -f '{{.NetworkSettings.Gateway}}' who2").out))
      << "a container on two networks is reached through the engine";
  sh("docker rm -f who who2");
  sh("docker network rm offload-e2e-second");
}

TEST_F(E2E, UdpDatagramsReachTheContainerAndBack) {
  ASSERT_SH_OK(sh("docker run -d --name udp-echo -p 18083:7/udp " + kImage + " echo-server udp 7"));
  std::string reply;
  wait_for(
      [&] {
        int fd = connect_local(18083, SOCK_DGRAM);
        if (fd < 0) return false;
        timeval tv{0, 500000};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::send(fd, "ping", 4, 0);
        char buf[64];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        ::close(fd);
        if (n > 0) reply.assign(buf, static_cast<std::size_t>(n));
        return n > 0;
      },
      15s);
  EXPECT_EQ(reply, "ping");
  sh("docker rm -f udp-echo");
}

TEST_F(E2E, RandomHostPortsAndPublishAll) {
  ASSERT_SH_OK(sh("docker run -d --name web-rnd -p 80 " + kImage + kWebServer));
  auto mapping = trim(sh("docker port web-rnd 80/tcp | head -1").out);  // 0.0.0.0:49153
  int port = std::stoi(mapping.substr(mapping.rfind(':') + 1));
  EXPECT_TRUE(wait_for([&] { return http_get(port) == "hello-from-remote\n"; }, 10s)) << mapping;
  sh("docker rm -f web-rnd");

  fs::path ctx = g_dir / "exposed";
  fs::create_directories(ctx);
  ASSERT_FALSE(write_file_atomic(ctx / "Dockerfile", "FROM " + kImage + "\nEXPOSE 8080\n"));
  ASSERT_SH_OK(sh("docker build -q -t offload-e2e/exposed " + ctx.string(), 120s));
  ASSERT_SH_OK(sh("docker run -d --name web-all -P offload-e2e/exposed sh -c 'mkdir -p /w && "
                  "echo all > /w/index.html && exec httpd -f -p 8080 -h /w'"));
  auto all = trim(sh("docker port web-all 8080/tcp | head -1").out);
  int all_port = std::stoi(all.substr(all.rfind(':') + 1));
  EXPECT_TRUE(wait_for([&] { return http_get(all_port) == "all\n"; }, 10s)) << all;
  sh("docker rm -f web-all");
}

TEST_F(E2E, APortTakenLocallyIsReportedNotSkipped) {
  // Another program of this machine owns 127.0.0.1:18090.
  int owner = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(18090);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(owner, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::listen(owner, 4);
  ASSERT_SH_OK(sh("docker run -d --name taken -p 18090:80 " + kImage + kWebServer));
  std::string status;
  EXPECT_TRUE(wait_for(
      [&] {
        status = sh("docker offload status --format json").out;
        return status.find("127.0.0.1:18090 already in use by another program") != std::string::npos;
      },
      10s))
      << status;
  auto pretty = sh("docker offload status").out;
  EXPECT_NE(pretty.find("already in use"), std::string::npos) << pretty;
  ::close(owner);
  sh("docker rm -f taken");
}

TEST_F(E2E, FiftyConcurrentConnectionsThroughOnePort) {
  ASSERT_SH_OK(sh("docker run -d --name echo -p 18084:9000 " + kImage + " echo-server tcp 9000"));
  ASSERT_TRUE(wait_for(
      [] {
        int fd = connect_local(18084);
        if (fd < 0) return false;
        ::send(fd, "x", 1, 0);
        ::shutdown(fd, SHUT_WR);
        char c;
        bool echoed = ::recv(fd, &c, 1, 0) == 1;
        ::close(fd);
        return echoed;
      },
      15s));
  constexpr std::size_t kBytes = 1 << 20;
  std::vector<std::future<bool>> clients;
  for (int i = 0; i < 50; ++i) {
    clients.push_back(std::async(std::launch::async, [i] {
      std::string payload(kBytes, '\0');
      for (std::size_t k = 0; k < kBytes; ++k) payload[k] = static_cast<char>((k * 31 + i) & 0xff);
      int fd = connect_local(18084);
      if (fd < 0) return false;
      timeval tv{60, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      std::string got;
      std::thread writer([&] {
        for (std::size_t off = 0; off < kBytes;) {
          ssize_t w = ::send(fd, payload.data() + off, kBytes - off, MSG_NOSIGNAL);
          if (w <= 0) break;
          off += static_cast<std::size_t>(w);
        }
        ::shutdown(fd, SHUT_WR);
      });
      char buf[65536];
      for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
      }
      writer.join();
      ::close(fd);
      return got == payload;
    }));
  }
  int ok = 0;
  for (auto& c : clients) ok += c.get() ? 1 : 0;
  EXPECT_EQ(ok, 50);
  sh("docker rm -f echo");
}

TEST_F(E2E, WithoutRootTheLocalAccountSaysSo) {
  // A user's own docker config, used by an unprivileged user: the daemon it starts runs as them.
  fs::path config = g_dir / "nobody-docker";
  fs::create_directories(config / "cli-plugins");
  fs::create_symlink(fs::path(OFFLOAD_BIN_DIR) / "docker-offload",
                     config / "cli-plugins" / "docker-offload");
  ASSERT_SH_OK(sh("chown -R 65534:65534 " + config.string()));
  auto r = sh("setpriv --reuid 65534 --regid 65534 --clear-groups env DOCKER_CONFIG=" +
                  config.string() + " HOME=" + config.string() + " docker offload start",
              60s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("needs root"), std::string::npos) << r.err << r.out;
  // The phases `start` went through ("[1/4] ..."), then the error as one line.
  std::string error = r.err;
  while (error.rfind("[", 0) == 0 && error.find('\n') != std::string::npos)
    error.erase(0, error.find('\n') + 1);
  EXPECT_NE(error.find("needs root"), std::string::npos) << r.err;
  EXPECT_EQ(error.find('\n'), error.size() - 1) << "one line: " << r.err;
  std::string pid;
  if (!read_file(config / "offload" / "offloadd.pid", pid)) terminate_process(std::stoi(pid), 10s);
}

// Runs last (gtest keeps declaration order): stop, then look for anything left behind.
TEST_F(E2E, ZzStopRestoresTheContextAndLeavesNothingBehind) {
  auto runner_state = StatePaths(g_docker_config).local_runner_data_dir;
  auto sessions = sh("ls " + (runner_state / "sessions").string());
  std::string session_id;
  for (auto& e : fs::directory_iterator(runner_state / "sessions"))
    if (e.is_directory()) session_id = e.path().filename().string();
  ASSERT_FALSE(session_id.empty()) << sessions.out;

  // Without a terminal and without --force, stop refuses and changes nothing.
  auto refused = sh("docker offload stop < /dev/null");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
  EXPECT_EQ(trim(sh("docker context show").out), "docker-offload");

  auto stopped = sh("docker offload stop --force", 180s);
  ASSERT_SH_OK(stopped);
  EXPECT_EQ(trim(sh("docker context show").out), "default");
  std::string config;
  ASSERT_FALSE(read_file(g_docker_config / "config.json", config));
  EXPECT_NE(config.find("\"detachKeys\": \"ctrl-e,e\""), std::string::npos) << config;

  // A docker command now gets a clear answer instead of hanging or a bare error.
  auto after = sh("docker --context docker-offload ps");
  EXPECT_NE(after.exit_code, 0);
  EXPECT_NE(after.err.find("docker offload start"), std::string::npos) << after.err;

  // Nothing of the session is left on the runner host.
  EXPECT_EQ(sh("ip netns list").out.find(session_id), std::string::npos);
  EXPECT_EQ(sh("ip -o link show").out.find("ofl" + session_id.substr(0, 8)), std::string::npos);
  EXPECT_EQ(sh("iptables-save").out.find("offload:" + session_id), std::string::npos);
  EXPECT_FALSE(fs::exists(runner_state / "sessions" / session_id));
  EXPECT_EQ(processes_mentioning(session_id.substr(0, 8)), std::vector<std::string>{});
  // And the system engine still runs its container.
  EXPECT_EQ(trim(sh(host_docker("inspect -f '{{.State.Running}}' host-box")).out), "true");
}

}  // namespace
}  // namespace offload::e2e

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new offload::e2e::OffloadEnvironment);
  return RUN_ALL_TESTS();
}
