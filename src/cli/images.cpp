#include <ostream>

#include "offload/cli/render.h"
#include "verb.h"

namespace offload::cli {

CLI::App* new_images_command(CLI::App& parent, ImagesOptions& options) {
  CLI::App* cmd = detail::add_verb(parent, "images", "List images in the offload session");
  detail::format_flag(*cmd, "--format", options.format);
  detail::bool_flag(*cmd, "-q,--quiet", options.quiet, "Only show image IDs");
  return cmd;
}

int run_images(CommandContext& cli, const ImagesOptions& options) {
  v1::Control::Stub& stub = detail::connect(cli);
  auto list = detail::call(cli, stub, &v1::Control::Stub::ListImages, {});
  auto& out = cli.console.out;
  if (options.quiet) out << render_image_ids(list);
  else if (options.format == "json") out << images_json(list).dump() << "\n";
  else out << render_images_table(list, cli.now());
  return 0;
}

}  // namespace offload::cli
