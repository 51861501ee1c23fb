#include <algorithm>
#include <ostream>

#include <nlohmann/json.hpp>

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

bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  return std::filesystem::equivalent(a, b, ec) && !ec;
}

// The plugin docker runs for `docker offload` must be this one: an older copy earlier in
// docker's search order (a hand-installed ~/.docker/cli-plugins/docker-offload over the package
// one) answers every command instead, with its own bugs and its own offloadd.
v1::Check plugin_check(const Environment& env) {
  v1::Check check;
  check.set_name("plugin");
  std::string ours = std::string("docker-offload ") + OFFLOAD_VERSION;
  if (!env.program.empty()) ours += " at " + display_path(env.program);
  const auto candidates = docker_plugin_candidates(env.docker_config, env.system_plugin_dirs);
  const auto user_dir = env.docker_config / "cli-plugins";
  if (env.program.empty()) {  // nothing to compare with: say what docker would run
    check.set_ok(true);
    check.set_detail(ours);
    return check;
  }
  if (candidates.empty()) {
    check.set_ok(false);
    check.set_detail(ours + ", but the docker CLI finds no docker-offload in its plugin "
                            "directories, so `docker offload` does not run this one");
    check.set_fix("ln -s " + display_path(env.program) + " " +
                  display_path(user_dir / "docker-offload"));
    return check;
  }
  const auto& first = candidates.front();
  if (!same_file(first, env.program)) {
    const bool found = std::any_of(candidates.begin(), candidates.end(),
                                   [&](const auto& c) { return same_file(c, env.program); });
    check.set_ok(false);
    check.set_detail(ours + ", but `docker offload` runs " + display_path(first) + ", which " +
                     (found ? "shadows this one (docker looks there first)"
                            : "is another docker-offload (this one is not where docker looks)"));
    check.set_fix("remove " + display_path(first) + " if it is an old copy, or run " +
                  display_path(first) + " diagnose");
    return check;
  }
  std::vector<std::string> shadowed;
  for (std::size_t i = 1; i < candidates.size(); ++i)
    if (!same_file(candidates[i], env.program)) shadowed.push_back(display_path(candidates[i]));
  check.set_ok(true);
  std::string detail = ours;
  if (!shadowed.empty()) {
    detail += " (it shadows ";
    for (std::size_t i = 0; i < shadowed.size(); ++i) detail += (i ? ", " : "") + shadowed[i];
    detail += ", which docker never runs)";
  }
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

std::vector<std::filesystem::path> docker_plugin_candidates(
    const std::filesystem::path& docker_config,
    const std::vector<std::filesystem::path>& system_dirs) {
  namespace fs = std::filesystem;
  std::vector<fs::path> dirs;
  std::string text;
  if (!read_file(docker_config / "config.json", text)) {
    // docker reads the same file; one it cannot parse fails docker before any plugin runs.
    auto config = nlohmann::json::parse(text, nullptr, false);
    if (config.is_object())
      if (auto it = config.find("cliPluginsExtraDirs"); it != config.end() && it->is_array())
        for (const auto& dir : *it)
          if (dir.is_string()) dirs.emplace_back(dir.get<std::string>());
  }
  dirs.push_back(docker_config / "cli-plugins");
  dirs.insert(dirs.end(), system_dirs.begin(), system_dirs.end());
  std::vector<fs::path> found;
  for (const auto& dir : dirs) {
    std::error_code ec;
    fs::path candidate = dir / "docker-offload";
    if (fs::exists(candidate, ec) && !fs::is_directory(candidate, ec)) found.push_back(candidate);
  }
  return found;
}

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
