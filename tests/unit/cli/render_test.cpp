#include <gtest/gtest.h>

#include "offload/cli/render.h"

using namespace offload::cli;
using namespace std::chrono_literals;
namespace v1 = offload::v1;

namespace {

// 2026-11-29 15:07:05 UTC; the session below started three minutes earlier.
constexpr std::int64_t kNow = 1795964825;
const TimePoint now = TimePoint(std::chrono::seconds(kNow));

v1::SessionStatus started_status() {
  v1::SessionStatus s;
  s.set_state(v1::DAEMON_STATE_STARTED);
  s.set_account("local");
  s.set_context("docker-offload");
  s.set_docker_host("unix:///root/.docker/offload/docker.sock");
  s.set_started_unix_ms((kNow - 180) * 1000);
  s.set_runner_address("127.0.0.1:41234");
  s.set_active_streams(2);
  auto* info = s.mutable_session();
  info->set_session_id("s-42");
  info->set_state(v1::SESSION_STATE_RUNNING);
  info->set_engine_version("20.10.24");
  info->set_engine_api_version("1.41");
  info->set_engine_os("linux/amd64");
  info->set_runner_version("0.1.0");
  info->set_runner_hostname("host");
  return s;
}

v1::Port port(std::string ip, std::uint32_t host, std::uint32_t container, std::string proto) {
  v1::Port p;
  p.set_host_ip(ip);
  p.set_host_port(host);
  p.set_container_port(container);
  p.set_protocol(proto);
  return p;
}

std::string ports_of(std::vector<v1::Port> ports) {
  google::protobuf::RepeatedPtrField<v1::Port> field;
  for (auto& p : ports) *field.Add() = p;
  return format_ports(field);
}

v1::ListContainersResponse two_containers() {
  v1::ListContainersResponse list;
  auto* web = list.add_containers();
  web->set_id("3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e");
  web->add_names("web");
  web->set_image("nginx");
  web->set_command("/docker-entrypoint.sh nginx -g 'daemon off;'");
  web->set_created_unix(kNow - 180);
  web->set_state("running");
  web->set_status("Up 3 minutes");
  *web->add_ports() = port("0.0.0.0", 8081, 80, "tcp");
  *web->add_ports() = port("::", 8081, 80, "tcp");
  auto* db = list.add_containers();
  db->set_id("a1b2c3d4e5f6a7b8c9d0");
  db->add_names("db");
  db->add_names("web/db");
  db->set_image("busybox");
  db->set_command("sleep 1000");
  db->set_created_unix(kNow - 7200);
  db->set_state("exited");
  db->set_status("Exited (0) 5 seconds ago");
  *db->add_ports() = port("", 0, 81, "tcp");
  *db->add_ports() = port("", 0, 53, "udp");
  *db->add_ports() = port("", 0, 80, "tcp");
  return list;
}

}  // namespace

TEST(DockerUnits, HumanDuration) {
  EXPECT_EQ(docker_human_duration(0s), "Less than a second");
  EXPECT_EQ(docker_human_duration(1s), "1 second");
  EXPECT_EQ(docker_human_duration(59s), "59 seconds");
  EXPECT_EQ(docker_human_duration(60s), "About a minute");
  EXPECT_EQ(docker_human_duration(119s), "About a minute");
  EXPECT_EQ(docker_human_duration(120s), "2 minutes");
  EXPECT_EQ(docker_human_duration(3599s), "59 minutes");
  EXPECT_EQ(docker_human_duration(3600s), "About an hour");
  EXPECT_EQ(docker_human_duration(5399s), "About an hour");
  EXPECT_EQ(docker_human_duration(5400s), "2 hours");
  EXPECT_EQ(docker_human_duration(47h), "47 hours");
  EXPECT_EQ(docker_human_duration(48h), "2 days");
  EXPECT_EQ(docker_human_duration(24h * 14), "2 weeks");
  EXPECT_EQ(docker_human_duration(24h * 60), "2 months");
  EXPECT_EQ(docker_human_duration(24h * 730), "2 years");
}

