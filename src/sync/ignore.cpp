#include "offload/sync/ignore.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace offload::sync {
namespace {

// One element of a compiled pattern. Matching simulates all positions in the pattern at once
// rather than backtracking, so no pattern (however many '*') can take more than
// O(tokens × path) steps: the rules come from user files and the fuzzer.
struct Token {
  enum Kind : std::uint8_t {
    literal,    // one byte
    one,        // '?': one byte except '/'
    star,       // '*': any run without '/'
    any_dirs,   // "**" followed by more pattern: "(.*/)?", any number of leading directories
    any_rest,   // "**" at the end: everything, '/' included
    char_class  // "[...]": one byte (never '/') in or not in the set
  } kind;
  char ch = 0;
  Token(Kind k, char c = 0) : kind(k), ch(c) {}
  bool negated = false;
  std::vector<std::pair<unsigned char, unsigned char>> ranges;
};

struct Compiled {
  std::vector<Token> tokens;
  std::string problem;  // why part of the pattern was taken literally
};

Compiled compile(std::string_view p) {
  Compiled out;
  auto literal = [&](char c) { out.tokens.push_back({Token::literal, c}); };
  for (std::size_t i = 0; i < p.size();) {
    char c = p[i];
    if (c == '*') {
      if (i + 1 < p.size() && p[i + 1] == '*') {
        i += 2;
        if (i < p.size() && p[i] == '/') ++i;  // "**/" is "**"
        out.tokens.push_back({i == p.size() ? Token::any_rest : Token::any_dirs});
      } else {
        ++i;
        out.tokens.push_back({Token::star});
      }
    } else if (c == '?') {
      ++i;
      out.tokens.push_back({Token::one});
    } else if (c == '\\') {
      if (i + 1 < p.size()) {
        literal(p[i + 1]);
        i += 2;
      } else {
        out.problem = "trailing '\\' taken literally";
        literal('\\');
        ++i;
      }
    } else if (c == '[') {
      Token cls(Token::char_class);
      std::size_t j = i + 1;
      if (j < p.size() && (p[j] == '^' || p[j] == '!')) {
        cls.negated = true;
        ++j;
      }
      bool closed = false;
      bool first = true;
      while (j < p.size()) {
        if (p[j] == ']' && !first) {
          closed = true;
          ++j;
          break;
        }
        first = false;
        unsigned char lo = static_cast<unsigned char>(p[j]);
        if (p[j] == '\\' && j + 1 < p.size()) lo = static_cast<unsigned char>(p[++j]);
        ++j;
        unsigned char hi = lo;
        if (j + 1 < p.size() && p[j] == '-' && p[j + 1] != ']') {
          ++j;
          hi = static_cast<unsigned char>(p[j]);
          if (p[j] == '\\' && j + 1 < p.size()) hi = static_cast<unsigned char>(p[++j]);
          ++j;
        }
        cls.ranges.emplace_back(lo, hi);
      }
      if (closed) {
        out.tokens.push_back(std::move(cls));
        i = j;
      } else {
        out.problem = "unterminated '[' taken literally";
        literal('[');
        ++i;
      }
    } else {
      literal(c);
      ++i;
    }
  }
  return out;
}

bool class_matches(const Token& t, unsigned char c) {
  bool in = false;
  for (auto [lo, hi] : t.ranges)
    if (c >= lo && c <= hi) in = true;
  return in != t.negated;
}

// Runs the pattern over `path` left to right as a set of states (the tokens matched so far), so
// that one pass answers for the path and for every parent directory on the way.
class Matcher {
 public:
  explicit Matcher(const std::vector<Token>& tokens)
      : tokens_(tokens), at_(tokens.size() + 1, 0), in_dirs_(tokens.size(), 0),
        next_at_(tokens.size() + 1, 0), next_in_dirs_(tokens.size(), 0) {
    at_[0] = 1;
    close();
  }

  // The text consumed so far is matched by the whole pattern.
  bool accepting() const { return at_[tokens_.size()]; }
  // Some continuation of the text consumed so far could still match.
  bool alive() const {
    for (auto a : at_)
      if (a) return true;
    for (auto d : in_dirs_)
      if (d) return true;
    return false;
  }

  void feed(unsigned char c) {
    std::fill(next_at_.begin(), next_at_.end(), 0);
    std::fill(next_in_dirs_.begin(), next_in_dirs_.end(), 0);
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      const Token& t = tokens_[i];
      if (t.kind == Token::any_dirs && (at_[i] || in_dirs_[i])) {
        next_in_dirs_[i] = 1;              // still inside the ".*"
        if (c == '/') next_at_[i + 1] = 1;  // the '/' that ends it
        continue;
      }
      if (!at_[i]) continue;
      switch (t.kind) {
        case Token::literal:
          if (c == static_cast<unsigned char>(t.ch)) next_at_[i + 1] = 1;
          break;
        case Token::one:
          if (c != '/') next_at_[i + 1] = 1;
          break;
        case Token::char_class:
          if (c != '/' && class_matches(t, c)) next_at_[i + 1] = 1;
          break;
        case Token::star:
          if (c != '/') next_at_[i] = 1;
          break;
        case Token::any_rest: next_at_[i] = 1; break;
        case Token::any_dirs: break;
      }
    }
    std::swap(at_, next_at_);
    std::swap(in_dirs_, next_in_dirs_);
    close();
  }

