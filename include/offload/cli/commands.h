// The verbs of `docker offload`, shaped like docker/cli: one options struct, one function that
// declares the flags (newXCommand) and one that runs (runX) per verb.
#pragma once

#include <chrono>
#include <functional>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "offload/cli/cli.h"

namespace offload::cli {

class DaemonClient;
class Interrupt;

struct StartOptions {
  std::string account;       // empty: the configured default
  std::string timeout;       // a duration as typed; empty: the configured default
  std::string idle_timeout;  // a duration as typed, longer than zero; empty: the configured default
  bool gpu = false;          // a session with the runner's NVIDIA GPUs
  std::vector<std::string> preload;  // images copied from the previous engine into the session
};

struct StopOptions {
  bool force = false;
};

struct StatusOptions {
  std::string format = "pretty";  // pretty | json
  bool watch = false;
};

struct PsOptions {
  bool all = false;
  bool quiet = false;
  std::string format = "pretty";
};

struct ImagesOptions {
  bool quiet = false;
  std::string format = "pretty";
};

struct VersionOptions {
  bool json = false;
  bool short_only = false;
};

struct AccountsOptions {
  std::string format = "pretty";
  // "" lists the accounts; "add" (NAME JOINSTRING) or "remove" (NAME) edits config.json.
  std::string action;
  std::vector<std::string> args;
};

struct DiagnoseOptions {
  std::string format = "pretty";
};

// What the command line says; only the chosen verb's options matter.
struct CommandLine {
  std::string verb;  // "start", "status", ...; empty when none was given
  StartOptions start;
  StopOptions stop;
  StatusOptions status;
  PsOptions ps;
  ImagesOptions images;
  VersionOptions version;
  AccountsOptions accounts;
  DiagnoseOptions diagnose;
};

// The command tree, its options bound to `line`.
std::unique_ptr<CLI::App> new_offload_command(CommandLine& line);
CLI::App* new_start_command(CLI::App& parent, StartOptions& options);
CLI::App* new_stop_command(CLI::App& parent, StopOptions& options);
CLI::App* new_status_command(CLI::App& parent, StatusOptions& options);
CLI::App* new_ps_command(CLI::App& parent, PsOptions& options);
CLI::App* new_images_command(CLI::App& parent, ImagesOptions& options);
CLI::App* new_version_command(CLI::App& parent, VersionOptions& options);
CLI::App* new_accounts_command(CLI::App& parent, AccountsOptions& options);
CLI::App* new_diagnose_command(CLI::App& parent, DiagnoseOptions& options);

// Parses the arguments after the `offload` word. Returns an exit code when parsing alone ends
// the run (help printed on `out`: 0; in docker 28's wording on `err`, a flag error: 125, a
// stray or missing argument or an unknown command: 1); otherwise nullopt, with the verb and its
// validated options in `line`.
std::optional<int> parse_command_line(const std::vector<std::string>& args, CommandLine& line,
                                      std::ostream& out, std::ostream& err);

// What a verb runs with.
struct CommandContext {
  Console& console;
  const Environment& env;
  DaemonClient& daemon;
  Interrupt& interrupt;
  std::function<std::chrono::system_clock::time_point()> now =
      [] { return std::chrono::system_clock::now(); };
};

// Runs the chosen verb; a CliError becomes its line on stderr and its exit code.
int run_command(const CommandLine& line, CommandContext& cli);

// Each returns the exit code or throws CliError.
int run_start(CommandContext& cli, const StartOptions& options);
int run_stop(CommandContext& cli, const StopOptions& options);
int run_status(CommandContext& cli, const StatusOptions& options);
int run_ps(CommandContext& cli, const PsOptions& options);
int run_images(CommandContext& cli, const ImagesOptions& options);
int run_version(CommandContext& cli, const VersionOptions& options);
int run_accounts(CommandContext& cli, const AccountsOptions& options);
// Exit code 1 when any check failed.
int run_diagnose(CommandContext& cli, const DiagnoseOptions& options);

// `stop` destroys everything in the session, so it asks first. True: go ahead; false: the user
// said no. Throws CliError when it may not ask (no --force and stdin is not a terminal).
bool confirm_stop(const StopOptions& options, Console& console);

// What `start` prints on stderr when the daemon reports that it begins `phase` ("runner",
// "engine", "context", "events"); "" for a phase it does not know.
std::string start_phase_line(const std::string& phase);

// The warning `start` shows when DOCKER_HOST or DOCKER_CONTEXT will win over the docker-offload
// context (the docker CLI's precedence); empty when neither is set.
std::string environment_override_warning(const Environment& env);

}  // namespace offload::cli