TEST(DockerUnits, HumanSize) {
  EXPECT_EQ(docker_human_size(4260000), "4.26MB");
  EXPECT_EQ(docker_human_size(0), "0B");
  EXPECT_EQ(docker_human_size(999), "999B");
  EXPECT_EQ(docker_human_size(1000), "1kB");
  EXPECT_EQ(docker_human_size(187654321), "188MB");
  EXPECT_EQ(docker_human_size(1234567890), "1.23GB");
  EXPECT_EQ(docker_human_size(999999), "1e+03kB");  // go-units' own quirk, kept on purpose
}

TEST(DockerUnits, EllipsisQuoteAndIds) {
  EXPECT_EQ(ellipsis("abc", 3), "abc");
  EXPECT_EQ(ellipsis("abcd", 3), "ab\u2026");
  EXPECT_EQ(ellipsis("h\u00e9llo", 4), "h\u00e9l\u2026");  // counts characters, not bytes
  EXPECT_EQ(go_quote("say \"hi\"\n\\\x01"), "\"say \\\"hi\\\"\\n\\\\\\x01\"");
  EXPECT_EQ(short_id("sha256:9c7a54a9a43cca047013b82af109fe963fde787f"), "9c7a54a9a43c");
  EXPECT_EQ(short_id("abc"), "abc");
}

TEST(DockerUnits, Ports) {
  EXPECT_EQ(ports_of({port("0.0.0.0", 8081, 80, "tcp"), port("::", 8081, 80, "tcp")}),
            "0.0.0.0:8081->80/tcp, [::]:8081->80/tcp");
  EXPECT_EQ(ports_of({port("", 0, 81, "tcp"), port("", 0, 53, "udp"), port("", 0, 80, "tcp")}),
            "53/udp, 80-81/tcp");
  EXPECT_EQ(ports_of({port("127.0.0.1", 5000, 5000, "tcp"), port("127.0.0.1", 5001, 5001, "tcp"),
                      port("0.0.0.0", 9000, 90, "udp"), port("", 0, 443, "tcp")}),
            "443/tcp, 127.0.0.1:5000-5001->5000-5001/tcp, 0.0.0.0:9000->90/udp");
  EXPECT_EQ(ports_of({}), "");
}

TEST(Table, PadsLikeTabwriter) {
  EXPECT_EQ(render_table({{"A", "BB", "C"}, {"longer cell", "x", ""}}),
            "A             BB        C\n"
            "longer cell   x         \n");
}

TEST(Status, PrettyStarted) {
  EXPECT_EQ(render_status_pretty(started_status(), now),
            "Account:          local\n"
            "State:            Started\n"
            "Session started:  2026-11-29 15:04:05 UTC (3 minutes ago)\n"
            "Runner:           127.0.0.1:41234 (offload-runner 0.1.0 on host)\n"
            "Engine:           Docker 20.10.24 (API 1.41, linux/amd64)\n"
            "GPU:              No\n"
            "Context:          docker-offload (unix:///root/.docker/offload/docker.sock)\n"
            "Active streams:   2\n"
            "Ports:            none\n"
            "Mounts:           none\n");
}

TEST(Status, PrettyListsForwardedAndUnforwardablePorts) {
  auto s = started_status();
  auto* web = s.add_ports();
  web->set_local_address("127.0.0.1:8081");
  web->set_protocol("tcp");
  web->set_container_name("web");
  web->set_container_port(80);
  web->set_listening(true);
  auto* taken = s.add_ports();
  taken->set_local_address("127.0.0.1:8082");
  taken->set_protocol("udp");
  taken->set_container_id("0123456789abcdef0123");
  taken->set_container_port(53);
  taken->set_error("127.0.0.1:8082 already in use by another program");
  auto out = render_status_pretty(s, now);
  EXPECT_NE(out.find("Ports:            127.0.0.1:8081 -> web:80/tcp\n"
                     "                  127.0.0.1:8082 -> 0123456789ab:53/udp  NOT FORWARDED: "
                     "127.0.0.1:8082 already in use by another program\n"),
            std::string::npos)
      << out;
  auto j = status_json(s);
  ASSERT_EQ(j["ports"].size(), 2u);
  EXPECT_EQ(j["ports"][0]["localAddress"], "127.0.0.1:8081");
  EXPECT_EQ(j["ports"][0]["listening"], true);
  EXPECT_EQ(j["ports"][1]["error"], "127.0.0.1:8082 already in use by another program");
}