 private:
  // Tokens that may match nothing can be skipped.
  void close() {
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      auto k = tokens_[i].kind;
      if (at_[i] && (k == Token::star || k == Token::any_rest || k == Token::any_dirs))
        at_[i + 1] = 1;
    }
  }

  const std::vector<Token>& tokens_;
  std::vector<char> at_, in_dirs_, next_at_, next_in_dirs_;
};

bool matches(const std::vector<Token>& tokens, std::string_view path) {
  Matcher m(tokens);
  for (char c : path) m.feed(static_cast<unsigned char>(c));
  return m.accepting();
}

// The path itself or one of its parent directories matches.
bool matches_self_or_parent(const std::vector<Token>& tokens, std::string_view path) {
  Matcher m(tokens);
  for (char c : path) {
    if (c == '/' && m.accepting()) return true;
    m.feed(static_cast<unsigned char>(c));
  }
  return m.accepting();
}

// The pattern could match something strictly below directory `dir` ("" is the root).
bool could_match_below(const std::vector<Token>& tokens, std::string_view dir) {
  Matcher m(tokens);
  for (char c : dir) m.feed(static_cast<unsigned char>(c));
  if (!dir.empty()) m.feed('/');
  return m.alive();
}

// filepath.Clean, as Docker applies it to every pattern: no empty or "." components, ".."
// folded lexically, then a leading '/' dropped.
std::string clean(std::string_view p) {
  bool rooted = !p.empty() && p[0] == '/';
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (start <= p.size()) {
    std::size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == ".") {
    } else if (part == "..") {
      if (!parts.empty() && parts.back() != "..")
        parts.pop_back();
      else if (!rooted)
        parts.push_back(part);
    } else {
      parts.push_back(part);
    }
    start = end + 1;
  }
  std::string out;
  for (auto part : parts) {
    if (!out.empty()) out += '/';
    out += part;
  }
  if (out.empty()) return rooted ? "/" : ".";
  return out;
}

std::string_view trim(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view clean_path(std::string_view path) {
  for (;;) {
    if (path.starts_with("/"))
      path.remove_prefix(1);
    else if (path.starts_with("./"))
      path.remove_prefix(2);
    else
      break;
  }
  while (path.ends_with("/")) path.remove_suffix(1);
  return path;
}

}  // namespace

bool ignore_pattern_matches(std::string_view pattern, std::string_view path) {
  return matches(compile(pattern).tokens, path);
}

IgnoreRules IgnoreRules::parse(std::string_view text) {
  IgnoreRules rules;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = trim(text.substr(start, end - start));
    start = end + 1;
    if (line.empty() || line.front() == '#') continue;
    rules.add(line);
  }
  return rules;
}

void IgnoreRules::add(std::string_view pattern) {
  std::string_view p = trim(pattern);
  if (p.empty()) return;
  Pattern out;
  if (p.front() == '!') {
    out.negated = true;
    p = trim(p.substr(1));
    if (p.empty()) {
      warnings_.push_back("'!' without a pattern ignored");
      return;
    }
  }
  out.text = clean(p);
  if (out.text.size() > 1 && out.text.front() == '/') out.text.erase(0, 1);
  auto compiled = compile(out.text);
  if (!compiled.problem.empty())
    warnings_.push_back("pattern \"" + std::string(pattern) + "\": " + compiled.problem);
  patterns_.push_back(std::move(out));
}

void IgnoreRules::append(const IgnoreRules& more) {
  patterns_.insert(patterns_.end(), more.patterns_.begin(), more.patterns_.end());
  warnings_.insert(warnings_.end(), more.warnings_.begin(), more.warnings_.end());
}

bool IgnoreRules::excluded(std::string_view raw_path) const {
  std::string_view path = clean_path(raw_path);
  if (path.empty() || patterns_.empty()) return false;
  bool matched = false;
  for (const auto& pattern : patterns_) {
    // A pattern that could not change the outcome need not be evaluated (as in Docker).
    if (pattern.negated != matched) continue;
    // A pattern matching a parent directory applies to everything below it.
    if (matches_self_or_parent(compile(pattern.text).tokens, path)) matched = !pattern.negated;
  }
  return matched;
}

bool IgnoreRules::may_reinclude_below(std::string_view raw_dir) const {
  std::string_view dir = clean_path(raw_dir);
  for (const auto& pattern : patterns_)
    if (pattern.negated && could_match_below(compile(pattern.text).tokens, dir)) return true;
  return false;
}

}  // namespace offload::sync
