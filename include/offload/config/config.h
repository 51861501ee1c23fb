// offloadd's own settings: $DOCKER_CONFIG/offload/config.json (not the docker CLI's config.json).
// Versioned and strict: an unknown key is far more likely a typo than a feature of a newer
// offloadd, so it is rejected with a message naming the key and the keys that exist.
#pragma once

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace offload {

// One actionable line: "<source>: <json key path>: <what is wrong and what is allowed>".
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct LocalAccountSettings {
  // IPv4 CIDR the embedded runner carves per-session /30 networks from.
  std::string address_pool = "10.213.0.0/16";
};

struct PortSettings {
  // Published ports on 0.0.0.0/:: listen on every interface of this machine, as Docker does,
  // instead of on loopback only.
  bool bind_all_interfaces = false;
};

struct OffloadConfig {
  int version = 1;
  std::string default_account = "local";
  std::chrono::milliseconds start_timeout = std::chrono::minutes(2);
  std::string log_level = "info";
  LocalAccountSettings local;
  PortSettings ports;
};

// Parses and validates the JSON text; absent keys keep their defaults. `source` is the name to
// show for the file in messages (e.g. "~/.docker/offload/config.json"). Throws ConfigError.
OffloadConfig parse_config(std::string_view json, const std::string& source);

// Reads the file: an absent file means defaults; an unreadable or invalid one throws ConfigError
// naming the file.
OffloadConfig load_config(const std::filesystem::path& file);

// Every key, camelCase, two-space indented, trailing newline. parse_config(to_json(c)) == c.
std::string to_json(const OffloadConfig& config);

}  // namespace offload
