#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "offload/common/fs.h"
#include "offload/common/token.h"
#include "offload/config/config.h"
#include "temp_dir.h"

using namespace offload;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using offload::test::TempDir;

namespace {

const std::string kSource = "~/.docker/offload/config.json";

// The message parse_config throws for `json`, or "" when it parses.
std::string error_of(std::string_view json) {
  try {
    parse_config(json, kSource);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

void expect_defaults(const OffloadConfig& c) {
  EXPECT_EQ(c.version, 1);
  EXPECT_EQ(c.default_account, "local");
  EXPECT_EQ(c.start_timeout, 2min);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.local.address_pool, "10.213.0.0/16");
  EXPECT_FALSE(c.ports.bind_all_interfaces);
  EXPECT_EQ(c.idle_timeout, 5min);
  EXPECT_EQ(c.client_ttl, 10min);
  EXPECT_EQ(c.max_session_duration, 8h);
  EXPECT_TRUE(c.accounts.empty());
}

const std::string kFp = "sha256:" + std::string(64, 'a');

// A remote account object with `field` replaced (or left out when `value` is empty).
std::string account_json(const std::string& field = "", const std::string& value = "") {
  std::map<std::string, std::string> fields = {
      {"type", "\"remote\""},
      {"address", "\"runner.example.com:7443\""},
      {"tokenFile", "\"gpu.token\""},
      {"fingerprint", "\"" + kFp + "\""}};
  if (!field.empty()) {
    if (value.empty()) fields.erase(field);
    else fields[field] = value;
  }
  std::string out = "{";
  for (const auto& [k, v] : fields) out += (out.size() > 1 ? ", \"" : "\"") + k + "\": " + v;
  return out + "}";
}

std::string with_account(const std::string& name, const std::string& account) {
  return R"({"accounts": {")" + name + "\": " + account + "}}";
}

}  // namespace

TEST(Config, EmptyObjectGivesDefaults) { expect_defaults(parse_config("{}", kSource)); }

TEST(Config, EmptyNestedObjectGivesDefaults) {
  expect_defaults(parse_config(R"({"local": {}})", kSource));
  expect_defaults(parse_config(R"({"ports": {}})", kSource));
}

TEST(Config, ReadsEveryKey) {
  auto c = parse_config(R"({
    "version": 1,
    "defaultAccount": "local",
    "startTimeout": "1h30m",
    "logLevel": "debug",
    "local": {"addressPool": "172.30.0.0/20"},
    "ports": {"bindAllInterfaces": true}
  })",
                        kSource);
  EXPECT_EQ(c.version, 1);
  EXPECT_EQ(c.default_account, "local");
  EXPECT_EQ(c.start_timeout, 90min);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.local.address_pool, "172.30.0.0/20");
  EXPECT_TRUE(c.ports.bind_all_interfaces);
}

TEST(Config, BindAllInterfacesBothWays) {
  EXPECT_TRUE(parse_config(R"({"ports": {"bindAllInterfaces": true}})", kSource)
                  .ports.bind_all_interfaces);
  EXPECT_FALSE(parse_config(R"({"ports": {"dataChannel": false}})", kSource).ports.data_channel);
  EXPECT_TRUE(parse_config("{}", kSource).ports.data_channel);
  EXPECT_THROW(parse_config(R"({"ports": {"dataChannel": "no"}})", kSource), ConfigError);
  EXPECT_TRUE(parse_config("{}", kSource).ports.multiplex_data_channel);
  EXPECT_FALSE(parse_config(R"({"ports": {"multiplexDataChannel": false}})", kSource)
                   .ports.multiplex_data_channel);
  EXPECT_THROW(parse_config(R"({"ports": {"multiplexDataChannel": 0}})", kSource), ConfigError);
  EXPECT_FALSE(parse_config(R"({"ports": {"bindAllInterfaces": false}})", kSource)
                   .ports.bind_all_interfaces);
}

TEST(Config, EveryLogLevel) {
  for (const char* level : {"trace", "debug", "info", "warn", "error"}) {
    auto c = parse_config(std::string(R"({"logLevel": ")") + level + "\"}", kSource);
    EXPECT_EQ(c.log_level, level);
  }
}

TEST(Config, PrefixBoundsAccepted) {
  EXPECT_EQ(parse_config(R"({"local":{"addressPool":"10.0.0.0/8"}})", kSource).local.address_pool,
            "10.0.0.0/8");
  EXPECT_EQ(
      parse_config(R"({"local":{"addressPool":"192.168.7.16/28"}})", kSource).local.address_pool,
      "192.168.7.16/28");
}

