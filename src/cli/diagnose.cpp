#include <ostream>

#include "offload/cli/render.h"
#include "offload/common/fs.h"
#include "verb.h"

namespace offload::cli {
namespace {

// Only the CLI sees the environment the docker CLI runs in; the daemon's would say nothing.
v1::Check environment_check(const Environment& env, const StatePaths& paths) {
  v1::Check check;
  check.set_name("DOCKER_HOST/DOCKER_CONTEXT");
  const std::string ours = "unix://" + paths.docker_socket.string();
  std::vector<std::string> overrides, unset;
  if (env.docker_host && *env.docker_host != ours) {
    overrides.push_back("DOCKER_HOST=" + *env.docker_host);
    unset.push_back("DOCKER_HOST");
  }
  if (env.docker_context && *env.docker_context != "docker-offload") {
    overrides.push_back("DOCKER_CONTEXT=" + *env.docker_context);
    unset.push_back("DOCKER_CONTEXT");
  }
  if (overrides.empty()) {
    check.set_ok(true);
    if (env.docker_host)
      check.set_detail("DOCKER_HOST points at the offload session");
    else if (env.docker_context)
      check.set_detail("DOCKER_CONTEXT=docker-offload");
    else
      check.set_detail("neither is set");
    return check;
  }
  std::string detail, fix = "unset";
  for (std::size_t i = 0; i < overrides.size(); ++i) {
    detail += (i ? " and " : "") + overrides[i];
    fix += " " + unset[i];
  }
  check.set_ok(false);
  check.set_detail(detail + " in this shell " + (overrides.size() > 1 ? "override" : "overrides") +
                   " the docker-offload context");
  check.set_fix(fix);
  return check;
}

v1::Check plugin_check(const Environment& env) {
  v1::Check check;
  check.set_name("plugin");
  check.set_ok(true);
  std::string detail = std::string("docker-offload ") + OFFLOAD_VERSION;
  if (!env.program.empty()) detail += " at " + display_path(env.program);
  check.set_detail(detail);
  return check;
}

v1::Check daemon_failed(const std::string& detail, const std::string& fix) {
  v1::Check check;
  check.set_name("daemon");
  check.set_ok(false);
  check.set_detail(detail);
  check.set_fix(fix);
  return check;
}

}  // namespace

CLI::App* new_diagnose_command(CLI::App& parent, DiagnoseOptions& options) {
  CLI::App* cmd = detail::add_verb(parent, "diagnose",
                                   "Check everything between docker and the session engine");
  detail::format_flag(*cmd, "--format", options.format);
  return cmd;
}

int run_diagnose(CommandContext& cli, const DiagnoseOptions& options) {
  v1::DiagnoseResponse report;
  // A daemon that cannot be reached is the first finding, not the end of the report.
  try {
    v1::Control::Stub& stub = detail::connect(cli);
    grpc::ClientContext context;
    grpc::Status status;
    {
      Interrupt::Guard guard(cli.interrupt, context);
      status = stub.Diagnose(&context, {}, &report);
    }
    if (cli.interrupt.requested()) throw CliError("", kExitInterrupted);
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED)
      *report.add_checks() = daemon_failed(
          "the running offloadd is older than this docker-offload and cannot diagnose",
          "stop offloadd (it starts again with the next command) and run this again");
    else if (!status.ok())
      *report.add_checks() = daemon_failed(cli.daemon.error(status).what(),
                                           "see " + display_path(cli.daemon.paths().log_file));
  } catch (const CliError& e) {
    if (e.exit_code() == kExitInterrupted) throw;
    *report.add_checks() = daemon_failed(e.what(), "see " + display_path(cli.daemon.daemon_log()));
  }
  *report.add_checks() = environment_check(cli.env, cli.daemon.paths());
  *report.add_checks() = plugin_check(cli.env);

  if (options.format == "json")
    cli.console.out << diagnose_json(report).dump() << "\n";
  else
    cli.console.out << render_diagnose_pretty(report);
  for (const auto& c : report.checks())
    if (!c.ok()) return 1;
  return 0;
}

}  // namespace offload::cli
