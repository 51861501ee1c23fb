#include "offload/daemon/state_file.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "offload/common/clock.h"
#include "offload/common/fs.h"

namespace offload::daemon {
namespace fs = std::filesystem;

std::string to_json(const PersistedSession& s) {
  nlohmann::ordered_json j;
  j["version"] = 1;
  j["account"] = s.account;
  j["runnerAddress"] = s.endpoint.address;
  j["runnerFingerprint"] = s.endpoint.fingerprint;
  j["accountToken"] = s.endpoint.account_token;
  j["sessionId"] = s.session_id;
  j["sessionToken"] = s.session_token;
  j["previousContext"] = s.previous_context;
  j["startedUnixMs"] = s.started_unix_ms;
  j["localRunnerPid"] = s.runner_pid;
  return j.dump(2) + "\n";
}

PersistedSession parse_persisted_session(std::string_view json, const std::string& source) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object()) throw std::runtime_error(source + " is not a JSON object");
  if (j.value("version", 0) != 1)
    throw std::runtime_error(source + " has an unsupported version");
  PersistedSession s;
  try {
    s.account = j.at("account").get<std::string>();
    s.endpoint.address = j.at("runnerAddress").get<std::string>();
    s.endpoint.fingerprint = j.at("runnerFingerprint").get<std::string>();
    s.endpoint.account_token = j.at("accountToken").get<std::string>();
    s.session_id = j.at("sessionId").get<std::string>();
    s.session_token = j.at("sessionToken").get<std::string>();
    s.previous_context = j.at("previousContext").get<std::string>();
    s.started_unix_ms = j.at("startedUnixMs").get<std::int64_t>();
    s.runner_pid = j.value("localRunnerPid", -1);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(source + ": missing or malformed field (" + e.what() + ")");
  }
  return s;
}

std::optional<PersistedSession> StateFile::load() const {
  std::string text;
  if (auto ec = read_file(path_, text)) {
    if (ec != std::errc::no_such_file_or_directory)
      spdlog::error("cannot read {}: {}", path_.string(), ec.message());
    return std::nullopt;
  }
  try {
    return parse_persisted_session(text, path_.string());
  } catch (const std::exception& e) {
    fs::path aside = path_;
    aside += ".corrupt-" + std::to_string(unix_now_ms());
    std::error_code ec;
    fs::rename(path_, aside, ec);
    spdlog::error("{}; moved it to {}", e.what(), aside.string());
    return std::nullopt;
  }
}

void StateFile::save(const PersistedSession& session) const {
  if (auto ec = write_file_atomic(path_, to_json(session), fs::perms(0600)))
    throw std::runtime_error("cannot write " + path_.string() + ": " + ec.message());
}

void StateFile::remove() const {
  std::error_code ec;
  fs::remove(path_, ec);
}

}  // namespace offload::daemon