TEST(Config, RoundTripsThroughToJson) {
  OffloadConfig c;
  c.start_timeout = 95s;
  c.log_level = "warn";
  c.local.address_pool = "10.50.0.0/24";
  c.ports.bind_all_interfaces = true;
  c.ports.data_channel = false;
  std::string text = to_json(c);
  for (const char* key :
       {"\"version\"", "\"defaultAccount\"", "\"startTimeout\"", "\"logLevel\"", "\"local\"",
        "\"addressPool\"", "\"ports\"", "\"bindAllInterfaces\""})
    EXPECT_TRUE(contains(text, key)) << key << " missing in " << text;
  auto back = parse_config(text, kSource);
  EXPECT_EQ(back.version, c.version);
  EXPECT_EQ(back.default_account, c.default_account);
  EXPECT_EQ(back.start_timeout, c.start_timeout);
  EXPECT_EQ(back.log_level, c.log_level);
  EXPECT_EQ(back.local.address_pool, c.local.address_pool);
  EXPECT_EQ(back.ports.bind_all_interfaces, c.ports.bind_all_interfaces);
  EXPECT_EQ(back.ports.data_channel, false);
  EXPECT_EQ(to_json(OffloadConfig{}),
            "{\n  \"version\": 1,\n  \"defaultAccount\": \"local\",\n  \"startTimeout\": \"2m\",\n"
            "  \"idleTimeout\": \"5m\",\n  \"clientTtl\": \"10m\",\n  \"maxSessionDuration\": \"8h\",\n"
            "  \"logLevel\": \"info\",\n  \"local\": {\n    \"addressPool\": \"10.213.0.0/16\"\n"
            "  },\n  \"ports\": {\n    \"bindAllInterfaces\": false,\n    \"dataChannel\": true,\n"
            "    \"multiplexDataChannel\": true\n  },\n"
            "  \"sync\": {\n    \"exclude\": []\n  },\n  \"accounts\": {}\n}\n");
}

