#include "offload/config/config.h"

#include "offload/common/token.h"

#include <algorithm>
#include <array>
#include <boost/asio/ip/address_v6.hpp>
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
constexpr std::array kTopLevelKeys = {"version",     "defaultAccount", "startTimeout",
                                      "idleTimeout", "clientTtl",      "maxSessionDuration",
                                      "logLevel",    "local",          "ports",
                                      "sync",        "accounts"};
constexpr std::array kLocalKeys = {"addressPool"};
constexpr std::array kPortsKeys = {"bindAllInterfaces", "dataChannel", "multiplexDataChannel"};
constexpr std::array kSyncKeys = {"exclude"};
constexpr std::array kRemoteKeys = {"type", "address", "tokenFile", "fingerprint"};
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
  if (auto it = v.find("dataChannel"); it != v.end()) {
    if (!it->is_boolean())
      check.fail("ports.dataChannel", "expected true or false, got " + describe(*it));
    ports.data_channel = it->get<bool>();
  }
  if (auto it = v.find("multiplexDataChannel"); it != v.end()) {
    if (!it->is_boolean())
      check.fail("ports.multiplexDataChannel", "expected true or false, got " + describe(*it));
    ports.multiplex_data_channel = it->get<bool>();
  }
}

void parse_sync(const Validator& check, const json& v, SyncSettings& sync) {
  if (!v.is_object())
    check.fail("sync", "expected an object like {\"exclude\": [\".env\", \"secrets/\"]}, got " +
                           describe(v));
  check.reject_unknown_keys(v, "sync", kSyncKeys);
  if (auto it = v.find("exclude"); it != v.end()) {
    if (!it->is_array())
      check.fail("sync.exclude", "expected a list of patterns like [\".env\", \"*.pem\"], got " +
                                     describe(*it));
    for (std::size_t i = 0; i < it->size(); ++i) {
      const auto& p = (*it)[i];
      if (!p.is_string() || p.get<std::string>().empty())
        check.fail("sync.exclude[" + std::to_string(i) + "]",
                   "expected a non-empty pattern string, got " + describe(p));
      sync.exclude.push_back(p.get<std::string>());
    }
  }
}

// A duration key. `zero_meaning` empty: zero is refused; otherwise zero is allowed and the hint
// says what it means.
std::chrono::milliseconds parse_duration_at(const Validator& check, const json& v,
                                            const std::string& path, const std::string& example,
                                            const std::string& zero_meaning) {
  const auto& text = check.string_at(v, path, example);
  const std::string usage = "use e.g. 90s, 5m, 1h" +
                            (zero_meaning.empty() ? std::string() : ", or " + zero_meaning);
  auto d = parse_duration(text);
  if (!d) check.fail(path, quote(text) + " is not a duration (" + usage + ")");
  if (d->count() <= 0 && zero_meaning.empty())
    check.fail(path, quote(text) + " must be longer than zero (" + usage + ")");
  return *d;
}

// The docker CLI's rule for context names, which account names follow so that they read alike
// in `docker offload accounts` and `docker context ls`.
bool is_valid_account_name(std::string_view name) {
  auto ok = [](char c, bool first) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u) && u < 0x80) return true;
    return !first && (c == '_' || c == '.' || c == '+' || c == '-');
  };
  if (name.size() < 2) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if (!ok(name[i], i == 0)) return false;
  return true;
}

bool all_digits(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "host:port" or "[v6]:port" with a port 1-65535 and a host gRPC can resolve; anything else
// would only fail later, at `start`, with a less helpful message.
bool is_host_port(std::string_view text) {
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    boost::system::error_code ec;
    boost::asio::ip::make_address_v6(std::string(host), ec);
    if (ec) return false;
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.empty()) return false;
    for (char c : host) {
      unsigned char u = static_cast<unsigned char>(c);
      if (!((std::isalnum(u) && u < 0x80) || c == '.' || c == '-' || c == '_')) return false;
    }
  }
  if (!all_digits(port) || port.size() > 5) return false;
  int number = std::stoi(std::string(port));
  return number >= 1 && number <= 65535;
}

