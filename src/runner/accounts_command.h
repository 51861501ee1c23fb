// `offload-runner accounts add|remove|ls`: the operator's way to give people access. Private to
// the runner program (runner_main wires it in).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace offload::runner {

class AccountsCommand {
 public:
  // Adds `accounts` and its subcommands to `app`.
  explicit AccountsCommand(CLI::App& app);
  // Whether the command line chose `accounts ...`.
  bool parsed() const;
  // Runs the chosen subcommand: the exit code, errors printed as one line on stderr.
  int run();

 private:
  CLI::App* accounts_ = nullptr;
  CLI::App* add_ = nullptr;
  CLI::App* remove_ = nullptr;
  CLI::App* ls_ = nullptr;
  std::string name_;
  std::string token_file_;
  std::string state_dir_ = "/var/lib/offload-runner";
  std::string tls_dir_, tls_cert_;
  std::string advertise_;
  std::string max_sessions_;
  std::string allow_;
};

}  // namespace offload::runner
