#include <gtest/gtest.h>

#include "offload/sync/ignore.h"

using namespace offload::sync;

namespace {
struct MatchCase {
  const char* pattern;
  const char* path;
  bool matches;
};
}  // namespace

TEST(IgnorePattern, MatchesTable) {
  const MatchCase cases[] = {
      // '*' and '?' stay within one component
      {"*.txt", "a.txt", true},
      {"*.txt", ".txt", true},
      {"*.txt", "dir/a.txt", false},
      {"*", "anything", true},
      {"*", "a/b", false},
      {"a*b", "ab", true},
      {"a*b", "axxb", true},
      {"a*b", "ax/b", false},
      {"a?c", "abc", true},
      {"a?c", "ac", false},
      {"a?c", "a/c", false},
      {"dir/*.o", "dir/x.o", true},
      {"dir/*.o", "dir/sub/x.o", false},
      // '**': any number of directories, including none
      {"**/foo", "foo", true},
      {"**/foo", "x/foo", true},
      {"**/foo", "x/y/foo", true},
      {"**/foo", "xfoo", false},
      {"**/foo", "foo/bar", false},
      {"foo/**", "foo/x", true},
      {"foo/**", "foo/x/y", true},
      {"foo/**", "foo", false},
      {"a/**/b", "a/b", true},
      {"a/**/b", "a/x/b", true},
      {"a/**/b", "a/x/y/b", true},
      {"a/**/b", "a/xb", false},
      {"a/**/b", "b", false},
      {"**", "any/deep/path", true},
      {"**/*.go", "cmd/main.go", true},
      {"**/*.go", "main.go", true},
      {"**/*.go", "main.go/x", false},
      // character classes
      {"[abc].txt", "b.txt", true},
      {"[abc].txt", "d.txt", false},
      {"[a-c]x", "bx", true},
      {"[a-c]x", "dx", false},
      {"[^a-c]x", "dx", true},
      {"[^a-c]x", "ax", false},
      {"[!a]x", "bx", true},
      {"[!a]x", "ax", false},
      {"a[^x]b", "a/b", false},  // a class never matches '/'
      {"[]]", "]", true},
      {"[a\\]]", "]", true},
      {"file[0-9][0-9]", "file42", true},
      {"file[0-9][0-9]", "file4x", false},
      // escapes
      {"\\*.txt", "*.txt", true},
      {"\\*.txt", "a.txt", false},
      {"a\\?b", "a?b", true},
      {"a\\?b", "axb", false},
      {"\\[x]", "[x]", true},
      {"\\#file", "#file", true},
      // literals are exact and anchored at both ends
      {"build", "build", true},
      {"build", "builds", false},
      {"build", "a/build", false},
      {"a.b", "axb", false},
      // malformed: taken literally
      {"[abc", "[abc", true},
      {"[abc", "a", false},
      {"abc\\", "abc\\", true},
  };
  for (const auto& c : cases)
    EXPECT_EQ(ignore_pattern_matches(c.pattern, c.path), c.matches)
        << "pattern \"" << c.pattern << "\" path \"" << c.path << "\"";
}

TEST(IgnorePattern, ManyStarsStayFast) {
  // Exponential backtracking would never finish on this.
  std::string pattern;
  for (int i = 0; i < 200; ++i) pattern += "*a";
  pattern += "b";
  std::string path(4000, 'a');
  EXPECT_FALSE(ignore_pattern_matches(pattern, path));
  EXPECT_TRUE(ignore_pattern_matches(pattern, path + "b"));
}

TEST(IgnoreRules, ParsesCommentsBlankLinesAndCrLf) {
  auto rules = IgnoreRules::parse("# comment\n\n  *.log  \r\n\t\n#*.txt\n/build/\n");
  EXPECT_TRUE(rules.excluded("x.log"));
  EXPECT_FALSE(rules.excluded("x.txt"));  // commented out
  EXPECT_TRUE(rules.excluded("build"));
  EXPECT_TRUE(rules.excluded("build/out.o"));
  EXPECT_FALSE(rules.excluded("src/build"));
  EXPECT_TRUE(rules.warnings().empty());
  EXPECT_TRUE(IgnoreRules::parse("# only comments\n\n").empty());
}

TEST(IgnoreRules, CleansPatternsLikeFilepathClean) {
  auto rules = IgnoreRules::parse("./src/../tmp\n//cache//dir/\n/abs\na/./b\n");
  EXPECT_TRUE(rules.excluded("tmp"));
  EXPECT_FALSE(rules.excluded("src"));
  EXPECT_TRUE(rules.excluded("cache/dir/x"));
  EXPECT_TRUE(rules.excluded("abs"));
  EXPECT_TRUE(rules.excluded("a/b"));
  // Paths are cleaned too.
  EXPECT_TRUE(rules.excluded("/abs"));
  EXPECT_TRUE(rules.excluded("./abs"));
  EXPECT_FALSE(rules.excluded(""));
}

