#include "offload/config/config.h"

#include <algorithm>
#include <array>
#include <boost/asio/ip/network_v4.hpp>
#include <cctype>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <system_error>

#include "offload/common/duration.h"
#include "offload/common/fs.h"

namespace offload {
namespace {

using nlohmann::json;

constexpr int kSupportedVersion = 1;
constexpr std::array kTopLevelKeys = {"version", "defaultAccount", "startTimeout", "logLevel",
                                      "local", "ports"};
constexpr std::array kLocalKeys = {"addressPool"};
constexpr std::array kPortsKeys = {"bindAllInterfaces"};
constexpr std::array kAccounts = {"local"};
constexpr std::array kLogLevels = {"trace", "debug", "info", "warn", "error"};
// The pool must hold at least one per-session /30, and a /8 is already more than any machine
// needs; anything wider would swallow address space the user's own networks may use.
constexpr unsigned kMinPoolPrefix = 8;
constexpr unsigned kMaxPoolPrefix = 28;

// Messages are one line and valid UTF-8 whatever the input holds: they end up in logs and in
// gRPC status messages. JSON escaping with ensure_ascii gives both.
std::string quote(const std::string& s) {
  std::string q = json(s).dump(-1, ' ', true, json::error_handler_t::replace);
  constexpr std::size_t kMax = 64;
  if (q.size() > kMax) q = q.substr(0, kMax - 4) + "...\"";
  return q;
}

std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::string: return "string " + quote(v.get<std::string>());
    case json::value_t::boolean: return std::string("boolean ") + (v.get<bool>() ? "true" : "false");
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    default: return "number " + v.dump();
  }
}

template <std::size_t N>
std::string join(const std::array<const char*, N>& items, const char* last_sep = ", ") {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += (i + 1 == N) ? last_sep : ", ";
    out += items[i];
  }
  return out;
}

// Folds the usual ways people misspell a camelCase key ("start_timeout", "StartTimeout").
std::string fold_key(std::string_view key) {
  std::string out;
  for (char c : key)
    if (c != '_' && c != '-') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The parser's diagnostic echoes raw input bytes ("last read: ..."): keep the message one line of
// ASCII.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f) ? '?' : c;
  }
  return out;
}

class Validator {
 public:
  explicit Validator(const std::string& source) : source_(source) {}

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    if (path.empty()) throw ConfigError(source_ + ": " + what);
    throw ConfigError(source_ + ": " + quote(path) + ": " + what);
  }

  template <std::size_t N>
  void reject_unknown_keys(const json& object, const std::string& prefix,
                           const std::array<const char*, N>& known) const {
    for (const auto& item : object.items()) {
      const std::string& key = item.key();
      if (std::find_if(known.begin(), known.end(), [&](const char* k) { return key == k; }) !=
          known.end())
        continue;
      std::string msg = "unknown key";
      auto folded = fold_key(key);
      for (const char* k : known)
        if (fold_key(k) == folded) msg += ", did you mean " + quote(k) + "?";
      msg += prefix.empty() ? " (known keys: " : " (known keys in " + quote(prefix) + ": ";
      msg += join(known) + ")";
      fail(prefix.empty() ? key : prefix + "." + key, msg);
    }
  }

  const std::string& string_at(const json& v, const std::string& path,
                               const std::string& example) const {
    if (!v.is_string()) fail(path, "expected a string like " + example + ", got " + describe(v));
    return v.get_ref<const std::string&>();
  }

 private:
  const std::string& source_;
};

json parse_json(std::string_view text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // The parser's message repeats a position it computes in characters; give the byte offset
    // (what editors and `head -c` work with) plus line and column computed from it.
    std::size_t byte = std::min<std::size_t>(e.byte, text.size() + 1);
    std::size_t upto = byte > 0 ? std::min(byte - 1, text.size()) : 0;
    std::size_t line = 1 + static_cast<std::size_t>(
                               std::count(text.begin(), text.begin() + upto, '\n'));
    auto nl = text.substr(0, upto).rfind('\n');
    std::size_t column = nl == std::string_view::npos ? upto + 1 : upto - nl;
    std::string reason = e.what();
    if (auto p = reason.find("parse error"); p != std::string::npos) {
      if (auto colon = reason.find(": ", p); colon != std::string::npos)
        reason = reason.substr(colon + 2);
    }
    throw ConfigError(source + ": not valid JSON at byte " + std::to_string(e.byte) + " (line " +
                      std::to_string(line) + ", column " + std::to_string(column) +
                      "): " + printable(reason));
  } catch (const json::exception& e) {
    // Syntactically fine but not representable, e.g. 1e999 ("number overflow parsing ...").
    std::string reason = e.what();
    if (auto p = reason.find("] "); p != std::string::npos) reason = reason.substr(p + 2);
    throw ConfigError(source + ": not valid JSON: " + printable(reason));
  }
}

void parse_version(const Validator& check, const json& v, OffloadConfig& config) {
  if (!v.is_number_integer())
    check.fail("version", "expected the integer " + std::to_string(kSupportedVersion) + ", got " +
                              describe(v));
  if (v != kSupportedVersion)
    check.fail("version", "unsupported config version " + v.dump() +
                              " (this offloadd understands " + std::to_string(kSupportedVersion) +
                              ")");
  config.version = kSupportedVersion;
}

