// `offload-runner sessions ls|inspect|rm`: the admin socket's command line (admin.h).
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace offload::runner {

struct SessionsCommand {
  CLI::App* command = nullptr;
  CLI::App* ls = nullptr;
  CLI::App* inspect = nullptr;
  CLI::App* rm = nullptr;
  std::string socket;
  std::string format = "table";
  std::vector<std::string> ids;
  std::string reason;
};

// Adds `sessions` and its subcommands to `app`, filling `cmd` when parsed.
void add_sessions_command(CLI::App& app, SessionsCommand& cmd);
// Runs the parsed command; the exit code (1 with a one-line error on stderr on failure).
int run_sessions_command(const SessionsCommand& cmd);

}  // namespace offload::runner
