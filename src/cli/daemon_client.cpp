#include "offload/cli/daemon_client.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "offload/common/fs.h"
#include "offload/common/process.h"

namespace offload::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::string seconds_text(std::chrono::milliseconds d) {
  return std::to_string((d.count() + 999) / 1000) + "s";
}

}  // namespace

bool unix_socket_listening(const std::filesystem::path& path) {
  sockaddr_un addr{};
  const std::string p = path.string();
  if (p.size() >= sizeof(addr.sun_path)) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

DaemonClient::DaemonClient(Options options)
    : options_(std::move(options)), paths_(options_.docker_config) {}

bool DaemonClient::open_channel() {
  grpc::ChannelArguments args;
  // One local daemon: a failed call should fail now, not be retried behind the user's back.
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  channel_ = grpc::CreateCustomChannel("unix:" + paths_.control_socket.string(),
                                       grpc::InsecureChannelCredentials(), args);
  if (!channel_->WaitForConnected(std::chrono::system_clock::now() + options_.connect_timeout)) {
    channel_.reset();
    return false;
  }
  stub_ = v1::Control::NewStub(channel_);
  return true;
}

v1::Control::Stub* DaemonClient::connect_if_running() {
  if (stub_) return stub_.get();
  // A plain connect() first: it answers at once, where a gRPC channel to a missing socket
  // would sit in its reconnect backoff.
  if (unix_socket_listening(paths_.control_socket) && open_channel()) return stub_.get();
  return nullptr;
}

v1::Control::Stub& DaemonClient::connect() {
  if (stub_) return *stub_;
  if (unix_socket_listening(paths_.control_socket)) {
    if (!open_channel())
      throw CliError("offloadd is not answering on " + display_path(paths_.control_socket) +
                     ": no gRPC connection within " + seconds_text(options_.connect_timeout));
    if (!stopped_outdated_daemon()) return *stub_;
  }
  start_daemon();
  return *stub_;
}

bool DaemonClient::stopped_outdated_daemon() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + options_.connect_timeout);
  v1::VersionResponse version;
  if (!stub_->Version(&context, {}, &version).ok()) return false;
  const std::string& running = version.daemon_version();
  if (running.empty() || running == options_.expected_daemon_version) return false;

  auto say = [&](const std::string& line) {
    if (options_.notice) options_.notice(line);
  };
  const pid_t pid = daemon_pid();
  if (pid == 0) {
    say("offloadd " + running + " is running, this is docker-offload " +
        options_.expected_daemon_version + "; cannot find its process to restart it (" +
        display_path(paths_.pid_file) + "): stop it yourself");
    return false;
  }
  say("offloadd " + running + " is running, this is docker-offload " +
      options_.expected_daemon_version + ": restarting it; the session carries on");
  stub_.reset();
  channel_.reset();
  // SIGTERM: the daemon leaves the session running; SIGKILL only if it hangs.
  if (!terminate_process(pid, options_.stop_timeout))
    throw CliError("offloadd " + running + " (pid " + std::to_string(pid) +
                   ") did not exit; stop it and try again");
  return true;
}

void DaemonClient::start_daemon() {
  const std::filesystem::path log = daemon_log();
  auto fail = [&](const std::string& why, bool see_log) {
    std::string message = "daemon not running and could not be started: " + why;
    if (see_log) message += " (see " + display_path(log) + ")";
    throw CliError(message);
  };

  std::optional<std::filesystem::path> program =
      options_.locate_daemon ? options_.locate_daemon() : find_program("offloadd");
  // No log to point at: nothing ran.
  if (!program) fail("offloadd not found next to docker-offload or in PATH", false);
  if (auto ec = ensure_private_dir(paths_.dir))
    fail("cannot create " + display_path(paths_.dir) + ": " + ec.message(), false);

  SpawnOptions spawn;
  spawn.log_file = log;
  spawn.new_session = true;  // the daemon outlives this command and its terminal
  std::string error;
  pid_t pid = spawn_process({program->string(), "--docker-config", paths_.docker_config.string()},
                            spawn, error);
  if (pid < 0) fail("cannot run " + program->string() + ": " + error, true);

  const auto deadline = Clock::now() + options_.start_timeout;
  std::optional<Clock::time_point> exited_at;
  while (!unix_socket_listening(paths_.control_socket)) {
    const auto now = Clock::now();
    if (!exited_at && !process_alive(pid)) exited_at = now;
    // A daemon that exits may have lost the race to another one starting right now; give
    // that one a moment to open the socket before blaming ours.
    if (exited_at && now - *exited_at > std::chrono::seconds(1))
      fail("offloadd exited before opening " + display_path(paths_.control_socket), true);
    if (now >= deadline)
      fail("offloadd did not open " + display_path(paths_.control_socket) + " within " +
               seconds_text(options_.start_timeout),
           true);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!open_channel())
    fail("offloadd opened " + display_path(paths_.control_socket) + " but does not answer", true);
}

CliError DaemonClient::error(const grpc::Status& status) const {
  // UNAVAILABLE is also what the daemon says when the runner is away; only a channel that lost
  // its connection means the daemon itself is gone.
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (!channel_ || channel_->GetState(false) != GRPC_CHANNEL_READY))
    return CliError("offloadd is not answering on " + display_path(paths_.control_socket) + ": " +
                    status.error_message());
  if (status.error_message().empty())
    return CliError("offloadd failed the request without saying why (see " +
                    display_path(paths_.log_file) + ")");
  return CliError(status.error_message());
}

pid_t DaemonClient::daemon_pid() const {
  std::string text;
  if (read_file(paths_.pid_file, text)) return 0;
  pid_t pid = 0;
  try {
    pid = static_cast<pid_t>(std::stol(text));
  } catch (const std::exception&) {
    return 0;
  }
  // Only offloadd itself: a stale pid file must not make us signal some other process.
  std::string comm;
  if (pid <= 1 || read_file("/proc/" + std::to_string(pid) + "/comm", comm) ||
      comm.rfind("offloadd", 0) != 0)
    return 0;
  return pid;
}

bool DaemonClient::restart_if_running() {
  if (!unix_socket_listening(paths_.control_socket)) return true;
  const pid_t pid = daemon_pid();
  if (pid == 0) return false;
  stub_.reset();
  channel_.reset();
  if (!terminate_process(pid, std::chrono::seconds(10))) return false;
  connect();
  return true;
}

}  // namespace offload::cli
