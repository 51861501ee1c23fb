#include "offload/cli/cli.h"

#include <cstdlib>
#include <ostream>
#include <set>

#include <nlohmann/json.hpp>

#include "offload/cli/commands.h"
#include "offload/cli/complete.h"
#include "offload/cli/daemon_client.h"
#include "offload/cli/interrupt.h"
#include "offload/cli/render.h"
#include "offload/common/duration.h"
#include "offload/common/paths.h"
#include "verb.h"

namespace offload::cli {
namespace {

std::optional<std::string> env_value(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

// The docker CLI's global flags that take a value, and those that do not.
const std::set<std::string> kGlobalValueFlags = {
    "--config", "-c", "--context", "-H", "--host", "-l", "--log-level",
    "--tlscacert", "--tlscert", "--tlskey"};
const std::set<std::string> kGlobalBoolFlags = {"-D", "--debug", "--tls", "--tlsverify"};

// docker 28's usage errors (cobra + docker/cli's FlagErrorFunc): the complaint, the command's
// usage line, and where its help is. Flag errors exit 125 (docker's StatusError for them);
// argument and command errors exit 1, as docker's own commands do.
std::string usage_error(const std::string& message, const CLI::App& cmd, const std::string& path) {
  return message + "\n\n" + render_usage_line(cmd, path) + "\n\nRun '" + path +
         " --help' for more information\n";
}

// pflag's unknown-flag wording: long flags by name, short ones by letter.
std::string unknown_flag(const std::string& arg) {
  if (arg.rfind("--", 0) == 0) return "unknown flag: " + arg.substr(0, arg.find('='));
  if (arg.size() >= 2) return "unknown shorthand flag: '" + arg.substr(1, 1) + "' in " + arg;
  return "unknown flag: " + arg;
}

std::optional<std::string> check_format(const std::string& value, const std::string& flag) {
  if (value == "pretty" || value == "json") return std::nullopt;
  return "invalid argument \"" + value + "\" for \"" + flag +
         "\" flag: must be \"pretty\" or \"json\"";
}

// The checks CLI11 cannot word like docker. Returns the first complaint.
std::optional<std::string> validate(const CommandLine& line) {
  const std::string& verb = line.verb;
  if (verb == "start" && !line.start.timeout.empty() && !parse_duration(line.start.timeout))
    return "invalid argument \"" + line.start.timeout +
           "\" for \"--timeout\" flag: not a duration (use e.g. 90s, 5m or 1h30m)";
  if (verb == "start" && !line.start.idle_timeout.empty()) {
    auto idle = parse_duration(line.start.idle_timeout);
    if (!idle)
      return "invalid argument \"" + line.start.idle_timeout +
             "\" for \"--idle-timeout\" flag: not a duration (use e.g. 90s, 5m or 1h30m)";
    // 0 in the request means "the configured default", so it cannot also mean "never".
    if (idle->count() <= 0)
      return "invalid argument \"" + line.start.idle_timeout +
             "\" for \"--idle-timeout\" flag: must be longer than zero (to never end an idle "
             "session, set \"idleTimeout\": \"0\" in config.json)";
  }
  if (verb == "status") return check_format(line.status.format, "-f, --format");
  if (verb == "ps") return check_format(line.ps.format, "--format");
  if (verb == "images") return check_format(line.images.format, "--format");
  if (verb == "accounts") return check_format(line.accounts.format, "--format");
  if (verb == "diagnose") return check_format(line.diagnose.format, "--format");
  if (verb == "version" && line.version.json && line.version.short_only)
    return "--json and --short cannot be used together";
  return std::nullopt;
}

}  // namespace

Environment Environment::from_process() {
  Environment env;
  env.docker_config = docker_config_dir();
  env.docker_host = env_value("DOCKER_HOST");
  env.docker_context = env_value("DOCKER_CONTEXT");
  env.plugin_socket = env_value("DOCKER_CLI_PLUGIN_SOCKET");
  std::error_code ec;
  env.program = std::filesystem::read_symlink("/proc/self/exe", ec);
  return env;
}

Invocation preprocess_argv(const std::vector<std::string>& argv,
                           const std::filesystem::path& default_docker_config) {
  Invocation inv;
  inv.docker_config = default_docker_config;
  if (argv.size() >= 2 && argv[1] == "docker-cli-plugin-metadata") {
    inv.metadata = true;
    return inv;
  }
  std::size_t i = 1;
  while (i < argv.size()) {
    const std::string& arg = argv[i];
    std::string name = arg.substr(0, arg.find('='));
    bool has_inline_value = name.size() != arg.size();
    std::optional<std::string> value;
    if (kGlobalValueFlags.count(name)) {
      if (has_inline_value) {
        value = arg.substr(name.size() + 1);
        i += 1;
      } else {
        if (i + 1 < argv.size()) value = argv[i + 1];
        i += 2;
      }
    } else if (arg.size() > 2 && arg[0] == '-' && arg[1] != '-' &&
               kGlobalValueFlags.count(arg.substr(0, 2))) {
      name = arg.substr(0, 2);  // pflag's attached short form: -cNAME
      value = arg.substr(2);
      i += 1;
    } else if (kGlobalBoolFlags.count(name)) {
      i += 1;
    } else {
      break;
    }
    if (name == "--config" && value) inv.docker_config = *value;
  }
  // `docker help offload [VERB]` reaches us as "help offload ...": the same as --help.
  if (i + 1 < argv.size() && argv[i] == "help" && argv[i + 1] == "offload") {
    inv.args.assign(argv.begin() + static_cast<std::ptrdiff_t>(i + 2), argv.end());
    inv.args.push_back("--help");
    return inv;
  }
  if (i < argv.size() && argv[i] == "offload") ++i;
  inv.args.assign(argv.begin() + static_cast<std::ptrdiff_t>(std::min(i, argv.size())), argv.end());
  return inv;
}

std::string plugin_metadata_json() {
  // ordered_json keeps the keys in the order the docker CLI's own plugins print them.
  nlohmann::ordered_json meta{
      {"SchemaVersion", "0.1.0"},
      {"Vendor", "docker-offload project"},
      {"Version", OFFLOAD_VERSION},
      {"ShortDescription", "Run containers and builds on an ephemeral remote engine"},
      {"URL", "https://github.com/docker-offload/docker-offload"},
  };
  return meta.dump();
}

std::unique_ptr<CLI::App> new_offload_command(CommandLine& line) {
  auto app = std::make_unique<CLI::App>(
      "Run containers and builds on an ephemeral remote engine", "offload");
  app->set_help_flag("-h,--help", "Print usage");
  app->allow_extras();
  app->require_subcommand(0, 1);
  new_accounts_command(*app, line.accounts);
  new_diagnose_command(*app, line.diagnose);
  new_images_command(*app, line.images);
  new_ps_command(*app, line.ps);
  new_start_command(*app, line.start);
  new_status_command(*app, line.status);
  new_stop_command(*app, line.stop);
  new_version_command(*app, line.version);
  return app;
}

std::optional<int> parse_command_line(const std::vector<std::string>& args, CommandLine& line,
                                      std::ostream& out, std::ostream& err) {
  const std::string root_path = "docker offload";
  auto app = new_offload_command(line);
  auto selected = [&]() -> CLI::App* {
    auto subs = app->get_subcommands();
    return subs.empty() ? nullptr : subs.front();
  };
  // A verb's own subcommand (`accounts add`), or nullptr.
  auto selected_sub = [&]() -> CLI::App* {
    CLI::App* cmd = selected();
    if (!cmd) return nullptr;
    auto subs = cmd->get_subcommands();
    return subs.empty() ? nullptr : subs.front();
  };
  auto path_of = [&](CLI::App* cmd) {
    if (!cmd) return root_path;
    std::string path = cmd->get_name();
    for (CLI::App* p = cmd->get_parent(); p && p != app.get(); p = p->get_parent())
      path = p->get_name() + " " + path;
    return root_path + " " + path;
  };
  auto deepest = [&]() { return selected_sub() ? selected_sub() : selected(); };

  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 pops from the back
  auto flag_error = [&](const std::string& message, CLI::App* cmd) {
    err << usage_error(message, cmd ? *cmd : *app, path_of(cmd));
    return kExitUsage;
  };
  auto argument_error = [&](const std::string& message, CLI::App* cmd) {
    err << usage_error(message, cmd ? *cmd : *app, path_of(cmd));
    return 1;
  };
  try {
    app->parse(reversed);
  } catch (const CLI::CallForHelp&) {
    CLI::App* cmd = deepest();
    out << render_help(cmd ? *cmd : *app, path_of(cmd));
    return 0;
  } catch (const CLI::ArgumentMismatch& e) {
    // CLI11 words it "--format: 1 required string missing"; pflag says which flag lacks a value.
    std::string what = e.what();
    return flag_error("flag needs an argument: " + what.substr(0, what.find(':')), deepest());
  } catch (const CLI::ParseError& e) {
    return flag_error(e.what(), deepest());
  }

  CLI::App* cmd = selected();
  std::vector<std::string> root_extra = app->remaining();
  if (!root_extra.empty()) {
    const std::string& first = root_extra.front();
    if (!first.empty() && first[0] == '-') return flag_error(unknown_flag(first), nullptr);
    return argument_error("docker: unknown command: " + root_path + " " + first, nullptr);
  }
  if (!cmd) {
    out << render_help(*app, root_path);
    return 0;
  }
  std::vector<std::string> extra = cmd->remaining();
  if (CLI::App* sub = selected_sub(); sub && extra.empty()) {
    cmd = sub;
    extra = sub->remaining();
  }
  if (!extra.empty()) {
    const std::string& first = extra.front();
    if (!first.empty() && first[0] == '-' && first != "-")
      return flag_error(unknown_flag(first), cmd);
    // A verb with subcommands of its own (`accounts`) names the stray word as docker does.
    if (!cmd->get_subcommands({}).empty())
      return argument_error("docker: unknown command: " + path_of(cmd) + " " + first, cmd);
    return argument_error("docker: '" + path_of(cmd) + "' accepts no arguments", cmd);
  }
  line.verb = selected()->get_name();
  if (line.verb == "accounts" && !line.accounts.action.empty()) {
    // docker/cli's ExactArgs wording.
    const std::size_t wanted = line.accounts.action == "add" ? 2 : 1;
    if (line.accounts.args.size() != wanted)
      return argument_error("docker: '" + path_of(cmd) + "' requires " + std::to_string(wanted) +
                                (wanted == 1 ? " argument" : " arguments"),
                            cmd);
  }
  if (auto complaint = validate(line)) return flag_error(*complaint, cmd);
  return std::nullopt;
}

void detail::print_notices(CommandContext& cli, v1::Control::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::TakeNoticesResponse response;
  grpc::Status status;
  {
    Interrupt::Guard guard(cli.interrupt, context);
    status = stub.TakeNotices(&context, {}, &response);
  }
  if (cli.interrupt.requested()) throw CliError("", kExitInterrupted);
  if (!status.ok()) return;
  for (const auto& notice : response.notices()) cli.console.err << "WARNING: " << notice << "\n";
  cli.console.err.flush();
}

int run_command(const CommandLine& line, CommandContext& cli) {
  try {
    const std::string& verb = line.verb;
    if (verb == "start") return run_start(cli, line.start);
    if (verb == "stop") return run_stop(cli, line.stop);
    if (verb == "status") return run_status(cli, line.status);
    if (verb == "ps") return run_ps(cli, line.ps);
    if (verb == "images") return run_images(cli, line.images);
    if (verb == "version") return run_version(cli, line.version);
    if (verb == "accounts") return run_accounts(cli, line.accounts);
    if (verb == "diagnose") return run_diagnose(cli, line.diagnose);
    throw CliError("docker: '" + verb + "' is not a docker offload command.");
  } catch (const CliError& e) {
    cli.console.out.flush();
    if (*e.what()) cli.console.err << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    cli.console.out.flush();
    cli.console.err << e.what() << "\n";
    return 1;
  }
}

int run(const std::vector<std::string>& argv, Console& console, const Environment& env) {
  // Shell completion: answered from the command tree and the config file alone, before anything
  // that could start offloadd or wait on the network, since it runs at every <TAB>.
  if (argv.size() >= 2 && (argv[1] == "__complete" || argv[1] == "__completeNoDesc")) {
    CompletionSources sources;
    sources.accounts = [&] { return configured_accounts(env.docker_config); };
    Completions completions = complete_command_line(
        std::vector<std::string>(argv.begin() + 2, argv.end()), sources);
    console.out << render_completions(completions, argv[1] == "__complete");
    console.err << "Completion ended with directive: " << describe_directive(completions.directive)
                << "\n";
    return 0;
  }
  Invocation inv = preprocess_argv(argv, env.docker_config);
  if (inv.metadata) {
    console.out << plugin_metadata_json() << "\n";
    return 0;
  }
  CommandLine line;
  if (auto code = parse_command_line(inv.args, line, console.out, console.err)) return *code;

  Environment effective = env;
  effective.docker_config = inv.docker_config;
  Interrupt interrupt;
  std::optional<PluginSocketWatcher> watcher;
  if (env.plugin_socket) watcher.emplace(*env.plugin_socket, interrupt);
  DaemonClient::Options daemon_options;
  daemon_options.docker_config = inv.docker_config;
  daemon_options.notice = [&console](const std::string& line) { console.err << line << "\n"; };
  DaemonClient daemon(std::move(daemon_options));
  CommandContext cli{console, effective, daemon, interrupt};
  return run_command(line, cli);
}

}  // namespace offload::cli