void parse_remote_account(const Validator& check, const std::string& name, const json& v,
                          RemoteAccountSettings& account) {
  const std::string prefix = "accounts." + name;
  const std::string example =
      "{\"type\": \"remote\", \"address\": \"runner.example.com:7443\", \"tokenFile\": "
      "\"" + name + ".token\", \"fingerprint\": \"sha256:...\"}";
  if (!v.is_object())
    check.fail(prefix, "expected an object like " + example + ", got " + describe(v));
  // The type first: another type's keys would otherwise be reported as unknown.
  auto type = v.find("type");
  if (type == v.end())
    check.fail(prefix, "missing \"type\" (the account type is \"remote\": a runner started "
                       "with `offload-runner serve`)");
  const auto& type_name = check.string_at(*type, prefix + ".type", "\"remote\"");
  if (type_name == kLocalAccountName)
    check.fail(prefix + ".type", "there is one local account, built in as \"local\" (configure "
                                 "it under the top-level \"local\" key)");
  if (type_name != "remote")
    check.fail(prefix + ".type", quote(type_name) + " is not an account type (use \"remote\")");
  check.reject_unknown_keys(v, prefix, kRemoteKeys);

  auto required = [&](const char* key, const std::string& what) -> const json& {
    auto it = v.find(key);
    if (it == v.end()) check.fail(prefix, std::string("missing \"") + key + "\" (" + what + ")");
    return *it;
  };

  const std::string address_hint = "the runner's host:port, e.g. runner.example.com:7443";
  const auto& address = check.string_at(required("address", address_hint), prefix + ".address",
                                        "\"runner.example.com:7443\"");
  if (address.find("://") != std::string::npos)
    check.fail(prefix + ".address",
               quote(address) + " is not host:port (leave out the scheme: use e.g. "
                                "runner.example.com:7443)");
  if (!is_host_port(address))
    check.fail(prefix + ".address",
               quote(address) + " is not host:port (use e.g. runner.example.com:7443, or "
                                "[fd00::1]:7443 for IPv6)");
  account.address = address;

  const std::string token_hint =
      "a file holding the account token, absolute or relative to the offload directory";
  const auto& token_file = check.string_at(required("tokenFile", token_hint),
                                           prefix + ".tokenFile", "\"" + name + ".token\"");
  if (token_file.empty())
    check.fail(prefix + ".tokenFile", "must not be empty (" + token_hint + ")");
  if (token_file.find('\0') != std::string::npos)
    check.fail(prefix + ".tokenFile", quote(token_file) + " is not a file name");
  account.token_file = token_file;

  const std::string fp_hint = "the \"sha256:...\" fingerprint offload-runner prints when it starts";
  const auto& fp = check.string_at(required("fingerprint", fp_hint), prefix + ".fingerprint",
                                   "\"sha256:<64 hex digits>\"");
  auto normalised = normalize_fingerprint(fp);
  if (normalised.empty())
    check.fail(prefix + ".fingerprint",
               quote(fp) + " is not a SHA-256 fingerprint (use " + fp_hint + ")");
  account.fingerprint = normalised;
}

void parse_accounts(const Validator& check, const json& v,
                    std::map<std::string, RemoteAccountSettings>& accounts) {
  if (!v.is_object())
    check.fail("accounts", "expected an object of account name to settings, like {\"gpu\": "
                           "{\"type\": \"remote\", ...}}, got " + describe(v));
  for (const auto& item : v.items()) {
    const std::string& name = item.key();
    if (name == kLocalAccountName)
      check.fail("accounts." + name, "\"local\" is the built-in account's name (configure it "
                                     "under the top-level \"local\" key, or pick another name)");
    if (!is_valid_account_name(name))
      check.fail("accounts." + name,
                 quote(name) + " is not a valid account name (letters, digits and _ . + -, "
                               "starting with a letter or digit, at least 2 characters)");
    parse_remote_account(check, name, item.value(), accounts[name]);
  }
}

}  // namespace