TEST(Config, SyncExcludes) {
  auto c = parse_config(R"({"sync": {"exclude": [".env", "secrets/", "**/*.pem"]}})", kSource);
  EXPECT_EQ(c.sync.exclude, (std::vector<std::string>{".env", "secrets/", "**/*.pem"}));
  auto back = parse_config(to_json(c), kSource);
  EXPECT_EQ(back.sync.exclude, c.sync.exclude);
  EXPECT_TRUE(parse_config(R"({"sync": {}})", kSource).sync.exclude.empty());
  EXPECT_EQ(error_of(R"({"sync": {"exclude": ".env"}})"),
            "~/.docker/offload/config.json: \"sync.exclude\": expected a list of patterns like "
            "[\".env\", \"*.pem\"], got string \".env\"");
  EXPECT_TRUE(contains(error_of(R"({"sync": {"exclude": [".env", 3]}})"), "\"sync.exclude[1]\""));
  EXPECT_TRUE(contains(error_of(R"({"sync": {"exclude": [""]}})"), "non-empty pattern"));
  EXPECT_TRUE(contains(error_of(R"({"sync": {"excludes": []}})"), "exclude"));
}

TEST(Config, RoundTripsLifecycleAndAccounts) {
  OffloadConfig c;
  c.idle_timeout = 0ms;
  c.client_ttl = 90s;
  c.max_session_duration = 0ms;
  c.accounts["gpu"] = {"[fd00::1]:7443", "/etc/offload/gpu.token", kFp};
  c.accounts["ci.build-2"] = {"10.0.0.5:443", "ci.token", kFp};
  c.default_account = "gpu";
  auto back = parse_config(to_json(c), kSource);
  EXPECT_EQ(back.idle_timeout, 0ms);
  EXPECT_EQ(back.client_ttl, 90s);
  EXPECT_EQ(back.max_session_duration, 0ms);
  EXPECT_EQ(back.default_account, "gpu");
  ASSERT_EQ(back.accounts.size(), 2u);
  EXPECT_EQ(back.accounts["gpu"].address, "[fd00::1]:7443");
  EXPECT_EQ(back.accounts["gpu"].token_file, "/etc/offload/gpu.token");
  EXPECT_EQ(back.accounts["ci.build-2"].fingerprint, kFp);
  EXPECT_EQ(to_json(back), to_json(c));
}

// Exact messages: these are what users read, so they are part of the contract.
TEST(ConfigErrors, BadDuration) {
  EXPECT_EQ(error_of(R"({"startTimeout": "5q"})"),
            "~/.docker/offload/config.json: \"startTimeout\": \"5q\" is not a duration (use e.g. "
            "90s, 5m, 1h)");
  EXPECT_TRUE(contains(error_of(R"({"startTimeout": ""})"), "is not a duration"));
  EXPECT_TRUE(contains(error_of(R"({"startTimeout": "-5m"})"), "is not a duration"));
}

TEST(ConfigErrors, ZeroDuration) {
  EXPECT_EQ(error_of(R"({"startTimeout": "0"})"),
            "~/.docker/offload/config.json: \"startTimeout\": \"0\" must be longer than zero (use "
            "e.g. 90s, 5m, 1h)");
  EXPECT_TRUE(contains(error_of(R"({"startTimeout": "0s"})"), "must be longer than zero"));
}

TEST(ConfigErrors, UnknownTopLevelKey) {
  EXPECT_EQ(error_of(R"({"idle": "5m"})"),
            "~/.docker/offload/config.json: \"idle\": unknown key (known keys: version, "
            "defaultAccount, startTimeout, idleTimeout, clientTtl, maxSessionDuration, logLevel, "
            "local, ports, sync, accounts)");
}

TEST(ConfigErrors, UnknownKeySuggestsSpelling) {
  EXPECT_EQ(error_of(R"({"start_timeout": "5m"})"),
            "~/.docker/offload/config.json: \"start_timeout\": unknown key, did you mean "
            "\"startTimeout\"? (known keys: version, defaultAccount, startTimeout, idleTimeout, "
            "clientTtl, maxSessionDuration, logLevel, local, ports, sync, accounts)");
  EXPECT_TRUE(contains(error_of(R"({"LogLevel": "info"})"), "did you mean \"logLevel\"?"));
}

TEST(ConfigErrors, UnknownNestedKey) {
  EXPECT_EQ(error_of(R"({"local": {"addressPool": "10.213.0.0/16", "pool": "x"}})"),
            "~/.docker/offload/config.json: \"local.pool\": unknown key (known keys in "
            "\"local\": addressPool)");
  EXPECT_EQ(error_of(R"({"ports": {"bindAll": true}})"),
            "~/.docker/offload/config.json: \"ports.bindAll\": unknown key (known keys in "
            "\"ports\": bindAllInterfaces, dataChannel, multiplexDataChannel)");
  EXPECT_TRUE(contains(error_of(R"({"ports": {"bind_all_interfaces": true}})"),
                       "did you mean \"bindAllInterfaces\"?"));
}

TEST(ConfigErrors, WrongTypes) {
  EXPECT_EQ(error_of(R"({"startTimeout": 120})"),
            "~/.docker/offload/config.json: \"startTimeout\": expected a string like \"2m\", got "
            "number 120");
  EXPECT_EQ(error_of(R"({"version": "1"})"),
            "~/.docker/offload/config.json: \"version\": expected the integer 1, got string "
            "\"1\"");
  EXPECT_TRUE(contains(error_of(R"({"version": 1.0})"), "expected the integer 1, got number"));
  EXPECT_TRUE(contains(error_of(R"({"logLevel": true})"), "got boolean true"));
  EXPECT_TRUE(contains(error_of(R"({"defaultAccount": null})"), "got null"));
  EXPECT_TRUE(contains(error_of(R"({"local": []})"), "\"local\": expected an object"));
  EXPECT_TRUE(contains(error_of(R"({"local": {"addressPool": {}}})"),
                       "\"local.addressPool\": expected a string like \"10.213.0.0/16\", got an "
                       "object"));
  EXPECT_EQ(error_of(R"({"ports": {"bindAllInterfaces": "yes"}})"),
            "~/.docker/offload/config.json: \"ports.bindAllInterfaces\": expected true or false, "
            "got string \"yes\"");
  EXPECT_TRUE(contains(error_of(R"({"ports": {"bindAllInterfaces": 1}})"),
                       "\"ports.bindAllInterfaces\": expected true or false, got number 1"));
  EXPECT_EQ(error_of(R"({"ports": true})"),
            "~/.docker/offload/config.json: \"ports\": expected an object like "
            "{\"bindAllInterfaces\": false}, got boolean true");
}

TEST(ConfigErrors, NonObjectTopLevel) {
  EXPECT_EQ(error_of("[1, 2]"),
            "~/.docker/offload/config.json: expected a JSON object like {\"startTimeout\": "
            "\"5m\"} at the top level, got an array");
  EXPECT_TRUE(contains(error_of("\"x\""), "got string \"x\""));
  EXPECT_TRUE(contains(error_of("null"), "got null"));
}

TEST(ConfigErrors, BadVersion) {
  EXPECT_EQ(error_of(R"({"version": 2})"),
            "~/.docker/offload/config.json: \"version\": unsupported config version 2 (this "
            "offloadd understands 1)");
  // The version wins over keys a newer offloadd might know.
  EXPECT_TRUE(contains(error_of(R"({"accounts": {}, "version": 3})"), "unsupported config "
                                                                      "version 3"));
  EXPECT_TRUE(contains(error_of(R"({"version": -1})"), "unsupported config version -1"));
  EXPECT_TRUE(contains(error_of(R"({"version": 18446744073709551615})"),
                       "unsupported config version 18446744073709551615"));
}

TEST(ConfigErrors, UnknownAccount) {
  EXPECT_EQ(error_of(R"({"defaultAccount": "x"})"),
            "~/.docker/offload/config.json: \"defaultAccount\": unknown account \"x\" (accounts: "
            "local; remote accounts are defined under \"accounts\")");
}

TEST(ConfigErrors, BadLogLevel) {
  EXPECT_EQ(error_of(R"({"logLevel": "verbose"})"),
            "~/.docker/offload/config.json: \"logLevel\": \"verbose\" is not a log level (use "
            "trace, debug, info, warn or error)");
  EXPECT_FALSE(error_of(R"({"logLevel": "INFO"})").empty());
}

TEST(ConfigErrors, BadCidr) {
  auto pool = [](const std::string& v) {
    return error_of(R"({"local": {"addressPool": ")" + v + "\"}}");
  };
  EXPECT_EQ(pool("10.213.0.0"),
            "~/.docker/offload/config.json: \"local.addressPool\": \"10.213.0.0\" is not an IPv4 "
            "CIDR (use e.g. 10.213.0.0/16)");
  for (const char* bad : {"", "/16", "10.213.0.0/", "10.213.0.0/x", "10.213.0/16",
                          "256.0.0.0/16", "fd00::/64", "10.213.0.0/16/1", "10.213.0.0/999999999",
                          "10.213.0.0/33", " 10.213.0.0/16", "10.213.0.0/+16"})
    EXPECT_TRUE(contains(pool(bad), "is not an IPv4 CIDR")) << bad << ": " << pool(bad);
  EXPECT_EQ(pool("10.213.1.0/16"),
            "~/.docker/offload/config.json: \"local.addressPool\": \"10.213.1.0/16\" has host "
            "bits set (did you mean 10.213.0.0/16?)");
  EXPECT_EQ(pool("10.213.0.0/29"),
            "~/.docker/offload/config.json: \"local.addressPool\": \"10.213.0.0/29\" has prefix "
            "length /29 (allowed /8 to /28: the pool is split into per-session /30 networks)");
  EXPECT_TRUE(contains(pool("10.0.0.0/7"), "has prefix length /7"));
  EXPECT_TRUE(contains(pool("0.0.0.0/0"), "has prefix length /0"));
  EXPECT_TRUE(contains(pool("10.213.0.0/016"), "is not written canonically (use 10.213.0.0/16)"));
}

