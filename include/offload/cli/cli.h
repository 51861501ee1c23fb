// The docker-offload CLI plugin: argv in, exit code out. The program in cmd/docker-offload is a
// thin shell over `run`; tests drive the same entry point with string streams.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace offload::cli {

// The terminal a command talks to. Tests pass string streams and decide what counts as a TTY.
struct Console {
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
  bool stdin_is_tty = false;
  bool stdout_is_tty = false;
};

// The process environment, read once by `from_process` so the library never calls getenv.
struct Environment {
  std::filesystem::path docker_config;        // $DOCKER_CONFIG or ~/.docker
  std::optional<std::string> docker_host;     // DOCKER_HOST, when set and not empty
  std::optional<std::string> docker_context;  // DOCKER_CONTEXT, when set and not empty
  std::optional<std::string> plugin_socket;   // DOCKER_CLI_PLUGIN_SOCKET (Ctrl-C channel)
  std::filesystem::path program;              // this plugin's executable (for `diagnose`)
  // Where the docker CLI looks for plugins after config.json's cliPluginsExtraDirs and
  // <docker_config>/cli-plugins: docker/cli's defaultSystemPluginDirs on Linux. Tests replace it.
  std::vector<std::filesystem::path> system_plugin_dirs = {
      "/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
      "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins"};
  static Environment from_process();
};

// Every docker-offload the docker CLI would find, in its order of preference: the first is the
// one `docker offload` runs, the others are shadowed by it. docker 28 (cli-plugins/manager)
// looks in config.json's cliPluginsExtraDirs first, then <docker_config>/cli-plugins, then
// `system_dirs`; a name that exists there (a file or a symlink, followed) is a candidate.
std::vector<std::filesystem::path> docker_plugin_candidates(
    const std::filesystem::path& docker_config,
    const std::vector<std::filesystem::path>& system_dirs);

// A failure and the exit code it maps to (docker/cli's StatusError). `what()` is the text for
// stderr, printed as is; it may be empty when there is nothing left to say (Ctrl-C).
class CliError : public std::runtime_error {
 public:
  explicit CliError(const std::string& message, int exit_code = 1)
      : std::runtime_error(message), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

inline constexpr int kExitInterrupted = 130;
// A flag the command does not know, lacks a value for or refuses the value of: docker's 125.
inline constexpr int kExitUsage = 125;

// The plugin's argv with the docker CLI's part taken off.
struct Invocation {
  bool metadata = false;                      // `docker-cli-plugin-metadata`
  std::filesystem::path docker_config;        // --config DIR, else the environment's
  std::vector<std::string> args;              // after the `offload` word: verb and its flags
};

// Skips the docker CLI's global flags (with their values) up to the `offload` word, honouring
// `--config DIR`. Without an `offload` word (run directly as `docker-offload status`) the
// arguments start at the first one that is not a global flag. `help offload [VERB]` (what
// `docker help offload` runs) becomes `[VERB] --help`. argv[0] is the program.
Invocation preprocess_argv(const std::vector<std::string>& argv,
                           const std::filesystem::path& default_docker_config);

// The JSON the docker CLI reads to list the plugin (one line, PascalCase keys).
std::string plugin_metadata_json();

// Runs the plugin: parses, connects to offloadd (starting it when needed), renders, and maps
// every failure to one line on `console.err` and an exit code (0 ok, 1 error, 125 a flag error
// as docker's own commands, 130 Ctrl-C).
int run(const std::vector<std::string>& argv, Console& console, const Environment& env);

}  // namespace offload::cli
