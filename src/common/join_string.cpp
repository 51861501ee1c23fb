#include "offload/common/join_string.h"

#include <nlohmann/json.hpp>

#include "offload/common/token.h"

namespace offload {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
// Address (≤ 300), fingerprint (71), token (≤ 512) and JSON: anything longer is not ours.
constexpr std::size_t kMaxJoinString = 2048;
constexpr std::size_t kMaxToken = 512;
constexpr std::size_t kMaxAddress = 300;

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

[[noreturn]] void fail(const std::string& what) {
  throw JoinStringError("not a valid join string: " + what +
                        " (copy the whole line `offload-runner accounts add` printed)");
}

// "host:port" or "[v6]:port", port 1-65535, no blanks or control bytes. The client's config
// validation checks the host further.
bool plausible_address(std::string_view a) {
  if (a.empty() || a.size() > kMaxAddress) return false;
  for (char c : a) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '/' || c == '@') return false;
  }
  auto colon = a.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  if (a.front() == '[' && a[colon - 1] != ']') return false;
  std::string_view port = a.substr(colon + 1);
  if (port.empty() || port.size() > 5) return false;
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value >= 1 && value <= 65535;
}

// What an accounts-file line can hold as a token: printable, no blanks, at least 16 bytes.
bool plausible_token(std::string_view t) {
  if (t.size() < 16 || t.size() > kMaxToken) return false;
  for (char c : t) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  return true;
}

void check(const JoinInfo& info) {
  if (!plausible_address(info.address))
    fail("the runner address is not host:port");
  if (normalize_fingerprint(info.fingerprint) != info.fingerprint)
    fail("the certificate fingerprint is not sha256:<64 hex digits>");
  if (!plausible_token(info.token))
    fail("the token is not 16 to 512 printable characters without blanks");
}

}  // namespace

std::string base64url_encode(std::string_view data) {
  std::string out;
  out.reserve((data.size() * 4 + 2) / 3);
  std::size_t i = 0;
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(data[k]); };
  for (; i + 3 <= data.size(); i += 3) {
    unsigned v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (data.size() - i == 1) {
    unsigned v = byte(i) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (data.size() - i == 2) {
    unsigned v = (byte(i) << 16) | (byte(i + 1) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

bool base64url_decode(std::string_view text, std::string& out) {
  out.clear();
  if (text.size() % 4 == 1) return false;
  unsigned acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = sextet(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  // Leftover bits must be zero: one string per byte sequence, so nothing hides in them.
  return (acc & ((1u << bits) - 1)) == 0;
}

std::string format_join_string(const JoinInfo& info) {
  check(info);
  nlohmann::ordered_json doc = {{"a", info.address}, {"f", info.fingerprint}, {"t", info.token}};
  return std::string(kJoinStringPrefix) + base64url_encode(doc.dump());
}

JoinInfo parse_join_string(std::string_view text) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!text.empty() && blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && blank(text.back())) text.remove_suffix(1);
  if (text.empty()) fail("it is empty");
  if (text.size() > kMaxJoinString) fail("it is longer than any join string");
  if (text.substr(0, kJoinStringPrefix.size()) != kJoinStringPrefix) {
    // "offload7.…": made by a newer runner than this client understands.
    if (text.rfind("offload", 0) == 0 && text.size() > 7 && text[7] >= '0' && text[7] <= '9')
      throw JoinStringError(
          "the join string has a newer format than this docker-offload understands (it reads "
          "offload1.…): upgrade docker-offload");
    fail("it does not start with \"offload1.\"");
  }
  std::string json_text;
  if (!base64url_decode(text.substr(kJoinStringPrefix.size()), json_text))
    fail("it is cut short or was changed in transit (bad base64url)");
  auto doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) fail("its content is not what a runner writes");
  JoinInfo info;
  for (const auto& [key, value] : doc.items()) {
    if (!value.is_string()) fail("its content is not what a runner writes");
    if (key == "a") info.address = value.get<std::string>();
    else if (key == "f") info.fingerprint = value.get<std::string>();
    else if (key == "t") info.token = value.get<std::string>();
    else fail("it holds an unknown field (made by a newer runner? upgrade docker-offload)");
  }
  if (info.address.empty() || info.fingerprint.empty() || info.token.empty())
    fail("it lacks the address, fingerprint or token");
  check(info);
  return info;
}

}  // namespace offload