std::filesystem::path resolve_token_file(const RemoteAccountSettings& account,
                                         const std::filesystem::path& offload_dir) {
  std::filesystem::path file(account.token_file);
  return file.is_absolute() ? file : offload_dir / file;
}

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

  if (auto it = doc.find("startTimeout"); it != doc.end())
    config.start_timeout = parse_duration_at(check, *it, "startTimeout", "\"2m\"", {});
  if (auto it = doc.find("idleTimeout"); it != doc.end())
    config.idle_timeout = parse_duration_at(check, *it, "idleTimeout", "\"5m\"",
                                            "\"0\" to never end an idle session");
  if (auto it = doc.find("clientTtl"); it != doc.end())
    config.client_ttl = parse_duration_at(check, *it, "clientTtl", "\"10m\"", {});
  if (auto it = doc.find("maxSessionDuration"); it != doc.end())
    config.max_session_duration = parse_duration_at(check, *it, "maxSessionDuration", "\"8h\"",
                                                    "\"0\" for no maximum");
  // Accounts before defaultAccount: the default may name one of them, wherever it is written.
  if (auto it = doc.find("accounts"); it != doc.end()) parse_accounts(check, *it, config.accounts);
  if (auto it = doc.find("defaultAccount"); it != doc.end()) {
    const auto& name = check.string_at(*it, "defaultAccount", "\"local\"");
    if (name != kLocalAccountName && !config.accounts.count(name)) {
      std::string names = kLocalAccountName;
      for (const auto& [n, a] : config.accounts) names += ", " + n;
      check.fail("defaultAccount", "unknown account " + quote(name) + " (accounts: " + names +
                                       "; remote accounts are defined under \"accounts\")");
    }
    config.default_account = name;
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
  if (auto it = doc.find("sync"); it != doc.end()) parse_sync(check, *it, config.sync);
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
  doc["idleTimeout"] = format_duration(config.idle_timeout);
  doc["clientTtl"] = format_duration(config.client_ttl);
  doc["maxSessionDuration"] = format_duration(config.max_session_duration);
  doc["logLevel"] = config.log_level;
  doc["local"]["addressPool"] = config.local.address_pool;
  doc["ports"]["bindAllInterfaces"] = config.ports.bind_all_interfaces;
  doc["ports"]["dataChannel"] = config.ports.data_channel;
  doc["ports"]["multiplexDataChannel"] = config.ports.multiplex_data_channel;
  doc["sync"]["exclude"] = config.sync.exclude;
  doc["accounts"] = nlohmann::ordered_json::object();
  for (const auto& [name, account] : config.accounts) {
    auto& a = doc["accounts"][name];
    a["type"] = "remote";
    a["address"] = account.address;
    a["tokenFile"] = account.token_file;
    a["fingerprint"] = account.fingerprint;
  }
  return doc.dump(2) + "\n";
}

namespace {

nlohmann::ordered_json editable(std::string_view text, const std::string& source) {
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }))
    return nlohmann::ordered_json::object();
  try {
    parse_config(text, source);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(e.what()) + " (fix the file first; nothing was changed)");
  }
  return nlohmann::ordered_json::parse(text);
}

std::string checked(const nlohmann::ordered_json& doc, const std::string& source) {
  std::string out = doc.dump(2) + "\n";
  parse_config(out, source);  // throws: the edit would make the file invalid
  return out;
}

}  // namespace

std::string with_remote_account(std::string_view text, const std::string& name,
                                const RemoteAccountSettings& account, const std::string& source) {
  auto doc = editable(text, source);
  if (name == kLocalAccountName)
    throw ConfigError(source + ": \"local\" is the built-in account's name; pick another name");
  if (!is_valid_account_name(name))
    throw ConfigError(source + ": " + quote(name) +
                      " is not a valid account name (letters, digits and _ . + -, starting with "
                      "a letter or digit, at least 2 characters)");
  if (doc.contains("accounts") && doc["accounts"].contains(name))
    throw ConfigError(source + ": account " + quote(name) +
                      " exists already (remove it first: docker offload accounts remove " + name +
                      ")");
  if (!doc.contains("version")) doc["version"] = kSupportedVersion;
  auto& entry = doc["accounts"][name];
  entry["type"] = "remote";
  entry["address"] = account.address;
  entry["tokenFile"] = account.token_file;
  entry["fingerprint"] = account.fingerprint;
  return checked(doc, source);
}

std::string without_remote_account(std::string_view text, const std::string& name,
                                   const std::string& source) {
  auto doc = editable(text, source);
  if (!doc.contains("accounts") || !doc["accounts"].contains(name))
    throw ConfigError(source + ": there is no remote account " + quote(name) +
                      " (see docker offload accounts)");
  if (doc.value("defaultAccount", std::string(kLocalAccountName)) == name)
    throw ConfigError(source + ": " + quote(name) +
                      " is the default account (\"defaultAccount\"): set another default first");
  doc["accounts"].erase(name);
  return checked(doc, source);
}

}  // namespace offload
