#include "offload/runner/session_snapshot.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "offload/engine/engine.h"
#include "offload/sync/replica.h"

namespace offload::runner {

using nlohmann::json;

namespace {

constexpr int kSnapshotVersion = 1;

[[noreturn]] void bad(const std::string& what) {
  throw std::runtime_error("session record: " + what);
}

bool lower_hex(std::string_view s, std::size_t size) {
  if (s.size() != size) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// A name the replica accepts for the one file of a single-file mount: one path component.
bool file_name_ok(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\0", 2)) == std::string::npos;
}

const json& field(const json& doc, const char* key, json::value_t type) {
  auto it = doc.find(key);
  if (it == doc.end()) bad(std::string("no \"") + key + "\"");
  bool ok = it->type() == type ||
            (type == json::value_t::number_integer && it->is_number_unsigned());
  if (!ok) bad(std::string("\"") + key + "\" has the wrong type");
  return *it;
}

std::string text(const json& doc, const char* key) {
  return field(doc, key, json::value_t::string).get<std::string>();
}

std::chrono::milliseconds millis(const json& doc, const char* key) {
  const json& v = field(doc, key, json::value_t::number_integer);
  if (v.is_number_unsigned() ? v.get<std::uint64_t>() > INT64_MAX : v.get<std::int64_t>() < 0)
    bad(std::string("\"") + key + "\" is out of range");
  return std::chrono::milliseconds(v.get<std::int64_t>());
}

}  // namespace

std::string snapshot_json(const SessionSnapshot& s) {
  json mounts = json::object();
  for (const auto& [id, file] : s.mounts) mounts[id] = file ? json(*file) : json(nullptr);
  json caps = json::array();
  for (const auto& cap : s.allow.capabilities) caps.push_back(cap);
  json doc = {
      {"version", kSnapshotVersion},
      {"id", s.id},
      {"token_sha256", s.token_sha256},
      {"account", s.account},
      {"client_label", s.client_label},
      {"created_unix_ms", s.created_unix_ms},
      {"limits",
       {{"idle_timeout_ms", s.limits.idle_timeout.count()},
        {"idle_warning_ms", s.limits.idle_warning.count()},
        {"client_ttl_ms", s.limits.client_ttl.count()},
        {"max_duration_ms", s.limits.max_duration.count()}}},
      {"allow",
       {{"privileged", s.allow.privileged},
        {"host_namespaces", s.allow.host_namespaces},
        {"devices", s.allow.devices},
        {"gpu", s.allow.gpu},
        {"capabilities", caps}}},
      {"mounts", mounts},
  };
  return doc.dump();
}

SessionSnapshot parse_session_snapshot(std::string_view text_in, const std::string& expected_id) {
  json doc = json::parse(text_in, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) bad("not a JSON object");
  if (field(doc, "version", json::value_t::number_integer) != kSnapshotVersion)
    bad("unknown version");
  SessionSnapshot s;
  s.id = text(doc, "id");
  if (s.id != expected_id) bad("its id is not the session's own");
  s.token_sha256 = text(doc, "token_sha256");
  if (!lower_hex(s.token_sha256, 64)) bad("\"token_sha256\" is not a SHA-256");
  s.account = text(doc, "account");
  if (s.account.empty()) bad("no account");
  s.client_label = text(doc, "client_label");
  const json& created = field(doc, "created_unix_ms", json::value_t::number_integer);
  if (created.is_number_unsigned() ? created.get<std::uint64_t>() > INT64_MAX
                                   : created.get<std::int64_t>() < 0)
    bad("\"created_unix_ms\" is out of range");
  s.created_unix_ms = created.get<std::int64_t>();

  const json& limits = field(doc, "limits", json::value_t::object);
  s.limits.idle_timeout = millis(limits, "idle_timeout_ms");
  s.limits.idle_warning = millis(limits, "idle_warning_ms");
  s.limits.client_ttl = millis(limits, "client_ttl_ms");
  s.limits.max_duration = millis(limits, "max_duration_ms");

  const json& allow = field(doc, "allow", json::value_t::object);
  s.allow.privileged = field(allow, "privileged", json::value_t::boolean).get<bool>();
  s.allow.host_namespaces = field(allow, "host_namespaces", json::value_t::boolean).get<bool>();
  s.allow.devices = field(allow, "devices", json::value_t::boolean).get<bool>();
  // Records written before GPU sessions existed have no "gpu": such a session had none.
  if (allow.contains("gpu")) s.allow.gpu = field(allow, "gpu", json::value_t::boolean).get<bool>();
  for (const auto& cap : field(allow, "capabilities", json::value_t::array)) {
    if (!cap.is_string()) bad("a capability is not a string");
    auto name = cap.get<std::string>();
    if (name.empty() || name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789") !=
                            std::string::npos)
      bad("\"" + name + "\" is not a capability name");
    s.allow.capabilities.insert(name);
  }

  for (const auto& [id, file] : field(doc, "mounts", json::value_t::object).items()) {
    if (!sync::valid_mount_id(id)) bad("\"" + id + "\" is not a mount id");
    if (file.is_null()) {
      s.mounts.emplace(id, std::nullopt);
    } else if (file.is_string() && file_name_ok(file.get<std::string>())) {
      s.mounts.emplace(id, file.get<std::string>());
    } else {
      bad("mount " + id + " names no valid file");
    }
  }
  return s;
}

}  // namespace offload::runner
