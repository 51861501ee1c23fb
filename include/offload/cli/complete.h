// Shell completion in cobra's `__complete` protocol, which the docker CLI uses for plugins:
// `docker __complete offload st` (what docker 28's own bash, zsh and fish completion scripts
// run) makes docker run `docker-offload __complete offload st`, and prints whatever the plugin
// prints. Debian's docker.io bash completion runs `docker-offload __completeNoDesc st` directly
// (without the `offload` word). Either way the answer is one candidate per line
// ("value\tdescription", or only "value" for __completeNoDesc) and a last line ":<directive>".
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace offload::cli {

// cobra's ShellCompDirective bits (spf13/cobra completions.go), in its order.
enum CompletionDirective : int {
  kCompDefault = 0,        // the shell's own behaviour: file names when nothing matched
  kCompError = 1,          // something failed: ignore the candidates
  kCompNoSpace = 2,        // no space after a single candidate
  kCompNoFileComp = 4,     // no file names even when nothing matched
  kCompFilterFileExt = 8,  // the candidates are file extensions to filter by
  kCompFilterDirs = 16,    // directory names only
  kCompKeepOrder = 32,     // keep the candidates in our order
};

struct Completions {
  std::vector<std::pair<std::string, std::string>> candidates;  // value, description
  int directive = kCompDefault;
};

// Where the values that are not part of the command tree come from.
struct CompletionSources {
  // The account names `start --account` accepts, with a description each. May throw: the
  // answer is then the error directive.
  std::function<std::vector<std::pair<std::string, std::string>>()> accounts;
};

// The request words as docker passes them after `__complete`: an optional leading "offload",
// then what the user typed; the last word is the one being completed (possibly empty).
Completions complete_command_line(const std::vector<std::string>& words,
                                  const CompletionSources& sources);

// cobra's output: one line per candidate (descriptions cut to their first line, dropped when
// `descriptions` is false), then ":<directive>".
std::string render_completions(const Completions& completions, bool descriptions);

// cobra's stderr line, "Completion ended with directive: ShellCompDirectiveNoFileComp".
std::string describe_directive(int directive);

// The accounts in $DOCKER_CONFIG/offload/config.json: "local" and every remote one.
std::vector<std::pair<std::string, std::string>> configured_accounts(
    const std::filesystem::path& docker_config);

}  // namespace offload::cli