TEST(ConfigErrors, InvalidJsonGivesBytePosition) {
  auto msg = error_of("{\n  \"version\": 1,\n  x\n}");
  EXPECT_TRUE(contains(msg, "~/.docker/offload/config.json: not valid JSON at byte 21 (line 3, "
                            "column 3): syntax error"))
      << msg;
  EXPECT_TRUE(contains(error_of(R"({"version": 1)"), "not valid JSON at byte")) << msg;
  EXPECT_TRUE(contains(error_of("{} {}"), "not valid JSON at byte 4"));
  // Raw control bytes from the input never reach the message.
  auto ctl = error_of("{\"a\x01\": 1}");
  EXPECT_TRUE(contains(ctl, "not valid JSON"));
  EXPECT_EQ(ctl.find('\x01'), std::string::npos);
}

TEST(ConfigErrors, NumberOutOfRange) {
  // Found by the fuzzer: nlohmann reports this as out_of_range, not parse_error.
  EXPECT_EQ(error_of(R"({"version": 1e999})"),
            "~/.docker/offload/config.json: not valid JSON: number overflow parsing '1e999'");
}

TEST(ConfigErrors, EmptyFile) {
  EXPECT_EQ(error_of(" \n"),
            "~/.docker/offload/config.json: file is empty (write {} to use the defaults, or "
            "delete the file)");
}