TEST(Status, MountsWithConflictsAndSkippedFiles) {
  v1::SessionStatus s;
  s.set_state(v1::DAEMON_STATE_STARTED);
  s.set_account("local");
  auto* m = s.add_mounts();
  m->set_local_path("/home/me/app");
  m->set_state("in sync");
  m->set_files_sent(12);
  m->set_bytes_sent(2048);
  m->set_files_received(1);
  m->set_bytes_received(4);
  m->add_conflicts("notes.txt: changed on both sides; the runner's version is kept as x");
  m->add_skipped("app.sock (socket)");
  auto* f = s.add_mounts();
  f->set_local_path("/home/me/config.yml");
  f->set_single_file(true);
  f->set_state("reconnecting");
  f->set_error("the sync call ended");
  auto out = render_status_pretty(s, std::chrono::system_clock::now());
  EXPECT_NE(out.find("Mounts:           /home/me/app  in sync, sent 12 files (2.05kB), received 1 "
                     "files (4B)\n"
                     "                    CONFLICT notes.txt: changed on both sides; the runner's "
                     "version is kept as x\n"
                     "                    skipped app.sock (socket)\n"
                     "                  /home/me/config.yml (file)  reconnecting, sent 0 files "
                     "(0B), received 0 files (0B)\n"
                     "                    error: the sync call ended\n"),
            std::string::npos)
      << out;
  auto j = status_json(s);
  ASSERT_EQ(j["mounts"].size(), 2u);
  EXPECT_EQ(j["mounts"][0]["localPath"], "/home/me/app");
  EXPECT_EQ(j["mounts"][0]["bytesSent"], 2048);
  EXPECT_EQ(j["mounts"][0]["conflicts"].size(), 1u);
  EXPECT_EQ(j["mounts"][1]["singleFile"], true);
  EXPECT_EQ(j["mounts"][1]["state"], "reconnecting");
}

TEST(Status, TheRunnersImageCacheWithItsUseAndCap) {
  auto s = started_status();
  EXPECT_EQ(render_status_pretty(s, now).find("Image cache"), std::string::npos);
  auto* cache = s.mutable_image_cache();
  cache->set_upstream("https://registry-1.docker.io");
  cache->set_used_bytes(1234567890);
  cache->set_cap_bytes(20ull << 30);
  cache->set_running(true);
  auto out = render_status_pretty(s, now);
  EXPECT_NE(out.find("Image cache:      1.23GB of 21.5GB, Docker Hub names from "
                     "https://registry-1.docker.io\n"),
            std::string::npos)
      << out;
  cache->set_running(false);
  cache->set_problem("the registry (pid 7) exited; see /x/registry.log");
  out = render_status_pretty(s, now);
  EXPECT_NE(out.find("(NOT RUNNING: pulls go to the Hub directly)\n"
                     "                  the registry (pid 7) exited; see /x/registry.log\n"),
            std::string::npos)
      << out;
  auto j = status_json(s);
  EXPECT_EQ(j["imageCache"]["upstream"], "https://registry-1.docker.io");
  EXPECT_EQ(j["imageCache"]["usedBytes"], 1234567890);
  EXPECT_EQ(j["imageCache"]["capBytes"], 20ull << 30);
  EXPECT_EQ(j["imageCache"]["running"], false);
}

TEST(Status, PrettyStopped) {
  v1::SessionStatus s;
  s.set_state(v1::DAEMON_STATE_STOPPED);
  s.set_account("local");
  EXPECT_EQ(render_status_pretty(s, now),
            "Account:          local\n"
            "State:            Stopped\n"
            "\n"
            "Run `docker offload start` to start a session.\n");
}

