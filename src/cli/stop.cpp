#include <algorithm>
#include <istream>
#include <ostream>

#include "verb.h"

namespace offload::cli {

CLI::App* new_stop_command(CLI::App& parent, StopOptions& options) {
  CLI::App* cmd =
      detail::add_verb(parent, "stop", "Stop the offload session and destroy its environment");
  detail::bool_flag(*cmd, "-f,--force", options.force, "Do not prompt for confirmation");
  return cmd;
}

bool confirm_stop(const StopOptions& options, Console& console) {
  if (options.force) return true;
  if (!console.stdin_is_tty)
    throw CliError(
        "refusing to stop without confirmation: not a terminal; use `docker offload stop "
        "--force`");
  console.out << "This will stop the offload session and destroy its containers, images and "
                 "volumes. Continue? [y/N] "
              << std::flush;
  std::string answer;
  if (!std::getline(console.in, answer)) {
    console.out << "\n";  // Ctrl-D leaves the cursor after the prompt
    return false;
  }
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  answer.erase(answer.begin(), std::find_if(answer.begin(), answer.end(), not_space));
  answer.erase(std::find_if(answer.rbegin(), answer.rend(), not_space).base(), answer.end());
  std::transform(answer.begin(), answer.end(), answer.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return answer == "y" || answer == "yes";
}

int run_stop(CommandContext& cli, const StopOptions& options) {
  // Like docker's own prompts, "no" is not an error: nothing happens and the exit code is 0.
  if (!confirm_stop(options, cli.console)) return 0;
  v1::Control::Stub& stub = detail::connect(cli);
  v1::StopResponse response = detail::call(cli, stub, &v1::Control::Stub::Stop, {});
  std::string restored = response.restored_context().empty() ? "default"
                                                             : response.restored_context();
  if (response.had_session())
    cli.console.out << "Offload session stopped. ";
  else
    cli.console.out << "No offload session was running. ";
  cli.console.out << "Docker context \"" << restored << "\" is current again.\n";
  return 0;
}

}  // namespace offload::cli