TEST(ConfigErrors, MessagesAreOneLine) {
  for (const char* bad :
       {"{\"a\\nb\": 1}", "{\"startTimeout\": \"5\\nm\"}", "{\n\n\"x\" 1}",
        "{\"logLevel\": \"\\u00e9\\u0000\"}"}) {
    auto msg = error_of(bad);
    ASSERT_FALSE(msg.empty()) << bad;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(LoadConfig, AbsentFileGivesDefaults) {
  TempDir dir;
  expect_defaults(load_config(dir.path() / "config.json"));
}

TEST(LoadConfig, ReadsFile) {
  TempDir dir;
  auto file = dir.path() / "config.json";
  ASSERT_FALSE(write_file_atomic(file, R"({"startTimeout": "45s"})"));
  EXPECT_EQ(load_config(file).start_timeout, 45s);
}

TEST(LoadConfig, CorruptFileNamesIt) {
  TempDir dir;
  auto file = dir.path() / "config.json";
  ASSERT_FALSE(write_file_atomic(file, "{"));
  try {
    load_config(file);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), file.filename().string())) << e.what();
    EXPECT_TRUE(contains(e.what(), "not valid JSON")) << e.what();
  }
}

TEST(LoadConfig, UnreadableFileNamesIt) {
  TempDir dir;
  auto file = dir.path() / "config.json";
  fs::create_directories(file);  // a directory where the file should be: read fails, not ENOENT
  try {
    load_config(file);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "config.json: cannot be read")) << e.what();
  }
}

// --- lifecycle limits ---

TEST(ConfigLifecycle, ReadsDurations) {
  auto c = parse_config(
      R"({"idleTimeout": "2m", "clientTtl": "30s", "maxSessionDuration": "1h30m"})", kSource);
  EXPECT_EQ(c.idle_timeout, 2min);
  EXPECT_EQ(c.client_ttl, 30s);
  EXPECT_EQ(c.max_session_duration, 90min);
}

TEST(ConfigLifecycle, ZeroMeansNeverForIdleAndMaximum) {
  auto c = parse_config(R"({"idleTimeout": "0", "maxSessionDuration": "0s"})", kSource);
  EXPECT_EQ(c.idle_timeout, 0ms);
  EXPECT_EQ(c.max_session_duration, 0ms);
}

TEST(ConfigLifecycleErrors, ClientTtlMustBePositive) {
  EXPECT_EQ(error_of(R"({"clientTtl": "0"})"),
            "~/.docker/offload/config.json: \"clientTtl\": \"0\" must be longer than zero (use "
            "e.g. 90s, 5m, 1h)");
}

TEST(ConfigLifecycleErrors, BadDurations) {
  EXPECT_EQ(error_of(R"({"idleTimeout": "5 minutes"})"),
            "~/.docker/offload/config.json: \"idleTimeout\": \"5 minutes\" is not a duration (use "
            "e.g. 90s, 5m, 1h, or \"0\" to never end an idle session)");
  EXPECT_EQ(error_of(R"({"maxSessionDuration": "-1h"})"),
            "~/.docker/offload/config.json: \"maxSessionDuration\": \"-1h\" is not a duration "
            "(use e.g. 90s, 5m, 1h, or \"0\" for no maximum)");
  EXPECT_EQ(error_of(R"({"clientTtl": "10"})"),
            "~/.docker/offload/config.json: \"clientTtl\": \"10\" is not a duration (use e.g. "
            "90s, 5m, 1h)");
  EXPECT_EQ(error_of(R"({"idleTimeout": 300})"),
            "~/.docker/offload/config.json: \"idleTimeout\": expected a string like \"5m\", got "
            "number 300");
  EXPECT_TRUE(contains(error_of(R"({"maxSessionDuration": null})"),
                       "\"maxSessionDuration\": expected a string like \"8h\", got null"));
  EXPECT_TRUE(contains(error_of(R"({"clientTtl": true})"),
                       "\"clientTtl\": expected a string like \"10m\", got boolean true"));
  EXPECT_TRUE(contains(error_of(R"({"idle_timeout": "5m"})"), "did you mean \"idleTimeout\"?"));
}

// --- remote accounts ---

