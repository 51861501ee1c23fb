// Running helper programs (ip, iptables, dockerd) without a shell: argv in, exit code out.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

namespace offload {

struct CommandResult {
  int exit_code = -1;   // -1: could not be started or timed out (see error)
  std::string output;   // stdout and stderr, interleaved
  std::string error;    // why it could not run, if it could not
  bool ok() const { return exit_code == 0; }
};

// Runs argv[0] (searched in PATH) and waits up to `timeout`; on timeout the process is killed.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

struct SpawnOptions {
  // stdout and stderr go here (appended); /dev/null when empty.
  std::filesystem::path log_file;
  // Start a new session (setsid) so the child outlives our terminal and process group.
  bool new_session = true;
  // Extra environment entries NAME=VALUE on top of ours.
  std::vector<std::string> env;
};

// Starts argv in the background and returns its pid (or -1 with `error` set).
pid_t spawn_process(const std::vector<std::string>& argv, const SpawnOptions& options,
                    std::string& error);

// True if `pid` is alive (and not a zombie of ours).
bool process_alive(pid_t pid);

// SIGTERM, wait up to `grace`, then SIGKILL and wait. Reaps the child if it is ours.
// Returns true if the process is gone.
bool terminate_process(pid_t pid, std::chrono::milliseconds grace);

// Absolute path of a program: next to our own executable first (a build tree or an install
// prefix keeps the three programs together), then PATH. nullopt when not found.
std::optional<std::filesystem::path> find_program(const std::string& name);

// For a program that takes its signals synchronously, with sigwait in the main thread: blocks
// `signals` in the calling thread and ignores SIGPIPE (a peer gone away is then an error on the
// write, not the end of the program). Call it before any thread starts, so every thread inherits
// the mask and only sigwait sees those signals. Returns the set to give sigwait.
sigset_t block_signals_for_sigwait(std::initializer_list<int> signals);

}  // namespace offload
