// End to end: bind mounts through `docker offload` (issue 5). The real docker CLI (and
// docker-compose v1) mount directories and files of this machine; offloadd synchronises them with
// the session's replica on a real offload-runner, whose real dockerd runs the containers.
//
// One session serves the whole suite (starting engines costs seconds, and a mount stays
// synchronised for the session's life, which the "second run sends nothing" test relies on); the
// environment starts it with `docker offload start`, and the last test stops it and looks for
// leftovers. Every test mounts a directory of its own under the suite's directory: a directory
// inside one that is already synchronised would share its replica. Waits poll with an upper
// bound; no assertion is about how long something took.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "offload/common/paths.h"
#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"
#include "e2e_support.h"

namespace offload::e2e {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kImage = "offload-bind/busybox:latest";

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

// The last `lines` lines of the daemon's log, for failure messages.
std::string daemon_log_tail(std::size_t lines = 30) {
  return "\n--- offloadd.log (tail) ---\n" +
         sh("tail -n " + std::to_string(lines) + " " + q(offload_dir() / "offloadd.log")).out;
}

// A file's content, or "<absent>".
std::string slurp(const fs::path& file) {
  std::string text;
  if (read_file(file, text)) return "<absent>";
  return text;
}

// Writes in place (same inode), as `echo > file` would.
void put(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  ASSERT_TRUE(out.good()) << "cannot write " << file;
}

// A fresh directory for one test's mount (canonical: status reports canonical paths).
fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::canonical(g_dir) / "mounts" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// `script` run by sh inside a running container; stdout.
Shell in(const std::string& container, const std::string& script) {
  return sh("docker exec " + container + " sh -c " + q(script), 60s);
}

json status_json() {
  auto s = sh("docker offload status --format json");
  auto doc = json::parse(s.out, nullptr, /*allow_exceptions=*/false);
  return doc.is_object() ? doc : json::object();
}

// The status of the mount of `local`, if offloadd reports one.
std::optional<json> mount_status(const fs::path& local) {
  auto doc = status_json();
  if (!doc.contains("mounts") || !doc["mounts"].is_array()) return std::nullopt;
  for (const auto& m : doc["mounts"])
    if (m.value("localPath", "") == local.string()) return m;
  return std::nullopt;
}

pid_t offloadd_pid() {
  std::string pid;
  if (read_file(offload_dir() / "offloadd.pid", pid)) return -1;
  try {
    return std::stoi(pid);
  } catch (...) {
    return -1;
  }
}

// A field of /proc/<pid>/status in KiB ("VmHWM", "VmRSS"); -1 when unreadable.
long proc_status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return -1;
}

// Removes a container whatever happens to the test that started it.
struct ContainerGuard {
  std::string name;
  ~ContainerGuard() { sh("docker rm -f " + name); }
};

class OffloadEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (::geteuid() != 0 || !find_program("dockerd") || !fs::exists("/usr/bin/busybox")) {
      skip_ = "needs root, dockerd and busybox-static";
      return;
    }
    g_dir = fs::path("/tmp") / ("offload-bind-e2e-" + random_hex(4));
    g_docker_config = g_dir / "docker";
    fs::create_directories(g_dir / "mounts");
    // The suite's own address pool; "*.pem" is excluded from every mount (the config's half of
    // the exclusion rules, set before the session starts).
    make_docker_config(
        g_docker_config, OFFLOAD_BIN_DIR, "{\n\t\"auths\": {}\n}",
        R"({"version": 1, "logLevel": "debug", "local": {"addressPool": "10.233.0.0/24"},)"
        R"( "sync": {"exclude": ["*.pem"]}})");
    ::setenv("DOCKER_CONFIG", g_docker_config.c_str(), 1);
    ::unsetenv("DOCKER_HOST");
    ::unsetenv("DOCKER_CONTEXT");

    make_busybox_rootfs(g_dir / "rootfs", OFFLOAD_ECHO_SERVER);
    auto started = sh("docker offload start", 180s);
    ASSERT_SH_OK(started);
    auto ctx = sh("docker context show");
    ASSERT_EQ(trim(ctx.out), "docker-offload") << ctx.err;
    auto import = sh("tar -C " + q(g_dir / "rootfs") + " -c . | docker import - " + kImage);
    ASSERT_SH_OK(import);
  }

  void TearDown() override {
    if (!skip_.empty()) return;
    sh("docker offload stop --force", 180s);
    pid_t pid = offloadd_pid();
    if (pid > 0) terminate_process(pid, 10s);
    run_command({"rm", "-rf", g_dir.string()});
  }

  static std::string skip_;
};
std::string OffloadEnvironment::skip_;

class BindMounts : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!OffloadEnvironment::skip_.empty()) GTEST_SKIP() << OffloadEnvironment::skip_;
  }
};

// ---- 1. A run reads local files; its output files are local when it returns -------------------

TEST_F(BindMounts, RunSeesLocalFilesAndItsOutputIsLocalWhenItReturns) {
  auto dir = fresh_dir("run");
  put(dir / "input.txt", "hello from this machine\n");
  auto r = sh("docker run --rm -v " + q(dir) + ":/src -w /src " + kImage +
              " sh -c 'cat input.txt; echo out > result.txt'");
  // Read at once: `docker run` must not return before the container's writes are here.
  std::string result = slurp(dir / "result.txt");
  ASSERT_SH_OK(r);
  EXPECT_EQ(r.out, "hello from this machine\n");
  EXPECT_EQ(result, "out\n") << daemon_log_tail();
}

// ---- 2. Changes flow both ways while a container runs ----------------------------------------