TEST(ConfigAccounts, ReadsRemoteAccount) {
  auto c = parse_config(R"({"defaultAccount": "gpu", "accounts": {"gpu": {
      "type": "remote", "address": "runner.example.com:7443", "tokenFile": "gpu.token",
      "fingerprint": "SHA256:AB:CD:)" +
                            [] {
                              std::string hex;
                              for (int i = 0; i < 30; ++i) hex += i ? ":EF" : "EF";
                              return hex;
                            }() +
                            R"("}}})",
                        kSource);
  EXPECT_EQ(c.default_account, "gpu");
  ASSERT_EQ(c.accounts.count("gpu"), 1u);
  const auto& a = c.accounts.at("gpu");
  EXPECT_EQ(a.address, "runner.example.com:7443");
  EXPECT_EQ(a.token_file, "gpu.token");
  std::string want = "sha256:abcd";
  for (int i = 0; i < 30; ++i) want += "ef";
  EXPECT_EQ(a.fingerprint, want);
}

TEST(ConfigAccounts, DefaultAccountMayComeBeforeTheAccounts) {
  // JSON objects have no order; the default is checked against the accounts wherever it is.
  auto c = parse_config(R"({"defaultAccount": "build", "accounts": {"build": )" + account_json() +
                            "}}",
                        kSource);
  EXPECT_EQ(c.default_account, "build");
}

TEST(ConfigAccounts, SeveralAccountsAndAddressForms) {
  auto c = parse_config(R"({"accounts": {"a1": )" + account_json("address", "\"10.0.0.5:1\"") +
                            R"(, "b.2_x+y-z": )" +
                            account_json("address", "\"[fd00::1]:65535\"") +
                            R"(, "c3": )" + account_json("address", "\"localhost:7443\"") + "}}",
                        kSource);
  ASSERT_EQ(c.accounts.size(), 3u);
  EXPECT_EQ(c.accounts["a1"].address, "10.0.0.5:1");
  EXPECT_EQ(c.accounts["b.2_x+y-z"].address, "[fd00::1]:65535");
  EXPECT_EQ(c.accounts["c3"].address, "localhost:7443");
  EXPECT_EQ(c.default_account, "local");
}

TEST(ConfigAccounts, TokenFileIsNotCheckedWhenParsing) {
  auto c = parse_config(with_account("gpu", account_json("tokenFile", "\"/nonexistent/x\"")),
                        kSource);
  EXPECT_EQ(c.accounts["gpu"].token_file, "/nonexistent/x");
}

TEST(ConfigAccounts, ResolveTokenFile) {
  RemoteAccountSettings a;
  a.token_file = "gpu.token";
  EXPECT_EQ(resolve_token_file(a, "/home/u/.docker/offload"),
            fs::path("/home/u/.docker/offload/gpu.token"));
  a.token_file = "tokens/gpu";
  EXPECT_EQ(resolve_token_file(a, "/d"), fs::path("/d/tokens/gpu"));
  a.token_file = "/etc/offload/gpu.token";
  EXPECT_EQ(resolve_token_file(a, "/d"), fs::path("/etc/offload/gpu.token"));
}

TEST(ConfigAccounts, NormalizesFingerprintsLikeTls) {
  const std::string hex(64, 'b');
  EXPECT_EQ(normalize_fingerprint("sha256:" + hex), "sha256:" + hex);
  EXPECT_EQ(normalize_fingerprint(std::string(64, 'B')), "sha256:" + hex);
  std::string spaced;
  for (int i = 0; i < 32; ++i) spaced += i ? " BB" : "BB";
  EXPECT_EQ(normalize_fingerprint("SHA256:" + spaced), "sha256:" + hex);
  EXPECT_EQ(normalize_fingerprint("sha256:" + std::string(63, 'b')), "");
  EXPECT_EQ(normalize_fingerprint("sha256:" + std::string(65, 'b')), "");
  EXPECT_EQ(normalize_fingerprint("sha1:" + hex), "");
  EXPECT_EQ(normalize_fingerprint("sha256:" + std::string(63, 'b') + "g"), "");
  EXPECT_EQ(normalize_fingerprint(""), "");
}

TEST(ConfigAccountErrors, ReservedAndInvalidNames) {
  EXPECT_EQ(error_of(with_account("local", account_json())),
            "~/.docker/offload/config.json: \"accounts.local\": \"local\" is the built-in "
            "account's name (configure it under the top-level \"local\" key, or pick another "
            "name)");
  EXPECT_EQ(error_of(with_account("-gpu", account_json())),
            "~/.docker/offload/config.json: \"accounts.-gpu\": \"-gpu\" is not a valid account "
            "name (letters, digits and _ . + -, starting with a letter or digit, at least 2 "
            "characters)");
  for (const char* bad : {"g", "", "a b", "a/b", "_x", "gp\\u00fc", "a:b"})
    EXPECT_TRUE(contains(error_of(with_account(bad, account_json())),
                         "is not a valid account name"))
        << bad;
}