TEST(Status, PrettyEndedAndStarting) {
  v1::SessionStatus s = started_status();
  s.set_state(v1::DAEMON_STATE_ENDED);
  s.set_ended_reason("idle for 5m");
  s.set_gpu(true);
  EXPECT_EQ(render_status_pretty(s, now),
            "Account:          local\n"
            "State:            Ended (idle for 5m)\n"
            "Session started:  2026-11-29 15:04:05 UTC (3 minutes ago)\n"
            "Runner:           127.0.0.1:41234 (offload-runner 0.1.0 on host)\n"
            "Engine:           Docker 20.10.24 (API 1.41, linux/amd64)\n"
            "GPU:              Yes\n"
            "Context:          docker-offload (unix:///root/.docker/offload/docker.sock)\n"
            "\n"
            "Run `docker offload start` to start a new session, or `docker offload stop` to "
            "switch back to your previous docker context.\n");

  v1::SessionStatus starting;
  starting.set_state(v1::DAEMON_STATE_STARTING);
  starting.set_account("remote");
  EXPECT_EQ(render_status_pretty(starting, now),
            "Account:          remote\n"
            "State:            Starting\n"
            "GPU:              No\n"
            "Active streams:   0\n"
            "Ports:            none\n"
            "Mounts:           none\n");
  EXPECT_EQ(state_label(starting), "Starting");
  starting.set_state(v1::DAEMON_STATE_STOPPING);
  EXPECT_EQ(state_label(starting), "Stopping");
}

TEST(Status, Json) {
  EXPECT_EQ(status_json(started_status()).dump(),
            "{\"account\":\"local\",\"state\":\"started\",\"sessionStarted\":\"2026-11-29T15:04:05Z\","
            "\"runner\":\"127.0.0.1:41234\",\"runnerVersion\":\"0.1.0\",\"runnerHostname\":\"host\","
            "\"engineVersion\":\"20.10.24\",\"engineApiVersion\":\"1.41\",\"engineOs\":\"linux/amd64\","
            "\"gpu\":false,\"gpuModels\":[],\"context\":\"docker-offload\","
            "\"dockerHost\":\"unix:///root/.docker/offload/docker.sock\",\"activeStreams\":2,"
            "\"endedReason\":\"\",\"sessionId\":\"s-42\",\"ports\":[],\"mounts\":[],\"activity\":\"\","
            "\"idleDeadline\":\"\",\"idleWarning\":false,\"idleTimeout\":\"0s\","
            "\"reconnectError\":\"\",\"endsBy\":\"\",\"maxDuration\":\"\",\"imageCache\":null}");
  v1::SessionStatus stopped;
  stopped.set_state(v1::DAEMON_STATE_STOPPED);
  auto j = status_json(stopped);
  EXPECT_EQ(j["state"], "stopped");
  EXPECT_EQ(j["sessionStarted"], "");
  EXPECT_EQ(j.size(), 26u);  // the same keys whatever the state
  EXPECT_EQ(j["activity"], "");
  EXPECT_EQ(j["idleTimeout"], "");
}

TEST(Status, WatchFrames) {
  v1::SessionStatus s;
  s.set_state(v1::DAEMON_STATE_STOPPED);
  s.set_account("local");
  const std::string block = render_status_pretty(s, now);
  EXPECT_EQ(render_status_frame(s, false, true, true, now), "\x1b[H\x1b[2J" + block);
  EXPECT_EQ(render_status_frame(s, false, true, false, now), "\x1b[H\x1b[2J" + block);
  EXPECT_EQ(render_status_frame(s, false, false, true, now), block);
  EXPECT_EQ(render_status_frame(s, false, false, false, now), "\n" + block);
  EXPECT_EQ(render_status_frame(s, true, true, false, now), status_json(s).dump() + "\n");
}

TEST(Ps, Table) {
  EXPECT_EQ(render_containers_table(two_containers(), now),
            "CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS                     PORTS                                     NAMES\n"
            "3f4e5d6c7b8a   nginx     \"/docker-entrypoint.\u2026\"   3 minutes ago   Up 3 minutes               0.0.0.0:8081->80/tcp, [::]:8081->80/tcp   web\n"
            "a1b2c3d4e5f6   busybox   \"sleep 1000\"             2 hours ago     Exited (0) 5 seconds ago   53/udp, 80-81/tcp                         db\n");
}

