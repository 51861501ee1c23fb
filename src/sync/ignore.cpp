#include "offload/sync/ignore.h"

#include <cstdint>
#include <vector>

namespace offload::sync {
namespace {

// One element of a compiled pattern. Matching is a dynamic programme over (token, path offset)
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

// Whether `tokens` match all of `path`; with `prefix_only`, whether they match `path` followed by
// some further text (used to ask "could this pattern match anything below this directory?").
bool run(const std::vector<Token>& tokens, std::string_view path, bool prefix_only) {
  const std::size_t n = path.size();
  // next[j]: tokens[i+1..] match path[j..]; cur[j]: tokens[i..] match path[j..].
  std::vector<char> next(n + 1, 0), cur(n + 1, 0);
  next[n] = 1;
  if (prefix_only)
    for (std::size_t j = 0; j <= n; ++j) next[j] = j == n;
  for (std::size_t ti = tokens.size(); ti-- > 0;) {
    const Token& t = tokens[ti];
    cur[n] = 0;
    // At the end of the path: with prefix_only the remaining tokens can always consume the
    // imagined continuation; otherwise only tokens that may match nothing pass.
    if (prefix_only) {
      cur[n] = 1;
    } else {
      cur[n] = (t.kind == Token::star || t.kind == Token::any_dirs || t.kind == Token::any_rest)
                   ? next[n]
                   : 0;
    }
    bool slash_then_next = false;  // any_dirs: some k >= j with path[k]=='/' && next[k+1]
    for (std::size_t j = n; j-- > 0;) {
      unsigned char c = static_cast<unsigned char>(path[j]);
      if (c == '/' && next[j + 1]) slash_then_next = true;
      bool m = false;
      switch (t.kind) {
        case Token::literal: m = c == static_cast<unsigned char>(t.ch) && next[j + 1]; break;
        case Token::one: m = c != '/' && next[j + 1]; break;
        case Token::char_class: m = c != '/' && class_matches(t, c) && next[j + 1]; break;
        case Token::star: m = next[j] || (c != '/' && cur[j + 1]); break;
        case Token::any_rest: m = next[j] || cur[j + 1]; break;
        case Token::any_dirs: m = next[j] || slash_then_next || prefix_only; break;
      }
      cur[j] = m;
    }
    std::swap(cur, next);
  }
  return next[0];
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
  return run(compile(pattern).tokens, path, false);
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
    auto tokens = compile(pattern.text).tokens;
    bool m = run(tokens, path, false);
    // A pattern matching a parent directory applies to everything below it.
    for (std::size_t slash = path.find('/'); !m && slash != std::string_view::npos;
         slash = path.find('/', slash + 1))
      m = run(tokens, path.substr(0, slash), false);
    if (m) matched = !pattern.negated;
  }
  return matched;
}

bool IgnoreRules::may_reinclude_below(std::string_view raw_dir) const {
  std::string dir(clean_path(raw_dir));
  if (!dir.empty()) dir += '/';
  for (const auto& pattern : patterns_)
    if (pattern.negated && run(compile(pattern.text).tokens, dir, true)) return true;
  return false;
}

}  // namespace offload::sync
