// `docker offload` completion: the answers cobra would give if the plugin were written with
// cobra, computed from the same CLI11 command tree the verbs parse with, so a new verb or flag
// completes without a change here. Only flag values and positional arguments need this file to
// know them by name.
#include "offload/cli/complete.h"

#include <algorithm>
#include <set>

#include "offload/cli/commands.h"
#include "offload/common/paths.h"
#include "offload/config/config.h"

namespace offload::cli {
namespace {

using Candidates = std::vector<std::pair<std::string, std::string>>;

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// CLI11 gives flags expected(0) and keeps their type size, so the product tells them apart.
bool takes_value(const CLI::Option& opt) { return opt.get_items_expected_min() > 0; }

// The flag `word` names on `cmd` ("--format", "-f", "--format=json"), or nullptr.
const CLI::Option* find_flag(const CLI::App& cmd, const std::string& word) {
  std::string name = word.substr(0, word.find('='));
  for (const CLI::Option* opt : cmd.get_options()) {
    if (!opt->nonpositional()) continue;
    if (starts_with(name, "--")) {
      const auto& l = opt->get_lnames();
      if (std::find(l.begin(), l.end(), name.substr(2)) != l.end()) return opt;
    } else if (name.size() >= 2) {
      // In "-qf=json" the value belongs to the letter before the '='.
      const auto& s = opt->get_snames();
      if (std::find(s.begin(), s.end(), name.substr(name.size() - 1)) != s.end()) return opt;
    }
  }
  return nullptr;
}

std::vector<CLI::App*> subcommands_of(CLI::App& cmd) {
  auto subs = cmd.get_subcommands([](CLI::App*) { return true; });
  std::sort(subs.begin(), subs.end(),
            [](CLI::App* a, CLI::App* b) { return a->get_name() < b->get_name(); });
  return subs;
}

CLI::App* find_subcommand(CLI::App& cmd, const std::string& name) {
  for (CLI::App* sub : subcommands_of(cmd))
    if (sub->get_name() == name) return sub;
  return nullptr;
}

std::string long_name(const CLI::Option& opt) {
  return opt.get_lnames().empty() ? opt.get_snames().front() : opt.get_lnames().front();
}

// cobra's flag-name completion: every flag not given yet, sorted by name, the long form then
// the shorthand, each with its usage.
Completions complete_flag_names(const CLI::App& cmd, const std::set<const CLI::Option*>& given,
                                const std::string& to_complete) {
  std::vector<const CLI::Option*> flags;
  for (const CLI::Option* opt : cmd.get_options())
    if (opt->nonpositional() && !given.count(opt)) flags.push_back(opt);
  std::sort(flags.begin(), flags.end(), [](const CLI::Option* a, const CLI::Option* b) {
    return long_name(*a) < long_name(*b);
  });
  Completions out;
  out.directive = kCompNoFileComp;
  for (const CLI::Option* opt : flags) {
    for (const auto& l : opt->get_lnames())
      if (starts_with("--" + l, to_complete))
        out.candidates.emplace_back("--" + l, opt->get_description());
    for (const auto& s : opt->get_snames())
      if (starts_with("-" + s, to_complete))
        out.candidates.emplace_back("-" + s, opt->get_description());
  }
  return out;
}

Completions filtered(const Candidates& all, const std::string& to_complete) {
  Completions out;
  out.directive = kCompNoFileComp;
  for (const auto& c : all)
    if (starts_with(c.first, to_complete)) out.candidates.push_back(c);
  return out;
}

// A flag's value. Flags this table does not know complete like a cobra flag without a
// completion function: nothing, and the shell's default (file names).
Completions complete_flag_value(const CLI::Option& flag, const std::string& to_complete,
                                const CompletionSources& sources) {
  const std::string name = long_name(flag);
  if (name == "format")
    return filtered({{"pretty", "Human-readable output"}, {"json", "JSON output"}}, to_complete);
  if (name == "account") {
    if (!sources.accounts) return {{}, kCompNoFileComp};
    try {
      return filtered(sources.accounts(), to_complete);
    } catch (const std::exception&) {
      return {{}, kCompError};
    }
  }
  if (flag.get_type_name() == "duration") return {{}, kCompNoFileComp};
  return {{}, kCompDefault};
}

}  // namespace

Completions complete_command_line(const std::vector<std::string>& words,
                                  const CompletionSources& sources) {
  std::vector<std::string> typed = words;
  if (typed.empty()) typed.emplace_back();
  // docker passes the plugin's own name first; Debian's bash completion does not. The last word
  // is always the one being completed, so "offload" there is a value, not the plugin name.
  if (typed.size() > 1 && typed.front() == "offload") typed.erase(typed.begin());
  const std::string to_complete = typed.back();
  typed.pop_back();

  CommandLine line;
  auto root = new_offload_command(line);
  CLI::App* cmd = root.get();
  std::set<const CLI::Option*> given;
  std::size_t positionals = 0;
  const CLI::Option* awaiting_value = nullptr;
  bool only_positionals = false;  // after "--"
  for (const std::string& word : typed) {
    if (awaiting_value) {
      awaiting_value = nullptr;
      continue;
    }
    if (!only_positionals && word == "--") {
      only_positionals = true;
      continue;
    }
    if (!only_positionals && starts_with(word, "--")) {
      if (const CLI::Option* flag = find_flag(*cmd, word)) {
        given.insert(flag);
        if (takes_value(*flag) && word.find('=') == std::string::npos) awaiting_value = flag;
      }
      continue;
    }
    if (!only_positionals && word.size() > 1 && word[0] == '-') {
      // pflag's shorthand cluster: "-qa" is -q -a; a letter that takes a value ends the cluster
      // with the rest of the word ("-fjson") or, when nothing is left, the next word.
      for (std::size_t i = 1; i < word.size(); ++i) {
        const CLI::Option* flag = find_flag(*cmd, "-" + word.substr(i, 1));
        if (!flag) continue;
        given.insert(flag);
        if (takes_value(*flag)) {
          if (i + 1 == word.size()) awaiting_value = flag;
          break;
        }
      }
      continue;
    }
    if (positionals == 0 && !only_positionals) {
      if (CLI::App* sub = find_subcommand(*cmd, word)) {
        cmd = sub;
        given.clear();
        continue;
      }
    }
    ++positionals;
  }

  const CLI::Option* help = cmd->get_help_ptr();
  if (help && given.count(help)) return {{}, kCompNoFileComp};  // cobra: nothing after --help
  if (awaiting_value) return complete_flag_value(*awaiting_value, to_complete, sources);
  if (!only_positionals && starts_with(to_complete, "-")) {
    auto eq = to_complete.find('=');
    if (eq == std::string::npos) return complete_flag_names(*cmd, given, to_complete);
    const CLI::Option* flag = find_flag(*cmd, to_complete);
    if (!flag || !takes_value(*flag)) return {{}, kCompNoFileComp};
    return complete_flag_value(*flag, to_complete.substr(eq + 1), sources);
  }
  if (positionals == 0) {
    auto subs = subcommands_of(*cmd);
    if (!subs.empty()) {
      Candidates verbs;
      for (CLI::App* sub : subs) verbs.emplace_back(sub->get_name(), sub->get_description());
      return filtered(verbs, to_complete);
    }
  }
  // No verb takes arguments, as docker's own verbs without any answer with NoFileComp.
  return {{}, kCompNoFileComp};
}

std::string render_completions(const Completions& completions, bool descriptions) {
  auto trim = [](std::string s) {
    const char* ws = " \t\r\n\v\f";
    s.erase(0, s.find_first_not_of(ws) == std::string::npos ? s.size() : s.find_first_not_of(ws));
    s.erase(s.find_last_not_of(ws) + 1);
    return s;
  };
  std::string out;
  for (const auto& [value, description] : completions.candidates) {
    std::string item = value;
    if (descriptions && !description.empty()) item += "\t" + description;
    item = item.substr(0, item.find('\n'));  // a second line would read as another candidate
    out += trim(item) + "\n";
  }
  out += ":" + std::to_string(completions.directive) + "\n";
  return out;
}

std::string describe_directive(int directive) {
  static const std::pair<int, const char*> kNames[] = {
      {kCompError, "ShellCompDirectiveError"},
      {kCompNoSpace, "ShellCompDirectiveNoSpace"},
      {kCompNoFileComp, "ShellCompDirectiveNoFileComp"},
      {kCompFilterFileExt, "ShellCompDirectiveFilterFileExt"},
      {kCompFilterDirs, "ShellCompDirectiveFilterDirs"},
      {kCompKeepOrder, "ShellCompDirectiveKeepOrder"}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if (!(directive & bit)) continue;
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out.empty() ? "ShellCompDirectiveDefault" : out;
}

std::vector<std::pair<std::string, std::string>> configured_accounts(
    const std::filesystem::path& docker_config) {
  OffloadConfig config = load_config(StatePaths(docker_config).config_file);
  std::vector<std::pair<std::string, std::string>> out;
  auto describe = [&](const std::string& name, std::string what) {
    if (name == config.default_account) what += " (default)";
    out.emplace_back(name, std::move(what));
  };
  describe(kLocalAccountName, "Embedded runner on this machine");
  for (const auto& [name, account] : config.accounts) describe(name, "Runner at " + account.address);
  return out;
}

}  // namespace offload::cli
