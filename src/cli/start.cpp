#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <ostream>
#include <thread>
#include <vector>

#include "offload/cli/docker_format.h"
#include "offload/common/duration.h"
#include "preload.h"
#include "verb.h"

namespace offload::cli {

CLI::App* new_start_command(CLI::App& parent, StartOptions& options) {
  CLI::App* cmd = detail::add_verb(parent, "start", "Start an offload session");
  detail::value_flag(*cmd, "-a,--account", options.account, "string",
                     "Account to start the session with");
  detail::value_flag(*cmd, "--timeout", options.timeout, "duration",
                     "How long provisioning may take, e.g. 90s or 5m");
  detail::value_flag(*cmd, "--idle-timeout", options.idle_timeout, "duration",
                     "End the session after this long with nothing running, e.g. 2m");
  detail::bool_flag(*cmd, "-g,--gpu", options.gpu,
                    "Request an engine with GPU support (the runner's NVIDIA GPUs)");
  cmd->add_option("--preload", options.preload,
                  "Images to copy into the session from the engine used before")
      ->type_name("list")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  return cmd;
}

namespace {

// The order the daemon goes through them (session_manager.cpp).
const std::vector<std::string> kStartPhases = {"runner", "engine", "context", "events"};

// Shows Start's phases while the call waits: a WatchStatus call of its own, read on a thread
// that alone writes to stderr until stop(). A daemon that reports no phases (an older one)
// shows none.
class StartProgress {
 public:
  StartProgress(v1::Control::Stub& stub, std::ostream& err) : err_(err) {
    thread_ = std::thread([this, &stub] { read(stub); });
    // Subscribed before Start begins, so the first phase is not missed (bounded: a daemon that
    // does not answer the watch still gets its Start).
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(2), [this] { return subscribed_ || done_; });
  }
  ~StartProgress() { stop(false); }

  // Start succeeded: the daemon reported its last phase before it answered, so wait (briefly)
  // for that frame to be read and shown. Otherwise stop at once.
  void stop(bool started) {
    if (!thread_.joinable()) return;
    if (started) {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(2), [this] { return finished_ || done_; });
    }
    context_.TryCancel();
    thread_.join();
  }

 private:
  void read(v1::Control::Stub& stub) {
    auto reader = stub.WatchStatus(&context_, {});
    v1::SessionStatus status;
    bool first = true;
    while (reader->Read(&status)) {
      if (!first) show(status.start_phase());  // the first frame is from before Start
      std::lock_guard lock(mu_);
      subscribed_ = true;
      // Done once this start was seen under way and is over (a change before it is not).
      if (!first && (status.state() == v1::DAEMON_STATE_STARTING || !status.start_phase().empty()))
        saw_start_ = true;
      if (saw_start_ && status.state() != v1::DAEMON_STATE_STARTING &&
          status.start_phase().empty())
        finished_ = true;
      first = false;
      cv_.notify_all();
    }
    reader->Finish();
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  // Each phase once, in order; one the watch skipped (two changes between reads) is still shown.
  void show(const std::string& phase) {
    auto it = std::find(kStartPhases.begin(), kStartPhases.end(), phase);
    if (it == kStartPhases.end()) return;
    const std::size_t index = static_cast<std::size_t>(it - kStartPhases.begin());
    for (; next_ <= index; ++next_) err_ << start_phase_line(kStartPhases[next_]) << "\n";
    err_.flush();
  }

  std::ostream& err_;
  grpc::ClientContext context_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool subscribed_ = false, saw_start_ = false, finished_ = false, done_ = false;
  std::size_t next_ = 0;  // the first phase not shown yet
};

}  // namespace

std::string start_phase_line(const std::string& phase) {
  if (phase == "runner") return "[1/4] Provisioning the runner and connecting to it";
  if (phase == "engine") return "[2/4] Starting the session's Docker engine on the runner";
  if (phase == "context") return "[3/4] Switching the docker context to docker-offload";
  if (phase == "events") return "[4/4] Following the session's events";
  return "";
}

