#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <thread>

#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"
#include "offload/daemon/provider.h"

namespace offload::daemon {
namespace fs = std::filesystem;
using namespace std::chrono;

namespace {

// dockerd lives in /usr/sbin, which a user's PATH may lack.
std::optional<fs::path> find_system_program(const std::string& name) {
  if (auto p = find_program(name)) return p;
  for (const char* dir : {"/usr/local/sbin", "/usr/sbin", "/sbin"}) {
    fs::path candidate = fs::path(dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

}  // namespace

LocalProvider::LocalProvider(StatePaths paths, LocalAccountSettings settings)
    : paths_(std::move(paths)), settings_(std::move(settings)) {}

std::string LocalProvider::check_host() {
  if (::geteuid() != 0)
    return "the local account runs Docker engines on this machine and needs root: run `sudo "
           "docker offload start`, or use a remote runner account";
  if (!find_system_program("dockerd"))
    return "the local account needs dockerd, which was not found: install it with `apt-get "
           "install docker.io`";
  for (const char* tool : {"ip", "iptables", "nsenter"}) {
    if (!find_system_program(tool))
      return std::string("the local account needs `") + tool +
             "`, which was not found: install iproute2, iptables and util-linux";
  }
  return {};
}

ProvisionedRunner LocalProvider::provision(milliseconds timeout) {
  if (auto why = check_host(); !why.empty()) throw ProvisionError(why);
  auto runner_bin = find_program("offload-runner");
  if (!runner_bin)
    throw ProvisionError("offload-runner not found next to offloadd or on PATH: reinstall "
                         "docker-offload");
  fs::path dir = paths_.local_runner_dir;
  if (auto ec = ensure_private_dir(dir))
    throw ProvisionError("cannot create " + dir.string() + ": " + ec.message());

  ProvisionedRunner result;
  result.endpoint.account_token = random_hex(32);
  fs::path token_file = dir / "tokens";
  if (auto ec = write_file_atomic(token_file, "local:" + result.endpoint.account_token + "\n"))
    throw ProvisionError("cannot write " + token_file.string() + ": " + ec.message());
  fs::path ready_file = dir / "ready.json";
  fs::remove(ready_file);

  std::vector<std::string> argv = {
      runner_bin->string(),       "serve",
      "--listen",                 "127.0.0.1:0",
      "--token-file",             token_file.string(),
      "--tls-dir",                (dir / "tls").string(),
      "--state-dir",              paths_.local_runner_data_dir.string(),
      "--run-dir",                paths_.local_runner_run_dir.string(),
      "--address-pool",           settings_.address_pool,
      "--ready-file",             ready_file.string(),
      "--log-file",               (dir / "runner.log").string(),
  };
  std::string error;
  SpawnOptions options;
  options.log_file = dir / "runner.stderr.log";
  options.new_session = true;  // the runner must outlive a crash of this daemon
  pid_t pid = spawn_process(argv, options, error);
  if (pid < 0) throw ProvisionError("cannot start offload-runner: " + error);
  result.runner_pid = pid;
  spdlog::info("started local runner (pid {})", pid);

  // The runner writes its address and certificate fingerprint once it listens.
  auto deadline = steady_clock::now() + std::min<milliseconds>(timeout, seconds(30));
  for (;;) {
    std::string text;
    if (!read_file(ready_file, text)) {
      auto j = nlohmann::json::parse(text, nullptr, false);
      if (j.is_object() && j.contains("address") && j.contains("fingerprint")) {
        result.endpoint.address = j["address"].get<std::string>();
        result.endpoint.fingerprint = j["fingerprint"].get<std::string>();
        return result;
      }
    }
    if (!process_alive(pid)) {
      std::string log;
      read_file(options.log_file, log);
      if (log.size() > 400) log = "..." + log.substr(log.size() - 400);
      throw ProvisionError("offload-runner exited during start-up: " +
                           (log.empty() ? std::string("no output") : log));
    }
    if (steady_clock::now() >= deadline) {
      terminate_process(pid, seconds(5));
      throw ProvisionError("offload-runner did not become ready in time (see " +
                           (dir / "runner.log").string() + ")");
    }
    std::this_thread::sleep_for(milliseconds(25));
  }
}

void LocalProvider::release(const ProvisionedRunner& runner) {
  if (runner.runner_pid <= 0) return;
  // The runner tears down any session it still has on SIGTERM; give it time to do so.
  if (!terminate_process(runner.runner_pid, seconds(90))) {
    spdlog::error("local runner (pid {}) did not exit", runner.runner_pid);
    return;  // it still holds its lock and may still be tearing sessions down
  }
  spdlog::info("local runner (pid {}) stopped", runner.runner_pid);
  // Its per-session directories are gone with the sessions; drop the (now empty) parents too.
  // Non-recursive: whatever a session left (the runner reported it) stays for inspection.
  // The runner never deletes its lock file itself (a runner starting meanwhile could lock a
  // file already unlinked); with the runner gone, no one can hold it.
  std::error_code ec;
  fs::remove(paths_.local_runner_data_dir / "runner.lock", ec);
  fs::remove(paths_.local_runner_run_dir, ec);
  fs::remove(paths_.local_runner_data_dir / "sessions", ec);
  fs::remove(paths_.local_runner_data_dir, ec);
}

}  // namespace offload::daemon