TEST(ConfigAccountErrors, NotAnObject) {
  EXPECT_EQ(error_of(R"({"accounts": []})"),
            "~/.docker/offload/config.json: \"accounts\": expected an object of account name to "
            "settings, like {\"gpu\": {\"type\": \"remote\", ...}}, got an array");
  EXPECT_TRUE(contains(error_of(with_account("gpu", "\"runner:1\"")),
                       "\"accounts.gpu\": expected an object like {\"type\": \"remote\""));
}

TEST(ConfigAccountErrors, Type) {
  EXPECT_EQ(error_of(with_account("gpu", account_json("type"))),
            "~/.docker/offload/config.json: \"accounts.gpu\": missing \"type\" (the account type "
            "is \"remote\": a runner started with `offload-runner serve`)");
  EXPECT_EQ(error_of(with_account("gpu", account_json("type", "\"cloud\""))),
            "~/.docker/offload/config.json: \"accounts.gpu.type\": \"cloud\" is not an account "
            "type (use \"remote\")");
  EXPECT_EQ(error_of(with_account("gpu", account_json("type", "\"local\""))),
            "~/.docker/offload/config.json: \"accounts.gpu.type\": there is one local account, "
            "built in as \"local\" (configure it under the top-level \"local\" key)");
  EXPECT_TRUE(contains(error_of(with_account("gpu", account_json("type", "1"))),
                       "\"accounts.gpu.type\": expected a string like \"remote\", got number 1"));
}

TEST(ConfigAccountErrors, UnknownKey) {
  EXPECT_EQ(error_of(with_account("gpu", account_json("token", "\"x\""))),
            "~/.docker/offload/config.json: \"accounts.gpu.token\": unknown key (known keys in "
            "\"accounts.gpu\": type, address, tokenFile, fingerprint)");
  EXPECT_TRUE(contains(error_of(with_account("gpu", account_json("token_file", "\"x\""))),
                       "did you mean \"tokenFile\"?"));
}

TEST(ConfigAccountErrors, MissingFields) {
  EXPECT_EQ(error_of(with_account("gpu", account_json("address"))),
            "~/.docker/offload/config.json: \"accounts.gpu\": missing \"address\" (the runner's "
            "host:port, e.g. runner.example.com:7443)");
  EXPECT_EQ(error_of(with_account("gpu", account_json("tokenFile"))),
            "~/.docker/offload/config.json: \"accounts.gpu\": missing \"tokenFile\" (a file "
            "holding the account token, absolute or relative to the offload directory)");
  EXPECT_EQ(error_of(with_account("gpu", account_json("fingerprint"))),
            "~/.docker/offload/config.json: \"accounts.gpu\": missing \"fingerprint\" (the "
            "\"sha256:...\" fingerprint offload-runner prints when it starts)");
}

TEST(ConfigAccountErrors, Address) {
  auto address = [](const std::string& v) {
    return error_of(with_account("gpu", account_json("address", "\"" + v + "\"")));
  };
  EXPECT_EQ(address("runner.example.com"),
            "~/.docker/offload/config.json: \"accounts.gpu.address\": \"runner.example.com\" is "
            "not host:port (use e.g. runner.example.com:7443, or [fd00::1]:7443 for IPv6)");
  EXPECT_EQ(address("https://runner:7443"),
            "~/.docker/offload/config.json: \"accounts.gpu.address\": \"https://runner:7443\" is "
            "not host:port (leave out the scheme: use e.g. runner.example.com:7443)");
  for (const char* bad : {"", ":7443", "runner:", "runner:0", "runner:65536", "runner:99999999",
                          "runner:+1", "runner:7443 ", "fd00::1:7443", "[fd00::1]", "[fd00::1]7443",
                          "[nothex]:7443", "run ner:1", "runner:1/x", "runner:-1"})
    EXPECT_TRUE(contains(address(bad), "is not host:port")) << bad << ": " << address(bad);
  EXPECT_TRUE(contains(error_of(with_account("gpu", account_json("address", "7443"))),
                       "expected a string like \"runner.example.com:7443\", got number 7443"));
}

