#include "offload/common/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace offload {
namespace fs = std::filesystem;
using namespace std::chrono;

namespace {
std::vector<char*> to_argv(const std::vector<std::string>& args) {
  std::vector<char*> v;
  for (const auto& a : args) v.push_back(const_cast<char*>(a.c_str()));
  v.push_back(nullptr);
  return v;
}

// Every child gets stdin, stdout and stderr and nothing else: Asio (and more) opens descriptors
// without O_CLOEXEC, and dockerd must not keep the runner's gRPC listener, other sessions'
// engine sockets or tunnels open, nor the runner offloadd's, nor offloadd the CLI's. Added after
// the redirections, it runs in the child just before exec (glibc: close_range, or a walk of
// /proc/self/fd without it); unlike marking our descriptors close-on-exec beforehand, it leaves
// no window for a descriptor another thread opens meanwhile.
void close_the_rest(posix_spawn_file_actions_t& fa) {
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
}

// Waits for `pid` up to `until`; returns true and sets status when it exited.
bool wait_until(pid_t pid, steady_clock::time_point until, int& status) {
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return true;
    if (r < 0 && errno != EINTR) return true;  // not our child (or already reaped)
    if (steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(milliseconds(20));
  }
}
}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, milliseconds timeout) {
  CommandResult result;
  if (argv.empty()) {
    result.error = "empty command";
    return result;
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    result.error = std::strerror(errno);
    return result;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  close_the_rest(fa);
  auto args = to_argv(argv);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    result.error = argv[0] + ": " + std::strerror(rc);
    return result;
  }
  auto deadline = steady_clock::now() + timeout;
  char buf[4096];
  bool timed_out = false;
  for (;;) {
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{pipefd[0], POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    ssize_t n = ::read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buf, static_cast<std::size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  if (timed_out || !wait_until(pid, deadline + seconds(1), status)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    result.error = argv[0] + ": timed out after " + std::to_string(timeout.count()) + " ms";
    return result;
  }
  if (WIFEXITED(status))
    result.exit_code = WEXITSTATUS(status);
  else
    result.error = argv[0] + ": killed by signal " + std::to_string(WTERMSIG(status));
  return result;
}

pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options,
                    std::string& error) {
  if (argv.empty()) {
    error = "empty command";
    return -1;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  std::string out = options.log_file.empty() ? "/dev/null" : options.log_file.string();
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  close_the_rest(fa);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.new_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&attr, flags);
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);

  std::vector<std::string> env_storage;
  // A child never speaks to systemd for us: under Type=notify, a dockerd that inherited
  // NOTIFY_SOCKET would send its own READY=1 there. Only an explicit options.env passes it on.
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0) env_storage.emplace_back(*e);
  for (const auto& extra : options.env) env_storage.push_back(extra);
  auto envp = to_argv(env_storage);
  auto args = to_argv(argv);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    error = argv[0] + ": " + std::strerror(rc);
    return -1;
  }
  return pid;
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  int status;
  if (::waitpid(pid, &status, WNOHANG) == pid) return false;  // reaped our exited child
  if (::kill(pid, 0) != 0) return errno == EPERM;
  // A zombie that is not our child still answers kill(0): look at its state.
  std::string stat;
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return false;
  char buf[512];
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* close_paren = std::strrchr(buf, ')');
  return !(close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z');
}

bool terminate_process(pid_t pid, milliseconds grace) {
  if (!process_alive(pid)) return true;
  ::kill(pid, SIGTERM);
  auto until = steady_clock::now() + grace;
  while (steady_clock::now() < until) {
    if (!process_alive(pid)) return true;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  until = steady_clock::now() + seconds(5);
  while (steady_clock::now() < until) {
    if (!process_alive(pid)) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return !process_alive(pid);
}

std::optional<fs::path> find_program(const std::string& name) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path sibling = self.parent_path() / name;
    if (::access(sibling.c_str(), X_OK) == 0) return sibling;
  }
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::size_t start = 0;
  while (start <= p.size()) {
    std::size_t end = p.find(':', start);
    if (end == std::string::npos) end = p.size();
    std::string dir = p.substr(start, end - start);
    if (!dir.empty()) {
      fs::path candidate = fs::path(dir) / name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

sigset_t block_signals_for_sigwait(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  return set;
}

}  // namespace offload