TEST_F(BindMounts, LiveChangesFlowBothWaysWhileAContainerRuns) {
  auto dir = fresh_dir("live");
  put(dir / "live.txt", "first\n");
  ContainerGuard guard{"live"};
  ASSERT_SH_OK(sh("docker run -d --name live -v " + q(dir) + ":/src " + kImage +
                  " sh -c 'while true; do cat /src/live.txt > /src/seen.txt 2>/dev/null; "
                  "sleep 0.2; done'"));
  EXPECT_TRUE(wait_for([&] { return slurp(dir / "seen.txt") == "first\n"; }, 10s))
      << slurp(dir / "seen.txt") << daemon_log_tail();

  put(dir / "live.txt", "edited here\n");
  EXPECT_TRUE(wait_for([&] { return slurp(dir / "seen.txt") == "edited here\n"; }, 10s))
      << "seen.txt: " << slurp(dir / "seen.txt") << daemon_log_tail();

  ASSERT_SH_OK(in("live", "echo written by exec > /src/from-exec.txt"));
  EXPECT_TRUE(wait_for([&] { return slurp(dir / "from-exec.txt") == "written by exec\n"; }, 10s))
      << slurp(dir / "from-exec.txt") << daemon_log_tail();
}

// offloadd restarted (an upgrade, a crash) while a container binds a synchronised path: the new
// daemon resumes the mount by itself, without waiting for a `docker run` that names it.
TEST_F(BindMounts, ARestartedDaemonResumesTheMountsOfRunningContainers) {
  auto dir = fresh_dir("resume");
  put(dir / "live.txt", "before\n");
  ContainerGuard guard{"resumed"};
  ASSERT_SH_OK(sh("docker run -d --name resumed -v " + q(dir) + ":/src " + kImage +
                  " sh -c 'while true; do cat /src/live.txt > /src/seen.txt 2>/dev/null; "
                  "sleep 0.2; done'"));
  ASSERT_TRUE(wait_for([&] { return slurp(dir / "seen.txt") == "before\n"; }, 10s))
      << daemon_log_tail();

  pid_t daemon = offloadd_pid();
  ASSERT_GT(daemon, 0);
  ASSERT_EQ(::kill(daemon, SIGTERM), 0);
  ASSERT_TRUE(wait_for([&] { return ::kill(daemon, 0) != 0; }, 30s)) << "offloadd did not stop";
  // Any `docker offload` command starts offloadd again; it re-attaches to the session.
  ASSERT_SH_OK(sh("docker offload status", 60s));
  EXPECT_NE(offloadd_pid(), daemon);

  put(dir / "live.txt", "after the restart\n");
  EXPECT_TRUE(wait_for([&] { return slurp(dir / "seen.txt") == "after the restart\n"; }, 15s))
      << "seen.txt: " << slurp(dir / "seen.txt") << daemon_log_tail();
}

// ---- 3. A single-file bind follows edits, in place and by rename ------------------------------

TEST_F(BindMounts, ASingleFileBindFollowsInPlaceEditsAndReplaceByRename) {
  auto dir = fresh_dir("single");
  auto config = dir / "config.yml";
  put(config, "version: 1\n");
  ContainerGuard guard{"single"};
  ASSERT_SH_OK(sh("docker run -d --name single -v " + q(config) + ":/etc/app.yml " + kImage +
                  " sleep 600"));
  EXPECT_EQ(in("single", "cat /etc/app.yml").out, "version: 1\n");

  put(config, "version: 2\n");
  std::string seen;
  EXPECT_TRUE(wait_for([&] { return (seen = in("single", "cat /etc/app.yml").out) == "version: 2\n"; },
                       10s))
      << "after an in-place edit the container sees: " << seen << daemon_log_tail();

  // What editors do: write a temporary file next to it, then rename it over the original.
  ASSERT_SH_OK(sh("cd " + q(dir) + " && printf 'version: 3\\n' > .config.yml.swp && "
                  "mv .config.yml.swp config.yml"));
  EXPECT_TRUE(wait_for([&] { return (seen = in("single", "cat /etc/app.yml").out) == "version: 3\n"; },
                       10s))
      << "after replace-by-rename the container sees: " << seen << daemon_log_tail();

  // And a second time: the file now has yet another inode.
  ASSERT_SH_OK(sh("cd " + q(dir) + " && printf 'version: 4\\n' > config.yml.new && "
                  "mv config.yml.new config.yml"));
  EXPECT_TRUE(wait_for([&] { return (seen = in("single", "cat /etc/app.yml").out) == "version: 4\n"; },
                       10s))
      << "after a second rename the container sees: " << seen << daemon_log_tail();
}

// ---- 4. --mount, read-only binds, missing sources --------------------------------------------

TEST_F(BindMounts, MountFlagTypeBindWorksLikeDashV) {
  auto dir = fresh_dir("mount-flag");
  put(dir / "m.txt", "via --mount\n");
  auto r = sh("docker run --rm --mount type=bind,source=" + dir.string() + ",target=/src " + kImage +
              " sh -c 'cat /src/m.txt; echo back > /src/back.txt'");
  std::string back = slurp(dir / "back.txt");
  ASSERT_SH_OK(r);
  EXPECT_EQ(r.out, "via --mount\n");
  EXPECT_EQ(back, "back\n") << daemon_log_tail();
}

TEST_F(BindMounts, AReadOnlyBindRejectsWritesAndTheLocalDirStaysUnchanged) {
  auto dir = fresh_dir("read-only");
  put(dir / "keep.txt", "untouchable\n");
  // Names, sizes, mtimes (nanoseconds) and modes of everything in it, the directory included.
  auto before = sh("cd " + q(dir) + " && find . -printf '%p %s %T@ %m\\n' | sort").out;

  auto v = sh("docker run --rm -v " + q(dir) + ":/src:ro " + kImage +
              " sh -c 'cat /src/keep.txt; echo x > /src/new.txt'");
  EXPECT_NE(v.exit_code, 0) << v.out;
  EXPECT_EQ(v.out, "untouchable\n") << v.err;
  EXPECT_NE(v.err.find("Read-only file system"), std::string::npos) << v.err;

  auto m = sh("docker run --rm --mount type=bind,source=" + dir.string() +
              ",target=/src,readonly " + kImage + " rm /src/keep.txt");
  EXPECT_NE(m.exit_code, 0) << m.out;
  EXPECT_NE(m.err.find("Read-only file system"), std::string::npos) << m.err;

  EXPECT_FALSE(fs::exists(dir / "new.txt"));
  EXPECT_EQ(slurp(dir / "keep.txt"), "untouchable\n");
  EXPECT_EQ(sh("cd " + q(dir) + " && find . -printf '%p %s %T@ %m\\n' | sort").out, before);
}

