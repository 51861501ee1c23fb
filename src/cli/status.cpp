#include <ostream>

#include "offload/cli/render.h"
#include "verb.h"

namespace offload::cli {

CLI::App* new_status_command(CLI::App& parent, StatusOptions& options) {
  CLI::App* cmd = detail::add_verb(parent, "status", "Show the offload session status");
  detail::format_flag(*cmd, "-f,--format", options.format);
  detail::bool_flag(*cmd, "-w,--watch", options.watch,
                    "Watch the status and show it again on every change");
  return cmd;
}

int run_status(CommandContext& cli, const StatusOptions& options) {
  const bool as_json = options.format == "json";
  v1::Control::Stub& stub = detail::connect(cli);
  auto& out = cli.console.out;
  if (!options.watch) {
    v1::SessionStatus status = detail::call(cli, stub, &v1::Control::Stub::Status, {});
    out << (as_json ? status_json(status).dump() + "\n" : render_status_pretty(status, cli.now()));
    return 0;
  }

  grpc::ClientContext context;
  grpc::Status result;
  {
    Interrupt::Guard guard(cli.interrupt, context);
    auto reader = stub.WatchStatus(&context, {});
    v1::SessionStatus status;
    bool first = true;
    while (reader->Read(&status)) {
      out << render_status_frame(status, as_json, cli.console.stdout_is_tty, first, cli.now());
      out.flush();
      first = false;
    }
    result = reader->Finish();
  }
  if (cli.interrupt.requested()) throw CliError("", kExitInterrupted);
  if (!result.ok()) throw cli.daemon.error(result);
  return 0;
}

}  // namespace offload::cli