std::string environment_override_warning(const Environment& env) {
  // The docker CLI prefers DOCKER_HOST, then DOCKER_CONTEXT, over the current context.
  if (env.docker_host)
    return "WARNING: DOCKER_HOST is set to \"" + *env.docker_host +
           "\" and overrides the docker-offload context in this shell; unset it to use the "
           "offload session";
  if (env.docker_context && *env.docker_context != "docker-offload")
    return "WARNING: DOCKER_CONTEXT is set to \"" + *env.docker_context +
           "\" and overrides the docker-offload context in this shell; unset it to use the "
           "offload session";
  return "";
}

namespace {

// `docker save` from the engine used before the switch, `docker load` into the session, with the
// bytes copied so far (a line a second, or one line rewritten on a terminal).
void preload(CommandContext& cli, const std::vector<std::string>& images,
             const v1::StartResponse& started) {
  auto& out = cli.console.out;
  const std::string from = preload_source(cli.env, started.previous_context());
  std::string names;
  for (const auto& image : images) names += (names.empty() ? "" : ", ") + image;
  out << "Preloading " << names << " from " << from << "...\n";
  out.flush();
  auto last = std::chrono::steady_clock::now();
  std::uint64_t total = 0;
  auto said = copy_images(images, from, started.status().docker_host(), [&](std::uint64_t n) {
    total = n;
    auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::seconds(1)) return;
    last = now;
    out << (cli.console.stdout_is_tty ? "\r" : "") << "  copied "
        << docker_human_size(static_cast<std::int64_t>(n)) << (cli.console.stdout_is_tty ? "" : "\n");
    out.flush();
  });
  out << (cli.console.stdout_is_tty ? "\r" : "") << "  copied "
      << docker_human_size(static_cast<std::int64_t>(total)) << "\n" << said;
  out.flush();
}

}  // namespace

int run_start(CommandContext& cli, const StartOptions& options) {
  v1::StartRequest request;
  request.set_account(options.account);
  if (!options.timeout.empty()) {
    auto timeout = parse_duration(options.timeout);
    if (!timeout) throw CliError("invalid --timeout \"" + options.timeout + "\"");
    request.set_timeout_ms(timeout->count());
  }
  if (!options.idle_timeout.empty()) {
    auto idle = parse_duration(options.idle_timeout);
    if (!idle || idle->count() <= 0)
      throw CliError("invalid --idle-timeout \"" + options.idle_timeout + "\"");
    request.set_idle_timeout_ms(idle->count());
  }
  v1::Control::Stub& stub = detail::connect(cli);
  auto& out = cli.console.out;

  // Name the account even when the user did not, so the first line says what is happening.
  std::string account = options.account;
  if (account.empty()) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListAccountsResponse accounts;
    if (stub.ListAccounts(&context, {}, &accounts).ok())
      for (const auto& a : accounts.accounts())
        if (a.is_default()) account = a.name();
  }
  if (account.empty()) out << "Starting offload session...\n";
  else out << "Starting offload session on account \"" << account << "\"...\n";
  out.flush();

  request.set_gpu(options.gpu);
  v1::StartResponse response;
  {
    StartProgress progress(stub, cli.console.err);
    try {
      response = detail::call(cli, stub, &v1::Control::Stub::Start, request);
    } catch (...) {
      progress.stop(false);
      throw;
    }
    progress.stop(true);
  }
  std::string context = response.status().context().empty() ? "docker-offload"
                                                            : response.status().context();
  std::string previous = response.previous_context().empty() ? "default"
                                                             : response.previous_context();
  out << "Offload session started. Docker context \"" << context << "\" is now current";
  if (previous != context) out << " (was \"" << previous << "\")";
  out << ".\n";
  out.flush();

  std::string warning = environment_override_warning(cli.env);
  if (!warning.empty()) cli.console.err << warning << "\n";
  if (!options.preload.empty()) preload(cli, options.preload, response);
  return 0;
}

}  // namespace offload::cli