void parse_address_pool(const Validator& check, const json& v, LocalAccountSettings& local) {
  const std::string path = "local.addressPool";
  const std::string& text = check.string_at(v, path, "\"10.213.0.0/16\"");
  auto not_cidr = [&] {
    check.fail(path, quote(text) + " is not an IPv4 CIDR (use e.g. 10.213.0.0/16)");
  };
  // Boost reads the prefix with atoi: keep absurd lengths away from it.
  auto slash = text.find('/');
  if (slash == std::string::npos || text.size() - slash - 1 > 3) not_cidr();
  boost::system::error_code ec;
  auto net = boost::asio::ip::make_network_v4(text, ec);
  if (ec) not_cidr();
  auto prefix = net.prefix_length();
  if (prefix < kMinPoolPrefix || prefix > kMaxPoolPrefix)
    check.fail(path, quote(text) + " has prefix length /" + std::to_string(prefix) +
                         " (allowed /" + std::to_string(kMinPoolPrefix) + " to /" +
                         std::to_string(kMaxPoolPrefix) +
                         ": the pool is split into per-session /30 networks)");
  auto canonical = net.canonical().to_string();
  if (net.address() != net.network())
    check.fail(path, quote(text) + " has host bits set (did you mean " + canonical + "?)");
  if (text != canonical)
    check.fail(path, quote(text) + " is not written canonically (use " + canonical + ")");
  local.address_pool = canonical;
}

void parse_local(const Validator& check, const json& v, LocalAccountSettings& local) {
  if (!v.is_object())
    check.fail("local", "expected an object like {\"addressPool\": \"10.213.0.0/16\"}, got " +
                            describe(v));
  check.reject_unknown_keys(v, "local", kLocalKeys);
  if (auto it = v.find("addressPool"); it != v.end()) parse_address_pool(check, *it, local);
}

void parse_ports(const Validator& check, const json& v, PortSettings& ports) {
  if (!v.is_object())
    check.fail("ports",
               "expected an object like {\"bindAllInterfaces\": false}, got " + describe(v));
  check.reject_unknown_keys(v, "ports", kPortsKeys);
  if (auto it = v.find("bindAllInterfaces"); it != v.end()) {
    if (!it->is_boolean())
      check.fail("ports.bindAllInterfaces", "expected true or false, got " + describe(*it));
    ports.bind_all_interfaces = it->get<bool>();
  }
}

}  // namespace

OffloadConfig parse_config(std::string_view text, const std::string& source) {
  Validator check(source);
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }))
    check.fail("", "file is empty (write {} to use the defaults, or delete the file)");
  json doc = parse_json(text, source);
  if (!doc.is_object())
    check.fail("", "expected a JSON object like {\"startTimeout\": \"5m\"} at the top level, got " +
                       describe(doc));

  OffloadConfig config;
  // The version first: a newer file's other keys would otherwise be reported as unknown, which
  // hides the real problem.
  if (auto it = doc.find("version"); it != doc.end()) parse_version(check, *it, config);
  check.reject_unknown_keys(doc, "", kTopLevelKeys);

  if (auto it = doc.find("defaultAccount"); it != doc.end()) {
    const auto& name = check.string_at(*it, "defaultAccount", "\"local\"");
    if (std::find(kAccounts.begin(), kAccounts.end(), name) == kAccounts.end())
      check.fail("defaultAccount",
                 "unknown account " + quote(name) + " (accounts: " + join(kAccounts) + ")");
    config.default_account = name;
  }
  if (auto it = doc.find("startTimeout"); it != doc.end()) {
    const auto& text = check.string_at(*it, "startTimeout", "\"2m\"");
    auto d = parse_duration(text);
    if (!d) check.fail("startTimeout", quote(text) + " is not a duration (use e.g. 90s, 5m, 1h)");
    if (d->count() <= 0)
      check.fail("startTimeout", quote(text) + " must be longer than zero (use e.g. 90s, 5m, 1h)");
    config.start_timeout = *d;
  }
  if (auto it = doc.find("logLevel"); it != doc.end()) {
    const auto& level = check.string_at(*it, "logLevel", "\"info\"");
    if (std::find(kLogLevels.begin(), kLogLevels.end(), level) == kLogLevels.end())
      check.fail("logLevel", quote(level) + " is not a log level (use " + join(kLogLevels, " or ") +
                                 ")");
    config.log_level = level;
  }
  if (auto it = doc.find("local"); it != doc.end()) parse_local(check, *it, config.local);
  if (auto it = doc.find("ports"); it != doc.end()) parse_ports(check, *it, config.ports);
  return config;
}

OffloadConfig load_config(const std::filesystem::path& file) {
  std::string text;
  if (auto ec = read_file(file, text)) {
    if (ec == std::errc::no_such_file_or_directory) return OffloadConfig{};
    throw ConfigError(display_path(file) + ": cannot be read: " + ec.message());
  }
  return parse_config(text, display_path(file));
}

std::string to_json(const OffloadConfig& config) {
  nlohmann::ordered_json doc;
  doc["version"] = config.version;
  doc["defaultAccount"] = config.default_account;
  doc["startTimeout"] = format_duration(config.start_timeout);
  doc["logLevel"] = config.log_level;
  doc["local"]["addressPool"] = config.local.address_pool;
  doc["ports"]["bindAllInterfaces"] = config.ports.bind_all_interfaces;
  return doc.dump(2) + "\n";
}

}  // namespace offload
