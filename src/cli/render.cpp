// The verbs' output other than status (render_status.cpp): ps, images, accounts, version,
// diagnose and help, composed from the primitives in docker_format.cpp.
#include "offload/cli/render.h"

#include <algorithm>
#include <sstream>

#include "offload/common/text.h"

namespace offload::cli {
namespace {

using json = nlohmann::ordered_json;

std::string since(std::int64_t unix_seconds, TimePoint now) {
  auto then = std::chrono::system_clock::time_point(std::chrono::seconds(unix_seconds));
  auto d = std::chrono::duration_cast<std::chrono::seconds>(now - then);
  if (d.count() < 0) d = std::chrono::seconds(0);
  return docker_human_duration(d) + " ago";
}

}  // namespace

// --- ps ---

std::string render_containers_table(const v1::ListContainersResponse& list, TimePoint now) {
  std::vector<std::vector<std::string>> rows{
      {"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"}};
  for (const auto& c : list.containers()) {
    // Like docker ps: the first name that is not a link alias (those contain a '/').
    std::string name;
    for (const auto& n : c.names()) {
      if (n.find('/') == std::string::npos) {
        name = n;
        break;
      }
    }
    if (name.empty() && !c.names().empty()) name = join(c.names(), ",");
    rows.push_back({short_id(c.id()), c.image(), go_quote(ellipsis(c.command(), 20)),
                    since(c.created_unix(), now), c.status(), format_ports(c.ports()), name});
  }
  return render_table(rows);
}

std::string render_container_ids(const v1::ListContainersResponse& list) {
  std::string out;
  for (const auto& c : list.containers()) out += short_id(c.id()) + "\n";
  return out;
}

json containers_json(const v1::ListContainersResponse& list) {
  json out = json::array();
  for (const auto& c : list.containers()) {
    json ports = json::array();
    for (const auto& p : c.ports())
      ports.push_back({{"hostIp", p.host_ip()},
                       {"hostPort", p.host_port()},
                       {"containerPort", p.container_port()},
                       {"protocol", p.protocol()}});
    out.push_back({{"id", c.id()},
                   {"names", std::vector<std::string>(c.names().begin(), c.names().end())},
                   {"image", c.image()},
                   {"command", c.command()},
                   {"created", format_rfc3339(c.created_unix() * 1000)},
                   {"state", c.state()},
                   {"status", c.status()},
                   {"ports", ports}});
  }
  return out;
}

// --- images ---

std::string render_images_table(const v1::ListImagesResponse& list, TimePoint now) {
  std::vector<std::vector<std::string>> rows{{"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"}};
  for (const auto& image : list.images()) {
    std::vector<std::pair<std::string, std::string>> refs;
    for (const auto& ref : image.repo_tags()) {
      // The tag follows the last ':' after the last '/', so "host:5000/app" has no tag.
      auto slash = ref.rfind('/');
      auto colon = ref.rfind(':');
      if (colon != std::string::npos && (slash == std::string::npos || colon > slash))
        refs.emplace_back(ref.substr(0, colon), ref.substr(colon + 1));
      else
        refs.emplace_back(ref, "<none>");
    }
    if (refs.empty()) refs.emplace_back("<none>", "<none>");
    for (const auto& [repo, tag] : refs)
      rows.push_back({repo, tag, short_id(image.id()), since(image.created_unix(), now),
                      docker_human_size(image.size_bytes())});
  }
  return render_table(rows);
}

std::string render_image_ids(const v1::ListImagesResponse& list) {
  std::string out;
  for (const auto& image : list.images()) out += short_id(image.id()) + "\n";
  return out;
}

json images_json(const v1::ListImagesResponse& list) {
  json out = json::array();
  for (const auto& image : list.images())
    out.push_back(
        {{"id", image.id()},
         {"repoTags", std::vector<std::string>(image.repo_tags().begin(), image.repo_tags().end())},
         {"created", format_rfc3339(image.created_unix() * 1000)},
         {"size", image.size_bytes()}});
  return out;
}

// --- accounts ---

std::string render_accounts_table(const v1::ListAccountsResponse& list) {
  std::vector<std::vector<std::string>> rows{
      {"NAME", "TYPE", "DEFAULT", "ADDRESS", "DESCRIPTION"}};
  for (const auto& a : list.accounts())
    rows.push_back({a.name(), a.type(), a.is_default() ? "*" : "", a.address(), a.description()});
  return render_table(rows);
}

json accounts_json(const v1::ListAccountsResponse& list) {
  json out = json::array();
  for (const auto& a : list.accounts())
    out.push_back({{"name", a.name()},
                   {"type", a.type()},
                   {"default", a.is_default()},
                   {"address", a.address()},
                   {"description", a.description()}});
  return out;
}

// --- version ---

std::string render_version_pretty(const VersionInfo& info) {
  std::string out;
  auto line = [&](const char* label, const std::string& value) {
    std::string head = std::string(label) + ":";
    head.resize(17, ' ');
    out += head + value + "\n";
  };
  line("docker-offload", info.plugin);
  if (!info.daemon) {
    line("offloadd", "not running");
    return out;
  }
  line("offloadd", info.daemon->daemon_version());
  if (info.daemon->runner_version().empty()) {
    line("offload-runner", "no session");
    return out;
  }
  line("offload-runner", info.daemon->runner_version());
  if (!info.daemon->engine_version().empty()) {
    std::string engine = "Docker " + info.daemon->engine_version();
    if (!info.daemon->engine_api_version().empty())
      engine += " (API " + info.daemon->engine_api_version() + ")";
    line("Engine", engine);
  }
  return out;
}

json version_json(const VersionInfo& info) {
  json out{{"plugin", info.plugin}, {"daemonRunning", info.daemon.has_value()}};
  out["daemon"] = info.daemon ? info.daemon->daemon_version() : "";
  out["runner"] = info.daemon ? info.daemon->runner_version() : "";
  out["engine"] = info.daemon ? info.daemon->engine_version() : "";
  out["engineApi"] = info.daemon ? info.daemon->engine_api_version() : "";
  return out;
}

// --- diagnose ---

std::string render_diagnose_pretty(const v1::DiagnoseResponse& report) {
  std::string out;
  int failed = 0;
  for (const auto& c : report.checks()) {
    out += (c.ok() ? "\u2714 " : "\u2718 ") + c.name() + ": " + c.detail();
    if (!c.ok()) {
      ++failed;
      if (!c.fix().empty()) out += " \u2014 try: " + c.fix();
    }
    out += "\n";
  }
  const int total = report.checks_size();
  if (failed == 0)
    out += "\nAll " + std::to_string(total) + " checks passed.\n";
  else
    out += "\n" + std::to_string(failed) + " of " + std::to_string(total) + " checks failed.\n";
  return out;
}

json diagnose_json(const v1::DiagnoseResponse& report) {
  json out = json::array();
  for (const auto& c : report.checks())
    out.push_back(
        {{"name", c.name()}, {"ok", c.ok()}, {"detail", c.detail()}, {"fix", c.fix()}});
  return out;
}

// --- help ---

namespace {

std::vector<const CLI::Option*> flag_options(const CLI::App& app) {
  std::vector<const CLI::Option*> options;
  for (const CLI::Option* opt : app.get_options()) {
    if (opt == app.get_help_ptr() || !opt->nonpositional()) continue;
    options.push_back(opt);
  }
  return options;
}

}  // namespace

std::string render_usage_line(const CLI::App& app, const std::string& command_path) {
  const bool has_commands = !app.get_subcommands({}).empty();
  const bool has_options = !flag_options(app).empty();
  std::string out = "Usage:  " + command_path;
  // A verb that does something of its own and has subcommands too (`accounts`, `accounts add`).
  if (has_commands && has_options) out += " [OPTIONS] [COMMAND]";
  else if (has_commands) out += " COMMAND";
  else if (has_options) out += " [OPTIONS]";
  for (const CLI::Option* opt : app.get_options())
    if (!opt->nonpositional() && opt != app.get_help_ptr()) out += " " + opt->get_type_name();
  return out;
}

std::string render_help(const CLI::App& app, const std::string& command_path) {
  std::vector<const CLI::App*> commands = app.get_subcommands({});
  std::vector<const CLI::Option*> options = flag_options(app);

  std::ostringstream out;
  out << render_usage_line(app, command_path);
  out << "\n\n" << app.get_description() << "\n";

  if (!options.empty()) {
    // pflag's layout: "  -f, --format string" or "      --timeout duration", descriptions
    // in one column three spaces after the longest.
    auto long_name = [](const CLI::Option* o) {
      return o->get_lnames().empty() ? std::string() : o->get_lnames().front();
    };
    std::sort(options.begin(), options.end(),
              [&](auto* a, auto* b) { return long_name(a) < long_name(b); });
    std::vector<std::pair<std::string, std::string>> lines;
    std::size_t width = 0;
    for (const CLI::Option* o : options) {
      std::string left = o->get_snames().empty() ? "      " : "  -" + o->get_snames().front() + ", ";
      left += "--" + long_name(o);
      if (o->get_items_expected_max() > 0) left += " " + o->get_type_name();
      width = std::max(width, left.size());
      lines.emplace_back(left, o->get_description());
    }
    out << "\nOptions:\n";
    for (auto& [left, desc] : lines)
      out << left << std::string(width - left.size() + 3, ' ') << desc << "\n";
  }

  if (!commands.empty()) {
    std::sort(commands.begin(), commands.end(),
              [](auto* a, auto* b) { return a->get_name() < b->get_name(); });
    out << "\nCommands:\n";
    for (const CLI::App* c : commands) {
      std::string name = c->get_name();
      name.resize(std::max<std::size_t>(name.size() + 1, 12), ' ');
      out << "  " << name << c->get_description() << "\n";
    }
    out << "\nRun '" << command_path << " COMMAND --help' for more information on a command.\n";
  }
  return out.str();
}

}  // namespace offload::cli
