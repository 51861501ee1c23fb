// .offloadignore rules from arbitrary text, matched against arbitrary paths. The input is the
// rules, then a NUL byte, then one path per line (without a NUL, the rule lines double as
// paths). Nothing may crash or take more than linear-times-pattern time, and the answers must
// hold the properties the scanner relies on.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "offload/sync/entry.h"
#include "offload/sync/ignore.h"

namespace {
std::vector<std::string_view> lines(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    auto nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace offload::sync;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto nul = input.find('\0');
  std::string_view rules_text = input.substr(0, nul);
  std::string_view paths_text = nul == std::string_view::npos ? input : input.substr(nul + 1);

  IgnoreRules rules = IgnoreRules::parse(rules_text);
  // Only the exclusions, to check that an excluded directory takes its children with it.
  IgnoreRules plain;
  bool has_negation = false;
  for (auto line : lines(rules_text)) {
    auto first = line.find_first_not_of(" \t\r\n\v\f");
    if (first != std::string_view::npos && line[first] == '!') {
      has_negation = true;
      continue;
    }
    if (first != std::string_view::npos && line[first] == '#') continue;
    plain.add(line);
  }

  for (auto path : lines(paths_text)) {
    for (auto pattern : lines(rules_text)) ignore_pattern_matches(pattern, path);
    bool excluded = rules.excluded(path);
    // Deterministic.
    if (rules.excluded(path) != excluded) std::abort();
    // No negation: nothing below an excluded directory comes back.
    if (!has_negation && rules.may_reinclude_below(path)) std::abort();
    // The scanner and the watcher only ask about valid relative paths.
    if (path.empty() || !valid_relative_path(path)) continue;
    if (plain.excluded(path)) {
      std::string child(path);
      child += "/child";
      if (!plain.excluded(child)) std::abort();
    }
    // A leading "/" or "./" makes no difference.
    if (rules.excluded("/" + std::string(path)) != excluded ||
        rules.excluded("./" + std::string(path)) != excluded)
      std::abort();
  }
  return 0;
}