TEST(Ps, EmptyTableIsTheHeader) {
  EXPECT_EQ(render_containers_table({}, now),
            "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n");
}

TEST(Ps, QuietAndJson) {
  EXPECT_EQ(render_container_ids(two_containers()), "3f4e5d6c7b8a\na1b2c3d4e5f6\n");
  auto j = containers_json(two_containers());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1].dump(),
            "{\"id\":\"a1b2c3d4e5f6a7b8c9d0\",\"names\":[\"db\",\"web/db\"],\"image\":\"busybox\","
            "\"command\":\"sleep 1000\",\"created\":\"2026-11-29T13:07:05Z\",\"state\":\"exited\","
            "\"status\":\"Exited (0) 5 seconds ago\",\"ports\":["
            "{\"hostIp\":\"\",\"hostPort\":0,\"containerPort\":81,\"protocol\":\"tcp\"},"
            "{\"hostIp\":\"\",\"hostPort\":0,\"containerPort\":53,\"protocol\":\"udp\"},"
            "{\"hostIp\":\"\",\"hostPort\":0,\"containerPort\":80,\"protocol\":\"tcp\"}]}");
  EXPECT_EQ(containers_json({}).dump(), "[]");
}

TEST(Images, TableSizesAndUntagged) {
  v1::ListImagesResponse list;
  auto* nginx = list.add_images();
  nginx->set_id("sha256:9c7a54a9a43cca047013b82af109fe963fde787f63f9e016fdc3384500c2823d");
  nginx->add_repo_tags("nginx:latest");
  nginx->add_repo_tags("localhost:5000/nginx:1.25");
  nginx->set_created_unix(kNow - 3 * 86400);
  nginx->set_size_bytes(187654321);
  auto* dangling = list.add_images();
  dangling->set_id("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  dangling->set_created_unix(kNow - 30);
  dangling->set_size_bytes(4260000);
  auto* scratch = list.add_images();
  scratch->set_id("sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
  scratch->add_repo_tags("localhost:5000/empty");
  scratch->set_created_unix(kNow);
  scratch->set_size_bytes(0);

  EXPECT_EQ(render_images_table(list, now),
            "REPOSITORY             TAG       IMAGE ID       CREATED                  SIZE\n"
            "nginx                  latest    9c7a54a9a43c   3 days ago               188MB\n"
            "localhost:5000/nginx   1.25      9c7a54a9a43c   3 days ago               188MB\n"
            "<none>                 <none>    0123456789ab   30 seconds ago           4.26MB\n"
            "localhost:5000/empty   <none>    fedcba987654   Less than a second ago   0B\n");
  EXPECT_EQ(render_image_ids(list), "9c7a54a9a43c\n0123456789ab\nfedcba987654\n");
  EXPECT_EQ(images_json(list)[1].dump(),
            "{\"id\":\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
            "\"repoTags\":[],\"created\":\"2026-11-29T15:06:35Z\",\"size\":4260000}");
}

TEST(Accounts, TableAndJson) {
  v1::ListAccountsResponse list;
  auto* local = list.add_accounts();
  local->set_name("local");
  local->set_type("local");
  local->set_description("A runner on this machine");
  local->set_is_default(true);
  auto* remote = list.add_accounts();
  remote->set_name("gpu-box");
  remote->set_type("remote");
  remote->set_description("Runner at runner.example.com:7443");
  remote->set_address("runner.example.com:7443");
  EXPECT_EQ(render_accounts_table(list),
            "NAME      TYPE      DEFAULT   ADDRESS                   DESCRIPTION\n"
            "local     local     *                                   A runner on this machine\n"
            "gpu-box   remote              runner.example.com:7443   Runner at "
            "runner.example.com:7443\n");
  EXPECT_EQ(accounts_json(list).dump(),
            "[{\"name\":\"local\",\"type\":\"local\",\"default\":true,\"address\":\"\","
            "\"description\":\"A runner on this machine\"},"
            "{\"name\":\"gpu-box\",\"type\":\"remote\",\"default\":false,"
            "\"address\":\"runner.example.com:7443\","
            "\"description\":\"Runner at runner.example.com:7443\"}]");
}

// --- lifecycle in status ---

namespace {

v1::SessionStatus with_lifecycle(bool active, std::int64_t deadline_in_ms = 0,
                                 bool warning = false) {
  auto s = started_status();
  s.set_idle_timeout_ms(5 * 60 * 1000);
  auto* life = s.mutable_lifecycle();
  life->set_active(active);
  if (!active && deadline_in_ms) life->set_idle_deadline_unix_ms(kNow * 1000 + deadline_in_ms);
  life->set_idle_warning(warning);
  return s;
}

}  // namespace

TEST(Countdown, Formats) {
  EXPECT_EQ(format_countdown(0ms), "0s");
  EXPECT_EQ(format_countdown(-5s), "0s");
  EXPECT_EQ(format_countdown(1ms), "1s");  // rounds up: "0s" only once it is over
  EXPECT_EQ(format_countdown(45s), "45s");
  EXPECT_EQ(format_countdown(59'001ms), "1m 0s");
  EXPECT_EQ(format_countdown(60s), "1m 0s");
  EXPECT_EQ(format_countdown(4min + 12s), "4m 12s");
  EXPECT_EQ(format_countdown(59min + 59s), "59m 59s");
  EXPECT_EQ(format_countdown(1h), "1h 0m");
  EXPECT_EQ(format_countdown(7h + 59min + 30s), "7h 59m");
}

TEST(Status, PrettyStartedActive) {
  EXPECT_EQ(render_status_pretty(with_lifecycle(true), now),
            "Account:          local\n"
            "State:            Started (Active)\n"
            "Session started:  2026-11-29 15:04:05 UTC (3 minutes ago)\n"
            "Time until idle:  \u2014\n"
            "Runner:           127.0.0.1:41234 (offload-runner 0.1.0 on host)\n"
            "Engine:           Docker 20.10.24 (API 1.41, linux/amd64)\n"
            "GPU:              No\n"
            "Context:          docker-offload (unix:///root/.docker/offload/docker.sock)\n"
            "Active streams:   2\n"
            "Ports:            none\n"
            "Mounts:           none\n");
}

TEST(Status, PrettyStartedIdleCountsDown) {
  EXPECT_EQ(render_status_pretty(with_lifecycle(false, (4 * 60 + 12) * 1000), now),
            "Account:          local\n"
            "State:            Started (Idle)\n"
            "Session started:  2026-11-29 15:04:05 UTC (3 minutes ago)\n"
            "Time until idle:  4m 12s\n"
            "Runner:           127.0.0.1:41234 (offload-runner 0.1.0 on host)\n"
            "Engine:           Docker 20.10.24 (API 1.41, linux/amd64)\n"
            "GPU:              No\n"
            "Context:          docker-offload (unix:///root/.docker/offload/docker.sock)\n"
            "Active streams:   2\n"
            "Ports:            none\n"
            "Mounts:           none\n");
  // The same status a minute later: the countdown is computed from the clock.
  auto later = render_status_pretty(with_lifecycle(false, (4 * 60 + 12) * 1000), now + 60s);
  EXPECT_NE(later.find("Time until idle:  3m 12s\n"), std::string::npos) << later;
}

TEST(Status, GpuSessionNamesItsModels) {
  auto s = started_status();
  s.set_gpu(true);
  EXPECT_NE(render_status_pretty(s, now).find("GPU:              Yes\n"), std::string::npos);
  for (const char* model : {"NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB", "Tesla T4"})
    s.mutable_session()->add_gpu_models(model);
  EXPECT_NE(render_status_pretty(s, now).find(
                "GPU:              Yes (2 x NVIDIA A100-SXM4-40GB, Tesla T4)\n"),
            std::string::npos)
      << render_status_pretty(s, now);
  auto j = status_json(s);
  EXPECT_EQ(j["gpu"], true);
  EXPECT_EQ(j["gpuModels"], nlohmann::ordered_json::array(
                                {"NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB", "Tesla T4"}));
}

TEST(Status, StartingNamesItsPhase) {
  v1::SessionStatus s;
  s.set_state(v1::DAEMON_STATE_STARTING);
  s.set_start_phase("engine");
  EXPECT_EQ(state_label(s), "Starting (engine)");
}

TEST(Status, ShowsWhenTheSessionEndsAtTheLatest) {
  // The runner's own deadline: 7h 57m from now, 8h after the session was created.
  auto s = with_lifecycle(true);
  s.mutable_session()->set_created_unix_ms((kNow - 180) * 1000);
  s.mutable_session()->set_max_duration_ms(8 * 3600 * 1000);
  s.mutable_lifecycle()->set_max_deadline_unix_ms((kNow - 180 + 8 * 3600) * 1000);
  auto out = render_status_pretty(s, now);
  EXPECT_NE(out.find("Time until idle:  \u2014\n"
                     "Ends by:          2026-11-29 23:04:05 UTC (in 7h 57m, maximum duration 8h)\n"
                     "Runner:  "),
            std::string::npos)
      << out;
  auto j = status_json(s);
  EXPECT_EQ(j["endsBy"], "2026-11-29T23:04:05Z");
  EXPECT_EQ(j["maxDuration"], "8h");

  // Without the runner's lifecycle yet: creation plus the maximum.
  s.mutable_lifecycle()->set_max_deadline_unix_ms(0);
  EXPECT_NE(render_status_pretty(s, now).find("Ends by:          2026-11-29 23:04:05 UTC (in 7h 57m, "),
            std::string::npos);
  // No maximum duration (an operator's --max-session-duration 0).
  s.mutable_session()->set_max_duration_ms(0);
  EXPECT_NE(render_status_pretty(s, now).find("Ends by:          never (no maximum duration)\n"),
            std::string::npos);
  EXPECT_EQ(status_json(s)["endsBy"], "");
  EXPECT_EQ(status_json(s)["maxDuration"], "0s");
  // An ended session ends by nothing any more.
  s.set_state(v1::DAEMON_STATE_ENDED);
  EXPECT_EQ(render_status_pretty(s, now).find("Ends by"), std::string::npos);
  EXPECT_EQ(status_json(s)["maxDuration"], "");
}

TEST(Status, PrettyIdleWarning) {
  auto out = render_status_pretty(with_lifecycle(false, 45'000, true), now);
  EXPECT_NE(out.find("State:            Started (Idle)\n"
                     "Session started:  2026-11-29 15:04:05 UTC (3 minutes ago)\n"
                     "Time until idle:  45s\n"
                     "Warning:          the session will end in 45s unless something runs\n"
                     "Runner:  "),
            std::string::npos)
      << out;
}

TEST(Status, PrettyIdleWithoutTimeoutNeverEnds) {
  auto s = with_lifecycle(false);
  s.set_idle_timeout_ms(0);
  auto out = render_status_pretty(s, now);
  EXPECT_NE(out.find("Time until idle:  never\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("Warning:"), std::string::npos) << out;
}

TEST(Status, PrettyWithoutLifecycleKeepsThePlainState) {
  auto out = render_status_pretty(started_status(), now);
  EXPECT_NE(out.find("State:            Started\n"), std::string::npos);
  EXPECT_EQ(out.find("Time until idle"), std::string::npos);
}

TEST(Status, PrettyReconnecting) {
  auto s = with_lifecycle(true);
  s.set_state(v1::DAEMON_STATE_RECONNECTING);
  s.set_reconnect_error("runner unreachable at 10.0.0.5:7443: connection refused");
  auto out = render_status_pretty(s, now);
  EXPECT_EQ(out.rfind("Account:          local\n"
                      "State:            Reconnecting (runner unreachable at 10.0.0.5:7443: "
                      "connection refused)\n"
                      "Session started:  2026-11-29 15:04:05 UTC (3 minutes ago)\n"
                      "Runner:  ",
                      0),
            0u)
      << out;
  EXPECT_EQ(state_key(v1::DAEMON_STATE_RECONNECTING), "reconnecting");
  s.clear_reconnect_error();
  EXPECT_EQ(state_label(s), "Reconnecting");
  auto j = status_json(s);
  EXPECT_EQ(j["state"], "reconnecting");
  EXPECT_EQ(j["activity"], "active");
  EXPECT_EQ(j["idleTimeout"], "5m");
}

TEST(Status, JsonLifecycle) {
  auto idle = status_json(with_lifecycle(false, 45'000, true));
  EXPECT_EQ(idle["activity"], "idle");
  EXPECT_EQ(idle["idleDeadline"], "2026-11-29T15:07:50Z");
  EXPECT_EQ(idle["idleWarning"], true);
  EXPECT_EQ(idle["idleTimeout"], "5m");
  auto active = status_json(with_lifecycle(true));
  EXPECT_EQ(active["activity"], "active");
  EXPECT_EQ(active["idleDeadline"], "");
  EXPECT_EQ(active["idleWarning"], false);
  EXPECT_EQ(active.size(), 26u);
}

// --- diagnose ---

namespace {

v1::DiagnoseResponse report(bool all_ok) {
  v1::DiagnoseResponse r;
  auto add = [&](const char* name, bool ok, const char* detail, const char* fix = "") {
    auto* c = r.add_checks();
    c->set_name(name);
    c->set_ok(ok);
    c->set_detail(detail);
    c->set_fix(fix);
  };
  add("daemon", true, "offloadd 0.1.0 (pid 1234)");
  if (all_ok) {
    add("runner reachable", true, "10.0.0.5:7443, round trip 0.4 ms");
  } else {
    add("runner reachable", false,
        "runner unreachable at 10.0.0.5:7443: connection refused",
        "check that offload-runner runs on 10.0.0.5:7443 and that this machine can reach that "
        "port (firewall, VPN)");
    add("DOCKER_HOST/DOCKER_CONTEXT", false,
        "DOCKER_HOST=tcp://1.2.3.4:2375 in this shell overrides the docker-offload context",
        "unset DOCKER_HOST");
  }
  return r;
}

}  // namespace

TEST(Diagnose, PrettyAllPassed) {
  EXPECT_EQ(render_diagnose_pretty(report(true)),
            "\u2714 daemon: offloadd 0.1.0 (pid 1234)\n"
            "\u2714 runner reachable: 10.0.0.5:7443, round trip 0.4 ms\n"
            "\n"
            "All 2 checks passed.\n");
}

TEST(Diagnose, PrettyFailuresSayWhatToTry) {
  EXPECT_EQ(render_diagnose_pretty(report(false)),
            "\u2714 daemon: offloadd 0.1.0 (pid 1234)\n"
            "\u2718 runner reachable: runner unreachable at 10.0.0.5:7443: connection refused "
            "\u2014 try: check that offload-runner runs on 10.0.0.5:7443 and that this machine "
            "can reach that port (firewall, VPN)\n"
            "\u2718 DOCKER_HOST/DOCKER_CONTEXT: DOCKER_HOST=tcp://1.2.3.4:2375 in this shell "
            "overrides the docker-offload context \u2014 try: unset DOCKER_HOST\n"
            "\n"
            "2 of 3 checks failed.\n");
}

TEST(Diagnose, Json) {
  EXPECT_EQ(diagnose_json(report(false)).dump(),
            "[{\"name\":\"daemon\",\"ok\":true,\"detail\":\"offloadd 0.1.0 (pid 1234)\","
            "\"fix\":\"\"},"
            "{\"name\":\"runner reachable\",\"ok\":false,\"detail\":\"runner unreachable at "
            "10.0.0.5:7443: connection refused\",\"fix\":\"check that offload-runner runs on "
            "10.0.0.5:7443 and that this machine can reach that port (firewall, VPN)\"},"
            "{\"name\":\"DOCKER_HOST/DOCKER_CONTEXT\",\"ok\":false,\"detail\":\"DOCKER_HOST="
            "tcp://1.2.3.4:2375 in this shell overrides the docker-offload context\",\"fix\":"
            "\"unset DOCKER_HOST\"}]");
  EXPECT_EQ(diagnose_json({}).dump(), "[]");
}
