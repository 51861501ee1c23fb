#include <ostream>

#include "offload/cli/render.h"
#include "verb.h"

namespace offload::cli {

CLI::App* new_accounts_command(CLI::App& parent, AccountsOptions& options) {
  CLI::App* cmd =
      detail::add_verb(parent, "accounts", "List the accounts you can start sessions with");
  detail::format_flag(*cmd, "--format", options.format);
  return cmd;
}

int run_accounts(CommandContext& cli, const AccountsOptions& options) {
  v1::Control::Stub& stub = detail::connect(cli);
  auto list = detail::call(cli, stub, &v1::Control::Stub::ListAccounts, {});
  if (options.format == "json") cli.console.out << accounts_json(list).dump() << "\n";
  else cli.console.out << render_accounts_table(list);
  return 0;
}

}  // namespace offload::cli
