// offloadd's own settings: $DOCKER_CONFIG/offload/config.json (not the docker CLI's config.json).
// Versioned and strict: an unknown key is far more likely a typo than a feature of a newer
// offloadd, so it is rejected with a message naming the key and the keys that exist.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>
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
  // Forwarded TCP connections use the runner's data channel when it has one (false: always the
  // gRPC tunnel; for troubleshooting).
  bool data_channel = true;
  // The data channel multiplexes forwarded connections over one TLS connection (ODC2) when the
  // runner can (false: a TLS connection per forwarded connection, ODC1; for troubleshooting).
  bool multiplex_data_channel = true;
};

struct SyncSettings {
  // Paths that never leave this machine, in .dockerignore syntax, applied to every synchronised
  // bind mount (each mount's own .offloadignore adds to them).
  std::vector<std::string> exclude;
};

// An `offload-runner serve` elsewhere, reached over TLS with a pinned certificate.
struct RemoteAccountSettings {
  std::string address;      // "host:port" or "[v6]:port", as validated by parse_config
  // As written: absolute, or relative to the offload directory (resolve_token_file). Its
  // existence is checked when the account is used, not when the config is read, so a token
  // that is not there yet does not keep offloadd from starting.
  std::string token_file;
  std::string fingerprint;  // normalised "sha256:<64 lowercase hex>"
};

// The account name the embedded runner answers to; no remote account may take it.
inline constexpr const char* kLocalAccountName = "local";

struct OffloadConfig {
  int version = 1;
  std::string default_account = kLocalAccountName;
  std::chrono::milliseconds start_timeout = std::chrono::minutes(2);
  std::string log_level = "info";
  // Lifecycle limits asked of the runner. Zero idle_timeout: never end an idle session; zero
  // max_session_duration: no maximum. client_ttl is always longer than zero.
  std::chrono::milliseconds idle_timeout = std::chrono::minutes(5);
  std::chrono::milliseconds client_ttl = std::chrono::minutes(10);
  std::chrono::milliseconds max_session_duration = std::chrono::hours(8);
  LocalAccountSettings local;
  PortSettings ports;
  SyncSettings sync;
  std::map<std::string, RemoteAccountSettings> accounts;  // by name; never "local"
};

// `account.token_file` as a path: relative ones are taken from `offload_dir`
// ($DOCKER_CONFIG/offload), where config.json itself lives.
std::filesystem::path resolve_token_file(const RemoteAccountSettings& account,
                                         const std::filesystem::path& offload_dir);

// Parses and validates the JSON text; absent keys keep their defaults. `source` is the name to
// show for the file in messages (e.g. "~/.docker/offload/config.json"). Throws ConfigError.
OffloadConfig parse_config(std::string_view json, const std::string& source);

// Reads the file: an absent file means defaults; an unreadable or invalid one throws ConfigError
// naming the file.
OffloadConfig load_config(const std::filesystem::path& file);

// Every key, camelCase, two-space indented, trailing newline. parse_config(to_json(c)) == c.
std::string to_json(const OffloadConfig& config);

// Edits of the config file's text (`docker offload accounts add|remove`): every other key and
// value is kept as written (key order too; the layout becomes two-space indented JSON). Empty
// `text` means no file yet. Both refuse (ConfigError) a file that is not valid now, since an
// edit must never turn a file the user can fix into one that lost something, and check that the
// result is valid.
//
// `text` with remote account `name` added; refuses "local", invalid names and a name that exists.
std::string with_remote_account(std::string_view text, const std::string& name,
                                const RemoteAccountSettings& account, const std::string& source);
// `text` without remote account `name`; refuses an unknown name and the default account.
std::string without_remote_account(std::string_view text, const std::string& name,
                                   const std::string& source);

}  // namespace offload
