#include "offload/daemon/path_restore.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <utility>

#include "offload/http/clean_path.h"

namespace offload::daemon {

using http::clean_path;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string go_json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    if (c < 0x20 || c == '<' || c == '>' || c == '&') {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
      continue;
    }
    // U+2028 and U+2029 (E2 80 A8/A9): Go escapes them for JavaScript's sake.
    if (c == 0xE2 && i + 2 < text.size() && static_cast<unsigned char>(text[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(text[i + 2]) & 0xFE) == 0xA8) {
      out += static_cast<unsigned char>(text[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";
      i += 2;
      continue;
    }
    out += static_cast<char>(c);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

PathRestorer::PathRestorer(const std::vector<PathMapping>& mappings) {
  for (const auto& m : mappings) {
    if (m.replica.empty() || m.replica.front() != '/' || m.replica == m.local) continue;
    Rule rule{go_json_escape(m.replica), go_json_escape(m.local),
              go_json_escape(m.local_in_bind.empty() ? m.local : m.local_in_bind)};
    // A replica path is one rule: the first mapping given for it wins.
    if (std::none_of(rules_.begin(), rules_.end(),
                     [&](const Rule& r) { return r.from == rule.from; }))
      rules_.push_back(std::move(rule));
  }
  // The longest first: a path recorded for one bind wins over its mount's root.
  std::stable_sort(rules_.begin(), rules_.end(),
                   [](const Rule& a, const Rule& b) { return a.from.size() > b.from.size(); });
}

std::string PathRestorer::feed(std::string_view data) {
  if (rules_.empty()) return std::string(data);
  pending_.append(data);
  return process(false);
}

std::string PathRestorer::finish() { return process(true); }

std::string PathRestorer::process(bool at_end) {
  std::string out;
  out.reserve(pending_.size());
  std::size_t i = 0;
  const std::string_view in = pending_;
  while (i < in.size()) {
    // Every replica path starts a JSON string: look only just after a '"'.
    if (previous_ == '"' && in[i] == '/') {
      bool wait = false, replaced = false;
      const std::string_view rest = in.substr(i);
      for (const auto& rule : rules_) {
        if (rest.size() <= rule.from.size()) {
          // Not enough bytes to tell: hold back from here while this rule may still match (a
          // shorter one must not win over it).
          if (!at_end && std::string_view(rule.from).starts_with(rest)) {
            wait = true;
            break;
          }
          continue;
        }
        if (!rest.starts_with(rule.from)) continue;
        const char next = rest[rule.from.size()];
        if (next == '"' || next == '/') {
          out += rule.to_quote_slash;
        } else if (next == ':') {
          out += rule.to_colon;
        } else {
          continue;
        }
        i += rule.from.size();
        previous_ = 0;
        replaced = true;
        break;
      }
      if (wait) break;
      if (replaced) continue;
    }
    // Up to and including the next '"' goes out as it is.
    const auto quote = in.find('"', i);
    const std::size_t end = quote == std::string_view::npos ? in.size() : quote + 1;
    out.append(in.substr(i, end - i));
    previous_ = in[end - 1];
    i = end;
  }
  pending_.erase(0, i);
  return out;
}

// ---------------------------------------------------------------------------------------------

ResponseRewriter::ResponseRewriter(const std::vector<PathMapping>& mappings, std::size_t max_body)
    : restorer_(mappings), max_body_(max_body) {
  if (restorer_.empty()) state_ = State::pass;
}

void ResponseRewriter::pass_with(Fed& fed, std::string_view raw) {
  fed.out.append(raw);
  state_ = State::pass;
}

void ResponseRewriter::emit_chunk(Fed& fed, const std::string& data) {
  if (data.empty()) return;
  char size[32];
  const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  fed.out.append(size, static_cast<std::size_t>(n));
  fed.out += data;
  fed.out += "\r\n";
}

void ResponseRewriter::on_head(Fed& fed) {
  // "HTTP/1.1 200 OK": only a 200 carries the JSON this rewrites.
  if (head_.size() < 12 || !head_.starts_with("HTTP/1.") || head_.compare(8, 4, " 200") != 0)
    return pass_with(fed, std::exchange(head_, {}));
  std::optional<std::uint64_t> length;
  bool chunked = false, other_coding = false, bad = false;
  std::size_t start = head_.find("\r\n") + 2;
  while (start < head_.size()) {
    auto end = head_.find("\r\n", start);
    if (end == std::string::npos || end == start) break;
    std::string_view line(head_.data() + start, end - start);
    start = end + 2;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    auto name = trim(line.substr(0, colon));
    auto value = trim(line.substr(colon + 1));
    if (iequals(name, "Content-Length")) {
      std::uint64_t v = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || p != value.data() + value.size() || (length && *length != v))
        bad = true;
      length = v;
    } else if (iequals(name, "Transfer-Encoding")) {
      // The last coding decides the framing; only "chunked" alone is ours to read.
      auto last = value.substr(value.rfind(',') == std::string_view::npos ? 0 : value.rfind(',') + 1);
      if (iequals(trim(last), "chunked") && value.find(',') == std::string_view::npos)
        chunked = true;
      else
        other_coding = true;
    }
  }
  if (bad || other_coding || (chunked && length)) return pass_with(fed, std::exchange(head_, {}));
  if (chunked) {
    fed.out += head_;
    head_.clear();
    state_ = State::chunk_size;
    return;
  }
  if (!length || *length > max_body_) return pass_with(fed, std::exchange(head_, {}));
  remaining_ = static_cast<std::size_t>(*length);
  state_ = State::length_body;
  if (remaining_ == 0) {
    fed.out += head_;
    head_.clear();
    state_ = State::done;
  }
}

ResponseRewriter::Fed ResponseRewriter::feed(std::string_view data) {
  Fed fed;
  std::size_t i = 0;
  // Bounded: each step consumes input or changes the state towards pass/done.
  while (i < data.size() && state_ != State::done) {
    const std::string_view in = data.substr(i);
    switch (state_) {
      case State::pass:
        fed.out.append(in);
        i = data.size();
        break;

      case State::head: {
        // The end of the head may straddle reads: look from just before the new bytes.
        const std::size_t from = head_.size() < 3 ? 0 : head_.size() - 3;
        head_.append(in);
        const auto end = head_.find("\r\n\r\n", from);
        if (end == std::string::npos) {
          i = data.size();
          if (head_.size() > kMaxHead) pass_with(fed, std::exchange(head_, {}));
          break;
        }
        const std::size_t head_size = end + 4;
        i += in.size() - (head_.size() - head_size);
        head_.resize(head_size);
        on_head(fed);
        break;
      }

      case State::length_body: {
        const std::size_t take = std::min(remaining_, in.size());
        body_.append(in.substr(0, take));
        remaining_ -= take;
        i += take;
        if (remaining_ > 0) break;
        std::string body = restorer_.feed(body_);
        body += restorer_.finish();
        body_.clear();
        // The head again, with the new length in place of the old one.
        std::string head;
        std::size_t start = 0;
        while (start < head_.size()) {
          auto end = head_.find("\r\n", start);
          std::string_view line(head_.data() + start, end - start);
          start = end + 2;
          if (line.empty()) break;
          auto colon = line.find(':');
          if (colon != std::string_view::npos && iequals(trim(line.substr(0, colon)), "Content-Length"))
            continue;
          head.append(line);
          head += "\r\n";
        }
        head += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
        head_.clear();
        fed.out += head;
        fed.out += body;
        state_ = State::done;
        break;
      }

      case State::chunk_size:
      case State::chunk_data_end:
      case State::trailers: {
        const auto nl = in.find('\n');
        const std::size_t take = nl == std::string_view::npos ? in.size() : nl + 1;
        line_.append(in.substr(0, take));
        i += take;
        if (nl == std::string_view::npos) {
          if (line_.size() > 4096) {
            emit_chunk(fed, restorer_.finish());
            pass_with(fed, std::exchange(line_, {}));
          }
          break;
        }
        if (line_.size() < 2 || line_[line_.size() - 2] != '\r') {
          emit_chunk(fed, restorer_.finish());
          pass_with(fed, std::exchange(line_, {}));
          break;
        }
        std::string_view line(line_.data(), line_.size() - 2);
        if (state_ == State::chunk_data_end) {
          if (!line.empty()) {
            emit_chunk(fed, restorer_.finish());
            pass_with(fed, std::exchange(line_, {}));
            break;
          }
          line_.clear();
          state_ = State::chunk_size;
          break;
        }
        if (state_ == State::trailers) {
          trailers_ += line_;
          line_.clear();
          if (!line.empty()) {
            if (trailers_.size() > kMaxHead) pass_with(fed, std::exchange(trailers_, {}));
            break;
          }
          emit_chunk(fed, restorer_.finish());
          fed.out += "0\r\n";
          fed.out += trailers_;
          trailers_.clear();
          state_ = State::done;
          break;
        }
        // A chunk size: hex digits, then perhaps ";extensions".
        auto digits = trim(line.substr(0, line.find(';')));
        std::uint64_t size = 0;
        auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
        if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size()) {
          emit_chunk(fed, restorer_.finish());
          pass_with(fed, std::exchange(line_, {}));
          break;
        }
        line_.clear();
        if (size == 0) {
          state_ = State::trailers;
        } else {
          remaining_ = static_cast<std::size_t>(size);
          state_ = State::chunk_data;
        }
        break;
      }

      case State::chunk_data: {
        const std::size_t take = std::min(remaining_, in.size());
        emit_chunk(fed, restorer_.feed(in.substr(0, take)));
        remaining_ -= take;
        i += take;
        if (remaining_ == 0) state_ = State::chunk_data_end;
        break;
      }

      case State::done:
        break;
    }
  }
  fed.consumed = i;
  return fed;
}

}  // namespace offload::daemon
