#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "offload/common/fs.h"
#include "offload/common/token.h"
#include "offload/config/config.h"

using namespace offload;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

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

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / ("offload-config-" + random_hex(6))) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void expect_defaults(const OffloadConfig& c) {
  EXPECT_EQ(c.version, 1);
  EXPECT_EQ(c.default_account, "local");
  EXPECT_EQ(c.start_timeout, 2min);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.local.address_pool, "10.213.0.0/16");
  EXPECT_FALSE(c.ports.bind_all_interfaces);
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
  EXPECT_EQ(to_json(OffloadConfig{}),
            "{\n  \"version\": 1,\n  \"defaultAccount\": \"local\",\n  \"startTimeout\": \"2m\",\n"
            "  \"logLevel\": \"info\",\n  \"local\": {\n    \"addressPool\": \"10.213.0.0/16\"\n"
            "  },\n  \"ports\": {\n    \"bindAllInterfaces\": false\n  }\n}\n");
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
  EXPECT_EQ(error_of(R"({"idleTimeout": "5m"})"),
            "~/.docker/offload/config.json: \"idleTimeout\": unknown key (known keys: version, "
            "defaultAccount, startTimeout, logLevel, local, ports)");
}

TEST(ConfigErrors, UnknownKeySuggestsSpelling) {
  EXPECT_EQ(error_of(R"({"start_timeout": "5m"})"),
            "~/.docker/offload/config.json: \"start_timeout\": unknown key, did you mean "
            "\"startTimeout\"? (known keys: version, defaultAccount, startTimeout, logLevel, "
            "local, ports)");
  EXPECT_TRUE(contains(error_of(R"({"LogLevel": "info"})"), "did you mean \"logLevel\"?"));
}

TEST(ConfigErrors, UnknownNestedKey) {
  EXPECT_EQ(error_of(R"({"local": {"addressPool": "10.213.0.0/16", "pool": "x"}})"),
            "~/.docker/offload/config.json: \"local.pool\": unknown key (known keys in "
            "\"local\": addressPool)");
  EXPECT_EQ(error_of(R"({"ports": {"bindAll": true}})"),
            "~/.docker/offload/config.json: \"ports.bindAll\": unknown key (known keys in "
            "\"ports\": bindAllInterfaces)");
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
            "local)");
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
