#include <ostream>

#include "offload/cli/render.h"
#include "verb.h"

namespace offload::cli {

CLI::App* new_version_command(CLI::App& parent, VersionOptions& options) {
  CLI::App* cmd = detail::add_verb(parent, "version", "Show version information");
  detail::bool_flag(*cmd, "--json", options.json, "Format the output as JSON");
  detail::bool_flag(*cmd, "--short", options.short_only, "Print only the plugin version");
  return cmd;
}

int run_version(CommandContext& cli, const VersionOptions& options) {
  auto& out = cli.console.out;
  if (options.short_only) {
    out << OFFLOAD_VERSION << "\n";
    return 0;
  }
  VersionInfo info{OFFLOAD_VERSION, std::nullopt};
  // Asking for versions must not start a daemon; one that does not answer counts as absent.
  if (v1::Control::Stub* stub = cli.daemon.connect_if_running()) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::VersionResponse response;
    grpc::Status status;
    {
      Interrupt::Guard guard(cli.interrupt, context);
      status = stub->Version(&context, {}, &response);
    }
    if (cli.interrupt.requested()) throw CliError("", kExitInterrupted);
    if (status.ok()) info.daemon = response;
  }
  if (options.json) out << version_json(info).dump() << "\n";
  else out << render_version_pretty(info);
  return 0;
}

}  // namespace offload::cli
