#include <ostream>

#include <chrono>

#include "offload/cli/docker_format.h"
#include "offload/common/duration.h"
#include "preload.h"
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
  cmd->add_option("--preload", options.preload,
                  "Images to copy into the session from the engine used before")
      ->type_name("list")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
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

namespace {

// `docker save` from the engine used before the switch, `docker load` into the session, with the
// bytes copied so far (a line a second, or one line rewritten on a terminal).
void preload(CommandContext& cli, const std::vector<std::string>& images,
             const v1::StartResponse& started) {
  auto& out = cli.console.out;
  const std::string from = preload_source(cli.env, started.previous_context());
  std::string names;
  for (const auto& image : images) names += (names.empty() ? "" : ", ") + image;
  out << "Preloading " << names << " from " << from << "...\n";
  out.flush();
  auto last = std::chrono::steady_clock::now();
  std::uint64_t total = 0;
  auto said = copy_images(images, from, started.status().docker_host(), [&](std::uint64_t n) {
    total = n;
    auto now = std::chrono::steady_clock::now();
    if (now - last < std::chrono::seconds(1)) return;
    last = now;
    out << (cli.console.stdout_is_tty ? "\r" : "") << "  copied "
        << docker_human_size(static_cast<std::int64_t>(n)) << (cli.console.stdout_is_tty ? "" : "\n");
    out.flush();
  });
  out << (cli.console.stdout_is_tty ? "\r" : "") << "  copied "
      << docker_human_size(static_cast<std::int64_t>(total)) << "\n" << said;
  out.flush();
}

}  // namespace

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
  if (!options.preload.empty()) preload(cli, options.preload, response);
  return 0;
}

}  // namespace offload::cli