TEST_F(BindMounts, AMissingMountSourceFailsWithDockersError) {
  fs::path missing = fs::canonical(g_dir) / "mounts" / "no-such-dir";
  auto r = sh("docker run --rm --mount type=bind,source=" + missing.string() + ",target=/x " +
              kImage + " true");
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.err.find("bind source path does not exist"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(missing)) << "--mount must not create its source";
}

// The machine's own kernel trees and its whole file system are never copied to the runner.
TEST_F(BindMounts, KernelTreesAndTheRootAreRefusedWithAClearError) {
  for (const std::string source : {"/proc", "/sys/fs/cgroup", "/dev", "/"}) {
    auto r = sh("docker run --rm -v " + source + ":/host " + kImage + " true");
    EXPECT_NE(r.exit_code, 0) << source << ": " << r.out;
    EXPECT_NE(r.err.find("cannot bind " + source + " through docker offload"), std::string::npos)
        << r.err;
  }
  auto st = sh("docker offload status --format json");
  EXPECT_EQ(st.out.find("\"localPath\":\"/proc"), std::string::npos) << st.out;
}

TEST_F(BindMounts, AMissingDashVSourceIsCreatedLocallyLikeDockerDoes) {
  fs::path created = fs::canonical(g_dir) / "mounts" / "created-by-run" / "deeper";
  ASSERT_FALSE(fs::exists(created));
  auto r = sh("docker run --rm -v " + q(created) + ":/x " + kImage +
              " sh -c 'echo made > /x/made.txt'");
  std::string made = slurp(created / "made.txt");
  ASSERT_SH_OK(r);
  EXPECT_TRUE(fs::is_directory(created));
  EXPECT_EQ(made, "made\n") << daemon_log_tail();
}

// ---- 5. docker-compose with a relative bind ----------------------------------------------------

TEST_F(BindMounts, DockerComposeRunWithARelativeBind) {
  if (!find_program("docker-compose")) GTEST_SKIP() << "docker-compose is not installed";
  auto project = fresh_dir("compose");
  fs::create_directories(project / "app" / "lib");
  put(project / "app" / "in.txt", "compose input\n");
  put(project / "app" / "lib" / "deep.txt", "deep\n");
  put(project / "compose.yml",
      "version: \"2.4\"\n"
      "services:\n"
      "  svc:\n"
      "    image: " + kImage + "\n"
      "    volumes:\n"
      "      - ./app:/app\n");
  std::string compose = "cd " + q(project) + " && DOCKER_HOST=unix://" +
                        (offload_dir() / "docker.sock").string() +
                        " docker-compose -p offloadbind -f compose.yml ";
  auto r = sh(compose + "run --rm -T svc sh -c 'cat /app/in.txt /app/lib/deep.txt; "
                        "echo from-compose > /app/out.txt'",
              180s);
  std::string out = slurp(project / "app" / "out.txt");
  sh(compose + "down", 120s);
  ASSERT_SH_OK(r);
  EXPECT_EQ(r.out, "compose input\ndeep\n") << r.err;
  EXPECT_EQ(out, "from-compose\n") << daemon_log_tail();
}

// ---- 6. Deletes and renames, symlinks, modes, mtimes -----------------------------------------

TEST_F(BindMounts, DeletesAndRenamesFlowBothWays) {
  auto dir = fresh_dir("moves");
  put(dir / "a.txt", "a\n");
  put(dir / "b.txt", "b\n");
  put(dir / "gone.txt", "gone\n");
  fs::create_directories(dir / "sub");
  put(dir / "sub" / "c.txt", "c\n");
  ContainerGuard guard{"moves"};
  ASSERT_SH_OK(sh("docker run -d --name moves -v " + q(dir) + ":/src " + kImage + " sleep 600"));
  ASSERT_EQ(in("moves", "cat /src/a.txt /src/sub/c.txt").out, "a\nc\n");

  // This machine to the container.
  fs::remove(dir / "gone.txt");
  fs::rename(dir / "a.txt", dir / "a-renamed.txt");
  fs::rename(dir / "sub", dir / "sub-renamed");
  const std::string check_in =
      "cd /src && for p in gone.txt a.txt sub; do test -e $p && echo still-there:$p; done; "
      "cat a-renamed.txt sub-renamed/c.txt";
  std::string seen;
  EXPECT_TRUE(wait_for([&] { return (seen = in("moves", check_in).out) == "a\nc\n"; }, 10s))
      << seen << daemon_log_tail();

  // The container to this machine.
  ASSERT_SH_OK(in("moves", "cd /src && rm b.txt && mv a-renamed.txt a-back.txt && "
                           "mv sub-renamed sub-back"));
  auto local_done = [&] {
    return !fs::exists(dir / "b.txt") && !fs::exists(dir / "a-renamed.txt") &&
           !fs::exists(dir / "sub-renamed") && slurp(dir / "a-back.txt") == "a\n" &&
           slurp(dir / "sub-back" / "c.txt") == "c\n";
  };
  EXPECT_TRUE(wait_for(local_done, 10s))
      << sh("cd " + q(dir) + " && find . | sort").out << daemon_log_tail();
}

