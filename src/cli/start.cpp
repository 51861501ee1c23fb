#include <ostream>

#include "offload/common/duration.h"
#include "verb.h"

namespace offload::cli {

CLI::App* new_start_command(CLI::App& parent, StartOptions& options) {
  CLI::App* cmd = detail::add_verb(parent, "start", "Start an offload session");
  detail::value_flag(*cmd, "-a,--account", options.account, "string",
                     "Account to start the session with");
  detail::value_flag(*cmd, "--timeout", options.timeout, "duration",
                     "How long provisioning may take, e.g. 90s or 5m");
  detail::value_flag(*cmd, "--idle-timeout", options.idle_timeout, "duration",
                     "End the session after this long with nothing running, e.g. 2m");
  return cmd;
}

std::string environment_override_warning(const Environment& env) {
  // The docker CLI prefers DOCKER_HOST, then DOCKER_CONTEXT, over the current context.
  if (env.docker_host)
    return "WARNING: DOCKER_HOST is set to \"" + *env.docker_host +
           "\" and overrides the docker-offload context in this shell; unset it to use the "
           "offload session";
  if (env.docker_context && *env.docker_context != "docker-offload")
    return "WARNING: DOCKER_CONTEXT is set to \"" + *env.docker_context +
           "\" and overrides the docker-offload context in this shell; unset it to use the "
           "offload session";
  return "";
}

int run_start(CommandContext& cli, const StartOptions& options) {
  v1::StartRequest request;
  request.set_account(options.account);
  if (!options.timeout.empty()) {
    auto timeout = parse_duration(options.timeout);
    if (!timeout) throw CliError("invalid --timeout \"" + options.timeout + "\"");
    request.set_timeout_ms(timeout->count());
  }
  if (!options.idle_timeout.empty()) {
    auto idle = parse_duration(options.idle_timeout);
    if (!idle || idle->count() <= 0)
      throw CliError("invalid --idle-timeout \"" + options.idle_timeout + "\"");
    request.set_idle_timeout_ms(idle->count());
  }
  v1::Control::Stub& stub = detail::connect(cli);
  auto& out = cli.console.out;

  // Name the account even when the user did not, so the first line says what is happening.
  std::string account = options.account;
  if (account.empty()) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListAccountsResponse accounts;
    if (stub.ListAccounts(&context, {}, &accounts).ok())
      for (const auto& a : accounts.accounts())
        if (a.is_default()) account = a.name();
  }
  if (account.empty()) out << "Starting offload session...\n";
  else out << "Starting offload session on account \"" << account << "\"...\n";
  out.flush();

  v1::StartResponse response = detail::call(cli, stub, &v1::Control::Stub::Start, request);
  std::string context = response.status().context().empty() ? "docker-offload"
                                                            : response.status().context();
  std::string previous = response.previous_context().empty() ? "default"
                                                             : response.previous_context();
  out << "Offload session started. Docker context \"" << context << "\" is now current";
  if (previous != context) out << " (was \"" << previous << "\")";
  out << ".\n";
  out.flush();

  std::string warning = environment_override_warning(cli.env);
  if (!warning.empty()) cli.console.err << warning << "\n";
  return 0;
}

}  // namespace offload::cli
