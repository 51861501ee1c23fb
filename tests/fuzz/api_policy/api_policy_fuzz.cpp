// The runner's API policy on arbitrary requests. Input: the first line is "METHOD TARGET", the
// rest is the body. It never crashes or hangs, and these hold for every input:
// - a decision is 400 (unreadable) or 403 (refused, naming what), and only for judged routes;
// - the same request is judged the same twice, and whatever the case of the method;
// - a route judged the same with one more /v1.41 in front of its path (dockerd's router takes
//   one optional version prefix), and a query-judged route ignores the body;
// - what dockerd reads the same is refused the same: a refused body stays refused when its
//   keys change case or take the non-ASCII letters encoding/json folds to s and k (every
//   member is rewritten, repeated ones included), or when whitespace follows it;
// - bind_docker_socket leaves a JSON object with no Docker socket bind left to rewrite;
// - allowances only ever lift refusals.
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "offload/runner/api_policy.h"

namespace {

using nlohmann::json;
using offload::runner::ApiPolicy;
using offload::runner::ApiRefusal;
using offload::runner::ApiRoute;
using offload::runner::Judged;

[[noreturn]] void broken() { std::abort(); }

// Rewrites a JSON text with every key passed through `rename`, members and their order kept as
// they are (an nlohmann object would keep only one member per key). Notes whether a key is one
// the judge reads as a map key, where encoding/json does not fold case.
class KeyRewriter final : public nlohmann::json_sax<json> {
 public:
  explicit KeyRewriter(std::function<std::string(const std::string&)> rename)
      : rename_(std::move(rename)) {}

  std::string out;
  bool map_keys = false;

  bool null() override { return value("null"); }
  bool boolean(bool b) override { return value(b ? "true" : "false"); }
  bool number_integer(number_integer_t v) override { return value(std::to_string(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(std::to_string(v)); }
  bool number_float(number_float_t, const string_t& s) override { return value(s); }
  bool string(string_t& s) override { return value(json(s).dump()); }
  bool binary(binary_t&) override { return false; }
  bool start_object(std::size_t) override {
    value("{");
    first_.push_back(true);
    return true;
  }
  bool key(string_t& k) override {
    separate();
    const auto folded = offload::runner::fold_json_key(k);
    if (folded == "options" || folded == "driveropts") map_keys = true;
    out += json(rename_(k)).dump();
    out += ':';
    after_key_ = true;
    return true;
  }
  bool end_object() override { return close('}'); }
  bool start_array(std::size_t) override {
    value("[");
    first_.push_back(true);
    return true;
  }
  bool end_array() override { return close(']'); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  bool value(std::string_view text) {
    if (!after_key_) separate();
    after_key_ = false;
    out += text;
    return true;
  }
  void separate() {
    if (first_.empty()) return;
    if (!first_.back()) out += ',';
    first_.back() = false;
  }
  bool close(char c) {
    out += c;
    if (!first_.empty()) first_.pop_back();
    return true;
  }

  std::function<std::string(const std::string&)> rename_;
  std::vector<bool> first_;  // per open object or array: nothing written in it yet
  bool after_key_ = false;
};

std::string ascii_case(const std::string& s, bool to_upper) {
  std::string out = s;
  for (auto& c : out) {
    if (to_upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (!to_upper && c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// s → U+017F, k → U+212A: encoding/json matches them to the same field names.
std::string exotic_letters(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == 's' || c == 'S')
      out += "\xC5\xBF";
    else if (c == 'k' || c == 'K')
      out += "\xE2\x84\xAA";
    else
      out += c;
  }
  return out;
}

bool same(const std::optional<ApiRefusal>& a, const std::optional<ApiRefusal>& b) {
  return a.has_value() == b.has_value() && (!a || (a->status == b->status && a->message == b->message));
}

void check_decision(const std::optional<ApiRefusal>& d) {
  if (!d) return;
  if (d->status == 403) {
    if (d->message.rfind("this offload runner does not allow ", 0) != 0) broken();
  } else if (d->status == 400) {
    if (d->message.find("cannot read") == std::string::npos) broken();
  } else {
    broken();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace offload::runner;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto eol = input.find('\n');
  std::string_view line = input.substr(0, eol);
  std::string body(eol == std::string_view::npos ? std::string_view() : input.substr(eol + 1));
  auto space = line.find(' ');
  if (space == std::string_view::npos) return 0;
  std::string method(line.substr(0, space));
  std::string target(line.substr(space + 1));

  ApiPolicy policy;
  policy.sync_root = "/var/lib/offload-runner/sessions/s/sync";
  policy.resolve = [](const std::filesystem::path& p) -> std::optional<std::filesystem::path> {
    return p;
  };
  const ApiRoute route = api_route(method, target);
  const Judged how = judged(route);
  const auto decision = judge_request(route, body, policy);
  check_decision(decision);
  if (how == Judged::no && decision) broken();
  if (!same(judge_request(route, body, policy), decision)) broken();
  if (judged(api_route(ascii_case(method, false), target)) != how) broken();
  if (how == Judged::query && !same(judge_request(route, "", policy), decision)) broken();

  // One more version prefix in front of the route's own path: dockerd strips one. (Not in front
  // of the raw target: "/x/../v1.41/..." is "/v1.41/..." only after cleaning, and dockerd does
  // not strip a second prefix after that either.)
  if (route.path != "/" && route.path.find_first_of("%?") == std::string::npos) {
    const ApiRoute versioned =
        api_route(method, "/v1.41" + route.path + (route.query.empty() ? "" : "?" + route.query));
    if (versioned.path != route.path || versioned.query != route.query) broken();
    if (judged(versioned) != how) broken();
    if (!same(judge_request(versioned, body, policy), decision)) broken();
  }

  // Allowances lift refusals; they never add one.
  ApiPolicy lenient = policy;
  lenient.allow.privileged = lenient.allow.host_namespaces = lenient.allow.devices = true;
  lenient.allow.capabilities = {"SYS_ADMIN", "NET_ADMIN", "ALL"};
  const auto lenient_decision = judge_request(route, body, lenient);
  check_decision(lenient_decision);
  if (lenient_decision && !decision) broken();

  // The runner's docker.sock rewrite: a JSON object comes out, with no Docker socket bind left
  // (a second pass changes nothing), and the gated socket is the only path it adds.
  const std::string gated = "/run/offload-runner/s/api/docker.sock";
  if (auto rewritten = offload::runner::bind_docker_socket(body, gated)) {
    if (!json::parse(*rewritten, nullptr, false).is_object()) broken();
    if (offload::runner::bind_docker_socket(*rewritten, gated)) broken();
    if (rewritten->find(gated) == std::string::npos) broken();
  }

  if (how != Judged::body || !decision) return 0;
  // A refused body stays refused when spelled as dockerd reads it the same.
  if (!judge_request(route, body + " \r\n\t", policy)) broken();
  const std::function<std::string(const std::string&)> spellings[] = {
      [](const std::string& k) { return ascii_case(k, true); },
      [](const std::string& k) { return ascii_case(k, false); },
      exotic_letters,
  };
  for (const auto& rename : spellings) {
    KeyRewriter rewriter(rename);
    if (!json::sax_parse(body, &rewriter)) return 0;  // not JSON: refused for that
    if (rewriter.map_keys) return 0;  // map keys (volume options) do not fold in Go
    if (!judge_request(route, rewriter.out, policy)) broken();
  }
  return 0;
}