// `mkdir new && mv old new/`: the move reaches the other side before the new directory does
// unless the synchroniser orders them; the moved directory's files must arrive all the same.
TEST_F(BindMounts, ADirectoryMovedIntoANewDirectoryKeepsItsFilesBothWays) {
  auto dir = fresh_dir("moves-into-new");
  fs::create_directories(dir / "here");
  put(dir / "here" / "h.txt", "h\n");
  fs::create_directories(dir / "there");
  put(dir / "there" / "t.txt", "t\n");
  ContainerGuard guard{"moves-into-new"};
  ASSERT_SH_OK(sh("docker run -d --name moves-into-new -v " + q(dir) + ":/src " + kImage +
                  " sleep 600"));
  ASSERT_EQ(in("moves-into-new", "cat /src/here/h.txt /src/there/t.txt").out, "h\nt\n");
  auto mount_info = [&] {
    auto m = mount_status(dir);
    return m ? m->dump(2) : std::string("no mount");
  };

  // This machine to the container.
  ASSERT_SH_OK(sh("cd " + q(dir) + " && mkdir new-here && mv here new-here/here"));
  std::string seen;
  EXPECT_TRUE(wait_for(
      [&] {
        seen = in("moves-into-new", "test -e /src/here && echo still-there:here; "
                                    "cat /src/new-here/here/h.txt").out;
        return seen == "h\n";
      },
      10s))
      << "in the container: " << seen
      << in("moves-into-new", "cd /src && find . | sort").out << mount_info();

  // The container to this machine.
  ASSERT_SH_OK(in("moves-into-new", "cd /src && mkdir new-there && mv there new-there/there"));
  EXPECT_TRUE(wait_for(
      [&] {
        return !fs::exists(dir / "there") &&
               slurp(dir / "new-there" / "there" / "t.txt") == "t\n";
      },
      10s))
      << "here: " << sh("cd " + q(dir) + " && find . | sort").out << "in the container: "
      << in("moves-into-new", "cd /src && find . | sort").out << mount_info();
}

TEST_F(BindMounts, SymlinksModesAndMtimesSurviveBothWays) {
  auto dir = fresh_dir("meta");
  put(dir / "target.txt", "target\n");
  fs::create_symlink("target.txt", dir / "link");
  put(dir / "script.sh", "#!/bin/sh\necho script-ran\n");
  fs::permissions(dir / "script.sh", fs::perms(0755));
  put(dir / "stamped.txt", "old\n");
  ASSERT_SH_OK(sh("touch -d '2001-02-03 04:05:06' " + q(dir / "stamped.txt")));
  std::string local_mtime = trim(sh("stat -c %Y " + q(dir / "stamped.txt")).out);

  auto r = sh("docker run --rm -v " + q(dir) + ":/src " + kImage +
              " sh -c 'test -L /src/link && echo is-a-link; readlink /src/link; /src/script.sh; "
              "stat -c %a /src/script.sh; stat -c %Y /src/stamped.txt; "
              "ln -s target.txt /src/made-link; echo tool > /src/tool.sh; chmod 750 /src/tool.sh; "
              "echo new > /src/new-stamp.txt; touch -d \"2002-03-04 05:06:07\" /src/new-stamp.txt; "
              "stat -c %Y /src/new-stamp.txt'");
  ASSERT_SH_OK(r);
  std::istringstream lines(r.out);
  std::string is_link, target, ran, mode, mtime, remote_mtime;
  std::getline(lines, is_link);
  std::getline(lines, target);
  std::getline(lines, ran);
  std::getline(lines, mode);
  std::getline(lines, mtime);
  std::getline(lines, remote_mtime);
  EXPECT_EQ(is_link, "is-a-link") << r.out;
  EXPECT_EQ(target, "target.txt") << r.out;
  EXPECT_EQ(ran, "script-ran") << r.out << r.err;
  EXPECT_EQ(mode, "755") << r.out;
  EXPECT_EQ(mtime, local_mtime) << r.out;

  // What the container made is here, as it made it, when `docker run` returns.
  std::error_code ec;
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir / "made-link", ec)));
  EXPECT_EQ(fs::read_symlink(dir / "made-link", ec).string(), "target.txt") << ec.message();
  struct stat st {};
  ASSERT_EQ(::stat((dir / "tool.sh").c_str(), &st), 0) << daemon_log_tail();
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(trim(sh("stat -c %Y " + q(dir / "new-stamp.txt")).out), remote_mtime) << r.out;
}

