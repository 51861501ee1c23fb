// What the verbs share: flag declaration in docker's style and one way to make a call.
#pragma once

#include <string>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include "offload/cli/commands.h"
#include "offload/cli/daemon_client.h"
#include "offload/cli/interrupt.h"

namespace offload::cli::detail {

// A verb: unknown flags and stray arguments are left for parse_command_line to report in
// docker's wording instead of CLI11's.
inline CLI::App* add_verb(CLI::App& parent, const std::string& name, const std::string& summary) {
  CLI::App* cmd = parent.add_subcommand(name, summary);
  cmd->allow_extras();
  return cmd;
}

// A flag with a value. `type` is the value's name in help ("string", "duration"); `usage`
// carries its own "(default ...)" so help shows exactly what we write.
inline CLI::Option* value_flag(CLI::App& cmd, const std::string& names, std::string& target,
                               const std::string& type, const std::string& usage) {
  return cmd.add_option(names, target, usage)
      ->type_name(type)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

inline CLI::Option* bool_flag(CLI::App& cmd, const std::string& names, bool& target,
                              const std::string& usage) {
  return cmd.add_flag(names, target, usage)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

inline CLI::Option* format_flag(CLI::App& cmd, const std::string& names, std::string& target) {
  return value_flag(cmd, names, target, "string",
                    "Format the output: pretty or json (default \"pretty\")");
}

// Prints the daemon's pending notices on stderr as "WARNING: <notice>", once each. Any failure
// is ignored: a notice is never worth failing the command the user asked for (and an older
// offloadd has no notices).
void print_notices(CommandContext& cli, v1::Control::Stub& stub);

// The daemon, started if need be, with its notices shown first: what every verb but `version`
// does before its own work.
inline v1::Control::Stub& connect(CommandContext& cli) {
  v1::Control::Stub& stub = cli.daemon.connect();
  print_notices(cli, stub);
  return stub;
}

// One unary call to offloadd that Ctrl-C cancels. Throws CliError with the user-facing line.
template <class Request, class Response>
Response call(CommandContext& cli, v1::Control::Stub& stub,
              grpc::Status (v1::Control::Stub::*method)(grpc::ClientContext*, const Request&,
                                                        Response*),
              const Request& request) {
  grpc::ClientContext context;
  Response response;
  grpc::Status status;
  {
    Interrupt::Guard guard(cli.interrupt, context);
    status = (stub.*method)(&context, request, &response);
  }
  if (cli.interrupt.requested()) throw CliError("", kExitInterrupted);
  if (!status.ok()) throw cli.daemon.error(status);
  return response;
}

}  // namespace offload::cli::detail