TEST(IgnoreRules, DirectoryExcludesEverythingBelow) {
  auto rules = IgnoreRules::parse("node_modules\n**/.git\n");
  EXPECT_TRUE(rules.excluded("node_modules"));
  EXPECT_TRUE(rules.excluded("node_modules/pkg/index.js"));
  EXPECT_FALSE(rules.excluded("web/node_modules"));  // anchored at the root
  EXPECT_TRUE(rules.excluded(".git/HEAD"));
  EXPECT_TRUE(rules.excluded("sub/mod/.git/objects/ab"));
  EXPECT_FALSE(rules.excluded("sub/.gitignore"));
}

TEST(IgnoreRules, NegationReincludesAndLastMatchWins) {
  auto rules = IgnoreRules::parse("*.md\n!README.md\n");
  EXPECT_TRUE(rules.excluded("CHANGES.md"));
  EXPECT_FALSE(rules.excluded("README.md"));
  EXPECT_FALSE(rules.excluded("docs/x.md"));  // '*' does not cross '/'

  auto reversed = IgnoreRules::parse("!README.md\n*.md\n");
  EXPECT_TRUE(reversed.excluded("README.md"));

  auto again = IgnoreRules::parse("*.md\n!README.md\nREADME.md\n");
  EXPECT_TRUE(again.excluded("README.md"));
}

TEST(IgnoreRules, ReincludeBelowExcludedDirectory) {
  auto rules = IgnoreRules::parse("docs\n!docs/keep\n");
  EXPECT_TRUE(rules.excluded("docs"));
  EXPECT_TRUE(rules.excluded("docs/other.md"));
  EXPECT_FALSE(rules.excluded("docs/keep"));
  EXPECT_FALSE(rules.excluded("docs/keep/deep/file"));
  EXPECT_TRUE(rules.may_reinclude_below("docs"));
  EXPECT_FALSE(rules.may_reinclude_below("docs/other"));
  EXPECT_FALSE(rules.may_reinclude_below("src"));

  // A negation of a parent directory re-includes what an earlier line excluded below it.
  auto parent = IgnoreRules::parse("a/b\n!a\n");
  EXPECT_FALSE(parent.excluded("a/b"));
  EXPECT_FALSE(parent.excluded("a/b/x"));
}

TEST(IgnoreRules, MayReincludeBelowWithWildcards) {
  auto rules = IgnoreRules::parse("vendor\n!**/keep.txt\n");
  EXPECT_TRUE(rules.may_reinclude_below("vendor"));
  EXPECT_TRUE(rules.may_reinclude_below("vendor/a/b"));
  EXPECT_FALSE(rules.excluded("vendor/a/keep.txt"));
  EXPECT_TRUE(rules.excluded("vendor/a/other.txt"));

  auto star = IgnoreRules::parse("out\n!*/x\n");
  EXPECT_TRUE(star.may_reinclude_below("out"));
  EXPECT_FALSE(star.may_reinclude_below("out/deeper"));
  EXPECT_FALSE(star.excluded("out/x"));

  auto no_negation = IgnoreRules::parse("out\n");
  EXPECT_FALSE(no_negation.may_reinclude_below("out"));

  auto flat = IgnoreRules::parse("out\n!*.md\n");
  EXPECT_FALSE(flat.may_reinclude_below("out"));
}

TEST(IgnoreRules, MalformedPatternsAreWarnedAndLiteral) {
  auto rules = IgnoreRules::parse("[abc\n!\nok\nx\\\n");
  ASSERT_EQ(rules.warnings().size(), 3u);
  EXPECT_NE(rules.warnings()[0].find("[abc"), std::string::npos);
  EXPECT_TRUE(rules.excluded("[abc"));
  EXPECT_FALSE(rules.excluded("a"));
  EXPECT_TRUE(rules.excluded("ok"));
  EXPECT_TRUE(rules.excluded("x\\"));
}

TEST(IgnoreRules, AddAndAppend) {
  IgnoreRules rules;
  EXPECT_TRUE(rules.empty());
  EXPECT_FALSE(rules.excluded("a.tmp"));
  rules.add("*.tmp");
  EXPECT_FALSE(rules.empty());
  EXPECT_TRUE(rules.excluded("a.tmp"));
  auto more = IgnoreRules::parse("!keep.tmp\n[bad\n");
  rules.append(more);
  EXPECT_FALSE(rules.excluded("keep.tmp"));
  EXPECT_TRUE(rules.excluded("other.tmp"));
  EXPECT_EQ(rules.warnings().size(), 1u);
}