TEST_F(BindMounts, SetIdBitsMadeInAContainerNeverReachTheLaptop) {
  // Container root may chmod u+s / g+s in its bind mount: the copy on this machine must not
  // become a set-id program of ours. The rest of the mode comes through.
  auto dir = fresh_dir("setid");
  ASSERT_SH_OK(sh("docker run --rm -v " + q(dir) + ":/src " + kImage +
                  " sh -c 'echo x > /src/suid; chmod 4755 /src/suid; echo y > /src/sgid; "
                  "chmod 2750 /src/sgid; mkdir /src/d; chmod 3775 /src/d'"));
  struct stat st {};
  ASSERT_EQ(::stat((dir / "suid").c_str(), &st), 0) << daemon_log_tail();
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat((dir / "sgid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  ASSERT_EQ(::stat((dir / "d").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01775u);  // the sticky bit is harmless and kept
}

// The runner's session engines remap users: what container root writes into a bind mount is
// owned, on the runner host, by the session's unprivileged mapped root, never by host root.
// Back on this machine the shift is undone (root here made it, as the container's root).
TEST_F(BindMounts, ContainerRootWritesAreAnUnprivilegedUidOnTheRunner) {
  auto dir = fresh_dir("owner");
  ASSERT_SH_OK(sh("docker run --rm -v " + q(dir) + ":/src " + kImage +
                  " sh -c 'echo made by root > /src/root-made.txt; stat -c %u /src/root-made.txt'"));
  ASSERT_TRUE(wait_for([&] { return slurp(dir / "root-made.txt") == "made by root\n"; }, 10s))
      << daemon_log_tail();
  std::string session_id = status_json().value("sessionId", "");
  ASSERT_GE(session_id.size(), 8u);
  const fs::path sync_root =
      StatePaths(g_docker_config).local_runner_data_dir / "sessions" / session_id / "sync";
  std::vector<fs::path> copies;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(sync_root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
    if (it->path().filename() == "root-made.txt") copies.push_back(it->path());
  ASSERT_EQ(copies.size(), 1u) << "under " << sync_root << ": " << ec.message();
  struct stat st {};
  ASSERT_EQ(::stat(copies[0].c_str(), &st), 0);
  EXPECT_GE(st.st_uid, 1000000000u) << copies[0];  // the runner's default --subid-base
  EXPECT_GE(st.st_gid, 1000000000u) << copies[0];
  ASSERT_EQ(::stat((dir / "root-made.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
}

// ---- 7. A large tree: sent once, memory bounded -----------------------------------------------

TEST_F(BindMounts, ALargeTreeIsSentOnceWithBoundedMemory) {
  auto dir = fresh_dir("large");
  // 10,000 small files in 100 nested directories and 5 files of 100 MiB.
  auto made = sh("cd " + q(dir) +
                     " && for i in 1 2 3 4 5; do head -c 100M /dev/urandom > big$i.bin; done"
                     " && for i in $(seq 0 99); do mkdir -p d$i/n; for j in $(seq 0 99); do"
                     " echo $i.$j > d$i/n/f$j.txt; done; done",
                 300s);
  ASSERT_SH_OK(made);
  const std::string expected_count = "10005";
  std::string local_sum = sh("md5sum < " + q(dir / "big3.bin") + " | cut -c1-32").out;

  pid_t daemon = offloadd_pid();
  ASSERT_GT(daemon, 0);
  // Resets the peak resident set size, so VmHWM below is this synchronisation's peak.
  { std::ofstream("/proc/" + std::to_string(daemon) + "/clear_refs") << "5"; }
  const std::string run = "docker run --rm -v " + q(dir) + ":/src " + kImage +
                          " sh -c 'find /src -type f | wc -l; md5sum /src/big3.bin | cut -c1-32'";
  auto first = sh(run, 900s);
  long peak_kib = proc_status_kib(daemon, "VmHWM");
  ASSERT_SH_OK(first);
  EXPECT_EQ(first.out, expected_count + "\n" + local_sum);
  EXPECT_GT(peak_kib, 0);
  EXPECT_LT(peak_kib, 200L * 1024) << "offloadd's peak RSS during the first sync: " << peak_kib
                                   << " KiB";
  std::cout << "[ info     ] offloadd peak RSS during the first sync: " << peak_kib / 1024
            << " MiB\n";

  auto after_first = mount_status(dir);
  ASSERT_TRUE(after_first) << status_json().dump(2);
  auto files_sent = (*after_first)["filesSent"].get<std::uint64_t>();
  auto bytes_sent = (*after_first)["bytesSent"].get<std::uint64_t>();
  EXPECT_GE(files_sent, 10005u);
  EXPECT_GE(bytes_sent, 500ull * 1024 * 1024);

  auto second = sh(run, 900s);
  ASSERT_SH_OK(second);
  EXPECT_EQ(second.out, first.out);
  auto after_second = mount_status(dir);
  ASSERT_TRUE(after_second) << status_json().dump(2);
  EXPECT_EQ((*after_second)["filesSent"].get<std::uint64_t>(), files_sent)
      << "the second run sent files again: " << after_second->dump(2);
  EXPECT_EQ((*after_second)["bytesSent"].get<std::uint64_t>(), bytes_sent)
      << after_second->dump(2);

  // Frees the space here and, through the live mount, in the replica.
  sh("find " + q(dir) + " -mindepth 1 -delete", 300s);
}

// ---- 8. A change on both sides: a conflict, and both versions kept ----------------------------

// The engine's own socket, bypassing offloadd: the container can then change a file while
// offloadd is stopped (SIGSTOP), which makes the two changes concurrent deterministically.
std::string engine_socket() {
  auto id = status_json().value("sessionId", "");
  if (id.size() < 8) return "";
  return trim(sh("ls /run/docker-offload/*/" + id.substr(0, 8) + "/docker.sock 2>/dev/null | head -1").out);
}

TEST_F(BindMounts, ChangesOnBothSidesBecomeAConflictAndBothVersionsAreKept) {
  auto dir = fresh_dir("conflict");
  put(dir / "conflict.txt", "base\n");
  ContainerGuard guard{"conflicted"};
  auto run = sh("docker run -d --name conflicted -v " + q(dir) + ":/src " + kImage + " sleep 600");
  ASSERT_SH_OK(run);
  std::string id = trim(run.out);
  ASSERT_EQ(in("conflicted", "cat /src/conflict.txt").out, "base\n");
  std::string engine = engine_socket();
  ASSERT_FALSE(engine.empty()) << "no engine socket for the session under /run/docker-offload";
  pid_t daemon = offloadd_pid();
  ASSERT_GT(daemon, 0);

  ASSERT_EQ(::kill(daemon, SIGSTOP), 0);
  put(dir / "conflict.txt", "local\n");
  auto remote = sh("docker -H unix://" + engine + " exec " + id +
                       " sh -c 'echo container > /src/conflict.txt'",
                   30s);
  ::kill(daemon, SIGCONT);
  ASSERT_SH_OK(remote);

  std::optional<json> mount;
  EXPECT_TRUE(wait_for(
      [&] {
        mount = mount_status(dir);
        return mount && !(*mount)["conflicts"].empty();
      },
      10s))
      << (mount ? mount->dump(2) : "no mount") << daemon_log_tail();
  if (mount && !(*mount)["conflicts"].empty()) {
    EXPECT_NE((*mount)["conflicts"][0].get<std::string>().find("conflict.txt"), std::string::npos);
  }

  // Ours stays under the name; theirs is a copy next to it, on both sides.
  auto local_copy = [&]() -> std::string {
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().rfind("conflict.offload-conflict-", 0) == 0)
        return slurp(e.path());
    return "<none>";
  };
  EXPECT_TRUE(wait_for(
      [&] { return slurp(dir / "conflict.txt") == "local\n" && local_copy() == "container\n"; },
      10s))
      << "conflict.txt: " << slurp(dir / "conflict.txt") << " copy: " << local_copy()
      << daemon_log_tail();
  std::string inside;
  EXPECT_TRUE(wait_for(
      [&] {
        inside = in("conflicted", "cat /src/conflict.txt; cat /src/conflict.offload-conflict-*").out;
        return inside == "local\ncontainer\n";
      },
      10s))
      << inside;
  auto pretty = sh("docker offload status").out;
  EXPECT_NE(pretty.find("CONFLICT conflict.txt"), std::string::npos) << pretty;
}

// ---- 9. Excluded files and special files stay here -------------------------------------------

TEST_F(BindMounts, ExcludedAndSpecialFilesStayLocal) {
  auto dir = fresh_dir("excludes");
  put(dir / ".offloadignore", "secret.txt\nprivate/\n");
  put(dir / "secret.txt", "s3cret\n");
  fs::create_directories(dir / "private");
  put(dir / "private" / "p.txt", "private\n");
  put(dir / "key.pem", "-----BEGIN KEY-----\n");
  put(dir / "keep.txt", "keep\n");
  fs::create_directories(dir / "sub");
  put(dir / "sub" / "keep2.txt", "keep2\n");
  ASSERT_SH_OK(sh("cd " + q(dir) +
                  " && python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind(\"x.sock\")'"));
  ASSERT_TRUE(fs::is_socket(dir / "x.sock"));

  auto r = sh("docker run --rm -v " + q(dir) + ":/src " + kImage + " sh -c 'cd /src && find . | sort'");
  ASSERT_SH_OK(r);
  std::set<std::string> seen;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) seen.insert(line);
  for (const char* wanted : {"./keep.txt", "./sub", "./sub/keep2.txt"})
    EXPECT_TRUE(seen.count(wanted)) << wanted << " missing in the container:\n" << r.out;
  for (const char* unwanted : {"./secret.txt", "./private", "./private/p.txt", "./key.pem", "./x.sock"})
    EXPECT_FALSE(seen.count(unwanted)) << unwanted << " reached the container:\n" << r.out;
  // Left out is not deleted.
  EXPECT_EQ(slurp(dir / "secret.txt"), "s3cret\n");
  EXPECT_EQ(slurp(dir / "key.pem"), "-----BEGIN KEY-----\n");

  auto mount = mount_status(dir);
  ASSERT_TRUE(mount) << status_json().dump(2);
  bool listed = false;
  for (const auto& s : (*mount)["skipped"]) listed |= s.get<std::string>().find("x.sock") != std::string::npos;
  EXPECT_TRUE(listed) << mount->dump(2);
  auto pretty = sh("docker offload status").out;
  EXPECT_NE(pretty.find("skipped x.sock"), std::string::npos) << pretty;
}

// ---- 10. Status ------------------------------------------------------------------------------

TEST_F(BindMounts, StatusListsTheMountInSyncWithItsCounters) {
  auto dir = fresh_dir("status");
  put(dir / "s.txt", "status input\n");
  auto r = sh("docker run --rm -v " + q(dir) + ":/src " + kImage +
              " sh -c 'cat /src/s.txt; echo received > /src/r.txt'");
  ASSERT_SH_OK(r);
  EXPECT_EQ(r.out, "status input\n");

  std::string line;
  EXPECT_TRUE(wait_for(
      [&] {
        auto pretty = sh("docker offload status").out;
        auto at = pretty.find(dir.string() + "  ");
        if (at == std::string::npos) return false;
        line = pretty.substr(at, pretty.find('\n', at) - at);
        return line.find("in sync") != std::string::npos;
      },
      10s))
      << "status line: " << line << "\n" << sh("docker offload status").out;

  auto mount = mount_status(dir);
  ASSERT_TRUE(mount) << status_json().dump(2);
  EXPECT_EQ((*mount)["state"], "in sync");
  EXPECT_EQ((*mount)["singleFile"], false);
  EXPECT_EQ((*mount)["error"], "");
  EXPECT_GE((*mount)["filesSent"].get<std::uint64_t>(), 1u) << mount->dump(2);
  EXPECT_GE((*mount)["bytesSent"].get<std::uint64_t>(), 13u) << mount->dump(2);
  EXPECT_GE((*mount)["filesReceived"].get<std::uint64_t>(), 1u) << mount->dump(2);
  EXPECT_GE((*mount)["bytesReceived"].get<std::uint64_t>(), 9u) << mount->dump(2);
  EXPECT_TRUE((*mount)["conflicts"].is_array() && (*mount)["conflicts"].empty()) << mount->dump(2);
  EXPECT_TRUE((*mount)["skipped"].is_array()) << mount->dump(2);
  EXPECT_GE((*mount)["entries"].get<std::uint64_t>(), 3u) << mount->dump(2);  // ., s.txt, r.txt
}

// ---- Paths round-trip (issue 14 item 1) --------------------------------------------------------

// The socket of the docker-offload context (offloadd's Docker API).
std::string offload_socket() {
  auto host = trim(sh("docker context inspect docker-offload --format '{{.Endpoints.docker.Host}}'").out);
  return host.starts_with("unix://") ? host.substr(7) : host;
}

// A raw API call with curl: the JSON answer, or null.
json api(const std::string& socket, const std::string& method, const std::string& path,
         const std::string& body = "") {
  std::string cmd = "curl -gsS --max-time 60 --unix-socket " + q(socket) + " -X " + method;
  if (!body.empty()) cmd += " -H 'Content-Type: application/json' --data-binary " + q(body);
  auto r = sh(cmd + " " + q("http://docker/v1.41" + path));
  auto doc = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  return doc.is_discarded() ? json() : doc;
}

TEST_F(BindMounts, InspectPsAndEventsShowTheLocalBindSourcesNotTheRunnersReplicas) {
  auto dir = fresh_dir("inspect");
  auto other = fresh_dir("inspect-other");
  ContainerGuard guard{"inspected"};
  const std::string since = trim(sh("date +%s").out);
  auto run = sh("docker run -d --name inspected -v " + q(dir) + ":/src:ro --mount " +
                q("type=bind,src=" + other.string() + ",dst=/m") + " " + kImage + " sleep 600");
  ASSERT_SH_OK(run);

  auto mounts = json::parse(sh("docker inspect --format '{{json .Mounts}}' inspected").out,
                            nullptr, false);
  ASSERT_TRUE(mounts.is_array() && mounts.size() == 2) << mounts.dump() << daemon_log_tail();
  std::set<std::string> sources;
  for (const auto& m : mounts) sources.insert(m.value("Source", ""));
  EXPECT_EQ(sources, (std::set<std::string>{dir.string(), other.string()}))
      << mounts.dump();
  EXPECT_EQ(trim(sh("docker inspect --format '{{json .HostConfig.Binds}}' inspected").out),
            json::array({dir.string() + ":/src:ro"}).dump());
  auto host_mounts = json::parse(
      sh("docker inspect --format '{{json .HostConfig.Mounts}}' inspected").out, nullptr, false);
  ASSERT_TRUE(host_mounts.is_array() && host_mounts.size() == 1) << host_mounts.dump();
  EXPECT_EQ(host_mounts[0].value("Source", ""), other.string());

  // docker ps shows the sources too (untruncated: they are long).
  auto ps = trim(sh("docker ps --no-trunc --filter name=inspected --format '{{.Mounts}}'").out);
  std::set<std::string> listed;
  for (std::size_t start = 0; start <= ps.size();) {
    auto comma = ps.find(',', start);
    if (comma == std::string::npos) comma = ps.size();
    listed.insert(ps.substr(start, comma - start));
    start = comma + 1;
  }
  EXPECT_EQ(listed, (std::set<std::string>{dir.string(), other.string()})) << ps;

  // The events stream (chunked, long-lived) goes through the same rewriting intact.
  auto events = sh("docker events --since " + since + " --until $(( $(date +%s) + 1 )) " +
                   "--filter container=inspected --format '{{.Action}}'", 30s);
  EXPECT_SH_OK(events);
  EXPECT_NE(events.out.find("create"), std::string::npos) << events.out;
  EXPECT_NE(events.out.find("start"), std::string::npos) << events.out;
  // No replica path anywhere in the answer (other runner paths, e.g. LogPath, are the engine's).
  EXPECT_EQ(sh("docker inspect inspected | grep -c /sync/").out, "0\n");
}

// dockerd lists a container's mounts in no particular order (a Go map).
json by_destination(json mounts) {
  if (!mounts.is_array()) return mounts;
  std::sort(mounts.begin(), mounts.end(), [](const json& a, const json& b) {
    return a.value("Destination", "") < b.value("Destination", "");
  });
  return mounts;
}

// The same create through offload and straight to a dockerd (the session's own engine, asked
// directly: the source exists on this host, which is also the runner): field by field, the
// answers show the same sources, spelled as the create spelled them.
TEST_F(BindMounts, RawApiInspectAndListMatchADirectEngineFieldByField) {
  auto dir = fresh_dir("inspect-raw");
  auto other = fresh_dir("inspect-raw-other");
  const std::string engine = engine_socket();
  ASSERT_FALSE(engine.empty());
  const std::string offload = offload_socket();
  ASSERT_FALSE(offload.empty());
  ContainerGuard guard{"raw-offload"};
  struct DirectGuard {
    std::string engine;
    ~DirectGuard() { api(engine, "DELETE", "/containers/raw-direct?force=1"); }
  } direct_guard{engine};

  // A trailing slash in the Binds source: HostConfig.Binds keeps it, Mounts[].Source does not.
  const json create = {
      {"Image", kImage},
      {"Cmd", {"sleep", "600"}},
      {"HostConfig",
       {{"Binds", {dir.string() + "/:/src:ro"}},
        {"Mounts", {{{"Type", "bind"}, {"Source", other.string()}, {"Target", "/m"}}}}}}};
  auto made = api(offload, "POST", "/containers/create?name=raw-offload", create.dump());
  ASSERT_TRUE(made.contains("Id")) << made.dump() << daemon_log_tail();
  auto made_direct = api(engine, "POST", "/containers/create?name=raw-direct", create.dump());
  ASSERT_TRUE(made_direct.contains("Id")) << made_direct.dump();

  auto ours = api(offload, "GET", "/containers/raw-offload/json");
  auto theirs = api(engine, "GET", "/containers/raw-direct/json");
  ASSERT_TRUE(ours.is_object() && theirs.is_object()) << ours.dump() << theirs.dump();
  EXPECT_EQ(ours["HostConfig"]["Binds"], theirs["HostConfig"]["Binds"]);
  EXPECT_EQ(ours["HostConfig"]["Mounts"], theirs["HostConfig"]["Mounts"]);
  EXPECT_EQ(by_destination(ours["Mounts"]), by_destination(theirs["Mounts"]));
  EXPECT_EQ(ours["HostConfig"], theirs["HostConfig"]) << "nothing else of HostConfig changes";

  auto listed = [](const std::string& socket, const std::string& name) {
    std::string filters;
    for (unsigned char c : json{{"name", {name}}}.dump()) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      if (std::isalnum(c) || c == '-') {
        filters += static_cast<char>(c);
      } else {
        filters += '%';
        filters += kHex[c >> 4];
        filters += kHex[c & 15];
      }
    }
    auto list = api(socket, "GET", "/containers/json?all=1&filters=" + filters);
    return list.is_array() && list.size() == 1 ? by_destination(list[0]["Mounts"]) : json();
  };
  auto our_list = listed(offload, "raw-offload");
  ASSERT_TRUE(our_list.is_array()) << our_list.dump();
  EXPECT_EQ(our_list, listed(engine, "raw-direct"));
}

// ---- The Docker socket in containers (issue 14 item 2) ----------------------------------------

// An HTTP/1.0 request (the answer is then neither chunked nor kept alive).
std::string raw_request(const std::string& method, const std::string& target,
                        const std::string& body = "") {
  std::string r = method + " " + target + " HTTP/1.0\r\nHost: docker\r\n";
  if (!body.empty())
    r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

TEST_F(BindMounts, TheDockerSocketGivesAContainerItsSessionsApiAndNothingMore) {
  auto dir = fresh_dir("docker-sock");
  ContainerGuard guard{"sock-user"};
  ContainerGuard made{"sock-made"};
  ContainerGuard refused{"sock-refused"};
  auto run = sh("docker run -d --name sock-user -v /var/run/docker.sock:/var/run/docker.sock -v " +
                q(dir) + ":/req " + kImage + " sleep 600");
  ASSERT_SH_OK(run) << daemon_log_tail();
  const std::string id = trim(run.out);
  // What the container got is the runner's gated socket, never the engine's own.
  auto mounts = json::parse(sh("docker inspect --format '{{json .Mounts}}' sock-user").out,
                            nullptr, false);
  std::string socket_source;
  for (const auto& m : mounts)
    if (m.value("Destination", "") == "/var/run/docker.sock") socket_source = m.value("Source", "");
  EXPECT_TRUE(socket_source.ends_with("/api/docker.sock")) << mounts.dump();
  EXPECT_NE(socket_source, engine_socket());

  // Sends the request file `name` from the container; the raw answer.
  auto ask = [&](const std::string& name, const std::string& request) {
    put(dir / name, request);
    // The file is synchronised before `docker exec` starts the reader.
    EXPECT_TRUE(wait_for([&] { return in("sock-user", "cat /req/" + name).out == request; }, 20s));
    return in("sock-user", "echo-server unix /var/run/docker.sock < /req/" + name).out;
  };

  // docker ps through the socket: exactly the session's containers.
  auto listed = ask("list.http", raw_request("GET", "/v1.41/containers/json?all=1"));
  ASSERT_TRUE(listed.starts_with("HTTP/1.")) << listed << daemon_log_tail();
  auto list = json::parse(listed.substr(listed.find("\r\n\r\n") + 4), nullptr, false);
  ASSERT_TRUE(list.is_array()) << listed;
  std::set<std::string> through_socket, session;
  for (const auto& c : list) through_socket.insert(c.value("Id", ""));
  std::istringstream ids(sh("docker ps -a -q --no-trunc").out);
  for (std::string line; std::getline(ids, line);) session.insert(line);
  EXPECT_TRUE(through_socket.count(id)) << listed;
  EXPECT_EQ(through_socket, session);

  // Hostile creates through the raw socket are refused, and create nothing.
  const std::vector<std::pair<std::string, json>> hostile = {
      {"--privileged", {{"Privileged", true}}},
      {"--userns=host", {{"UsernsMode", "host"}}},
      {"-v / ", {{"Binds", {"/:/host"}}}},
      {"--mount source=/", {{"Mounts", {{{"Type", "bind"}, {"Source", "/"}, {"Target", "/h"}}}}}},
  };
  int n = 0;
  for (const auto& [option, host_config] : hostile) {
    json body = {{"Image", kImage}, {"Cmd", {"true"}}, {"HostConfig", host_config}};
    auto answer = ask("hostile" + std::to_string(++n) + ".http",
                      raw_request("POST", "/v1.41/containers/create?name=sock-refused", body.dump()));
    EXPECT_EQ(answer.substr(0, 13), "HTTP/1.1 403 ") << option << ": " << answer;
    EXPECT_NE(answer.find(option), std::string::npos) << answer;
  }
  EXPECT_EQ(sh("docker ps -a -q --filter name=sock-refused").out, "");

  // A container made through the socket may have the socket again (the runner's own rewrite).
  json nested = {{"Image", kImage},
                 {"Cmd", {"sleep", "600"}},
                 {"HostConfig", {{"Binds", {"/var/run/docker.sock:/var/run/docker.sock"}}}}};
  auto created = ask("nested.http",
                     raw_request("POST", "/v1.41/containers/create?name=sock-made", nested.dump()));
  EXPECT_TRUE(created.starts_with("HTTP/1.") && created.substr(8, 5) == " 201 ")
      << created << daemon_log_tail();
  EXPECT_EQ(trim(sh("docker inspect --format '{{range .Mounts}}{{.Source}}{{end}}' sock-made").out),
            socket_source);
}

// ---- Last: stop, and nothing is left ---------------------------------------------------------

// Runs last (gtest keeps declaration order): stop, then look for anything left behind.
TEST_F(BindMounts, ZzStopEndsTheMountsAndLeavesNothingBehind) {
  auto runner_state = StatePaths(g_docker_config).local_runner_data_dir;
  std::string session_id = status_json().value("sessionId", "");
  ASSERT_GE(session_id.size(), 8u) << status_json().dump(2);
  std::string engine = engine_socket();
  ASSERT_FALSE(engine.empty());

  auto stopped = sh("docker offload stop --force", 180s);
  ASSERT_SH_OK(stopped);
  EXPECT_EQ(trim(sh("docker context show").out), "default");

  // offloadd lives on, with no mount left to synchronise.
  auto doc = status_json();
  EXPECT_TRUE(doc.contains("mounts") && doc["mounts"].empty()) << doc.dump(2);

  // The local side of every mount is untouched by the end of the session.
  auto mounts = fs::canonical(g_dir) / "mounts";
  EXPECT_EQ(slurp(mounts / "run" / "input.txt"), "hello from this machine\n");
  EXPECT_EQ(slurp(mounts / "run" / "result.txt"), "out\n");
  EXPECT_EQ(slurp(mounts / "excludes" / "secret.txt"), "s3cret\n");

  // Nothing of the session on the runner host: engine, network, replicas, processes.
  EXPECT_FALSE(fs::exists(fs::path(engine).parent_path())) << engine;
  EXPECT_EQ(sh("ip netns list").out.find(session_id), std::string::npos);
  EXPECT_EQ(sh("ip -o link show").out.find("ofl" + session_id.substr(0, 8)), std::string::npos);
  EXPECT_EQ(sh("iptables-save").out.find("offload:" + session_id), std::string::npos);
  EXPECT_FALSE(fs::exists(runner_state / "sessions" / session_id));
  EXPECT_EQ(processes_mentioning(session_id.substr(0, 8)), std::vector<std::string>{});
  EXPECT_EQ(sh("grep -c ' " + fs::path(engine).parent_path().string() + "' /proc/mounts").out, "0\n");
}

}  // namespace
}  // namespace offload::e2e

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new offload::e2e::OffloadEnvironment);
  return RUN_ALL_TESTS();
}
