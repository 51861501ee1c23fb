#include <ostream>

#include "offload/cli/render.h"
#include "verb.h"

namespace offload::cli {

CLI::App* new_ps_command(CLI::App& parent, PsOptions& options) {
  CLI::App* cmd = detail::add_verb(parent, "ps", "List containers in the offload session");
  detail::bool_flag(*cmd, "-a,--all", options.all,
                    "Show all containers (default shows just running)");
  detail::format_flag(*cmd, "--format", options.format);
  detail::bool_flag(*cmd, "-q,--quiet", options.quiet, "Only display container IDs");
  return cmd;
}

int run_ps(CommandContext& cli, const PsOptions& options) {
  v1::ListContainersRequest request;
  request.set_all(options.all);
  v1::Control::Stub& stub = detail::connect(cli);
  auto list = detail::call(cli, stub, &v1::Control::Stub::ListContainers, request);
  auto& out = cli.console.out;
  if (options.quiet) out << render_container_ids(list);
  else if (options.format == "json") out << containers_json(list).dump() << "\n";
  else out << render_containers_table(list, cli.now());
  return 0;
}

}  // namespace offload::cli
