// The runner's API policy on arbitrary requests. Input: the first line is "METHOD TARGET", the
// rest is the body. It never crashes or hangs, answers only 400 or 403, and what it decides does
// not depend on the spellings dockerd treats as equal: an extra /v1.41 prefix, upper-case JSON
// keys.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "offload/runner/api_policy.h"

namespace {

nlohmann::json upper_keys(const nlohmann::json& j) {
  if (j.is_object()) {
    nlohmann::json out = nlohmann::json::object();
    for (auto it = j.begin(); it != j.end(); ++it) {
      std::string key = it.key();
      for (auto& c : key)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
      out[key] = upper_keys(it.value());
    }
    return out;
  }
  if (j.is_array()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& v : j) out.push_back(upper_keys(v));
    return out;
  }
  return j;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace offload::runner;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto eol = input.find('\n');
  std::string_view line = input.substr(0, eol);
  std::string_view body = eol == std::string_view::npos ? std::string_view() : input.substr(eol + 1);
  auto space = line.find(' ');
  if (space == std::string_view::npos) return 0;
  std::string method(line.substr(0, space));
  std::string target(line.substr(space + 1));

  ApiPolicy policy;
  policy.sync_root = "/var/lib/offload-runner/sessions/s/sync";
  policy.resolve = [](const std::filesystem::path& p) -> std::optional<std::filesystem::path> {
    return p;
  };
  ApiRoute route = api_route(method, target);
  auto decision = judge_request(route, body, policy);
  if (decision && decision->status != 400 && decision->status != 403) std::abort();
  if (judged(route) == Judged::no && decision) std::abort();

  // dockerd's router takes one optional version prefix: add one where there is none.
  if (!target.empty() && target.front() == '/' && target.rfind("/v", 0) != 0) {
    ApiRoute versioned = api_route(method, "/v1.41" + target);
    if (judged(versioned) != judged(route)) std::abort();
    if (judge_request(versioned, body, policy).has_value() != decision.has_value()) std::abort();
  }
  // Go matches struct field names case-insensitively: a refusal stays one when the keys change
  // case (upper-casing can merge keys, which only adds candidates). Not so for map keys (volume
  // driver options), so bodies with those are left out.
  std::string lower(body);
  for (auto& c : lower)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (decision && decision->status == 403 && lower.find("options") == std::string::npos &&
      lower.find("driveropts") == std::string::npos) {
    auto doc = nlohmann::json::parse(body, nullptr, false);
    if (!doc.is_discarded() && doc.is_object()) {
      auto shouted = upper_keys(doc).dump();
      if (!judge_request(route, shouted, policy).has_value()) std::abort();
    }
  }
  return 0;
}