TEST(ConfigAccountErrors, TokenFile) {
  EXPECT_EQ(error_of(with_account("gpu", account_json("tokenFile", "\"\""))),
            "~/.docker/offload/config.json: \"accounts.gpu.tokenFile\": must not be empty (a file "
            "holding the account token, absolute or relative to the offload directory)");
  EXPECT_TRUE(contains(error_of(with_account("gpu", account_json("tokenFile", "\"a\\u0000b\""))),
                       "is not a file name"));
  EXPECT_TRUE(contains(error_of(with_account("gpu", account_json("tokenFile", "[]"))),
                       "\"accounts.gpu.tokenFile\": expected a string like \"gpu.token\""));
}

TEST(ConfigAccountErrors, Fingerprint) {
  EXPECT_EQ(error_of(with_account("gpu", account_json("fingerprint", "\"sha256:abc\""))),
            "~/.docker/offload/config.json: \"accounts.gpu.fingerprint\": \"sha256:abc\" is not a "
            "SHA-256 fingerprint (use the \"sha256:...\" fingerprint offload-runner prints when "
            "it starts)");
  EXPECT_TRUE(contains(error_of(with_account("gpu", account_json("fingerprint", "\"sha1:" +
                                                                                    std::string(
                                                                                        64, 'a') +
                                                                                    "\""))),
                       "is not a SHA-256 fingerprint"));
}

TEST(ConfigAccountErrors, DefaultAccountListsAccounts) {
  EXPECT_EQ(error_of(R"({"defaultAccount": "cpu", "accounts": {"gpu": )" + account_json() +
                     "}}"),
            "~/.docker/offload/config.json: \"defaultAccount\": unknown account \"cpu\" "
            "(accounts: local, gpu; remote accounts are defined under \"accounts\")");
}

TEST(ConfigAccountErrors, MessagesAreOneLine) {
  for (const std::string& bad :
       {with_account("a\\nb", account_json()),
        with_account("gpu", account_json("address", "\"a\\nb:1\"")),
        with_account("gpu", account_json("fingerprint", "\"\\n\""))}) {
    auto msg = error_of(bad);
    ASSERT_FALSE(msg.empty()) << bad;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// --- Edits for `docker offload accounts add|remove` ---

TEST(ConfigEdit, AddingAnAccountKeepsEveryOtherKeyAndItsOrder) {
  const std::string fp = "sha256:" + std::string(64, 'e');
  const std::string text =
      "{\"logLevel\": \"debug\", \"idleTimeout\": \"90s\", \"accounts\": {}, \"version\": 1}\n";
  const std::string out =
      with_remote_account(text, "team", {"runner:7443", "team.token", fp}, kSource);
  EXPECT_EQ(out,
            "{\n  \"logLevel\": \"debug\",\n  \"idleTimeout\": \"90s\",\n  \"accounts\": {\n"
            "    \"team\": {\n      \"type\": \"remote\",\n      \"address\": \"runner:7443\",\n"
            "      \"tokenFile\": \"team.token\",\n      \"fingerprint\": \"" + fp + "\"\n    }\n"
            "  },\n  \"version\": 1\n}\n");
  // And back: only the account goes.
  EXPECT_EQ(without_remote_account(out, "team", kSource),
            "{\n  \"logLevel\": \"debug\",\n  \"idleTimeout\": \"90s\",\n  \"accounts\": {},\n"
            "  \"version\": 1\n}\n");
}

TEST(ConfigEdit, RefusesWhatWouldLoseOrBreakSomething) {
  const std::string fp = "sha256:" + std::string(64, 'e');
  auto error = [](auto f) -> std::string {
    try {
      f();
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  const RemoteAccountSettings account{"runner:7443", "t.token", fp};
  EXPECT_NE(error([&] { with_remote_account("{\"x\": 1}", "team", account, kSource); })
                .find("fix the file first"),
            std::string::npos);
  EXPECT_NE(error([&] { with_remote_account("{", "team", account, kSource); })
                .find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(error([&] { with_remote_account("", "local", account, kSource); }).find("built-in"),
            std::string::npos);
  EXPECT_NE(error([&] {
              with_remote_account("", "team", {"http://runner:1", "t", fp}, kSource);
            }).find("is not host:port"),
            std::string::npos);
  const std::string with_team = with_remote_account("", "team", account, kSource);
  EXPECT_NE(error([&] { with_remote_account(with_team, "team", account, kSource); })
                .find("exists already"),
            std::string::npos);
  EXPECT_NE(error([&] { without_remote_account("{}", "team", kSource); })
                .find("no remote account"),
            std::string::npos);
  std::string defaulted = with_team;
  defaulted.insert(1, "\"defaultAccount\": \"team\",");
  EXPECT_NE(error([&] { without_remote_account(defaulted, "team", kSource); })
                .find("default account"),
            std::string::npos);
}
