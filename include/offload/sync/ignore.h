// Exclusion rules in .dockerignore syntax, for paths that must never leave the machine.
//
// One pattern per line; blank lines and lines starting with '#' are ignored. Patterns are
// matched against the path relative to the synchronised root, '/'-separated, after cleaning
// (leading '/' and "./" removed). `*` and `?` never match '/', `[...]` is a character class,
// `**` matches any number of directories (including none), `\` escapes. A line starting with
// '!' re-includes what an earlier line excluded; the last matching line wins. A pattern that
// matches a directory excludes everything below it, unless a later '!' pattern re-includes a
// path below it (like Docker, directories are then still walked).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace offload::sync {

class IgnoreRules {
 public:
  IgnoreRules() = default;

  // Never throws: a malformed pattern (e.g. an unterminated '[') is kept as a literal and reported
  // in warnings().
  static IgnoreRules parse(std::string_view text);
  void add(std::string_view pattern);
  void append(const IgnoreRules& more);

  // True if `path` (relative, '/'-separated) is excluded.
  bool excluded(std::string_view path) const;
  // True if some '!' pattern could re-include a path below `dir` even though `dir` is excluded:
  // the scanner must then still walk it.
  bool may_reinclude_below(std::string_view dir) const;

  bool empty() const { return patterns_.empty(); }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  struct Pattern {
    std::string text;  // cleaned
    bool negated = false;
  };
  std::vector<Pattern> patterns_;
  std::vector<std::string> warnings_;
};

// Matches one cleaned pattern against a path with the rules above (exposed for tests).
bool ignore_pattern_matches(std::string_view pattern, std::string_view path);

// The name of the per-tree ignore file, read from the root of each synchronised directory.
inline constexpr std::string_view kIgnoreFileName = ".offloadignore";

}  // namespace offload::sync
