#include "offload/dockerctx/context_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <nlohmann/json.hpp>
#include <system_error>
#include <utility>
#include <vector>

#include "offload/common/fs.h"
#include "offload/common/token.h"

namespace offload {
namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

constexpr const char* kCurrentContextKey = "currentContext";
constexpr const char* kDefaultContext = "default";
constexpr const char* kUntouched = "docker-offload left it untouched";

bool ascii_iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string type_phrase(const ordered_json& v) {
  switch (v.type()) {
    case ordered_json::value_t::string: return "a string";
    case ordered_json::value_t::boolean: return "a boolean";
    case ordered_json::value_t::null: return "null";
    case ordered_json::value_t::object: return "an object";
    case ordered_json::value_t::array: return "an array";
    default: return "a number";
  }
}

// A key from the user's file, safe to put in a one-line message.
std::string quote(const std::string& key) {
  return ordered_json(key).dump(-1, ' ', true, ordered_json::error_handler_t::replace);
}

// Go's encoding/json fills a struct field from every key that matches its name ignoring case,
// in document order, so the docker CLI sees the last such key.
const ordered_json* effective_current_context(const ordered_json& doc, std::string* key_out) {
  const ordered_json* found = nullptr;
  for (const auto& [key, value] : doc.items()) {
    if (ascii_iequals(key, kCurrentContextKey)) {
      found = &value;
      if (key_out) *key_out = key;
    }
  }
  return found;
}

// The docker CLI treats an empty file (and `null`) as "no settings"; so do we.
ordered_json parse_config_json(std::string_view text, const std::string& source) {
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }))
    return ordered_json::object();
  ordered_json doc;
  try {
    doc = ordered_json::parse(text);
  } catch (const ordered_json::parse_error& e) {
    std::size_t upto = std::min<std::size_t>(e.byte > 0 ? e.byte - 1 : 0, text.size());
    auto head = text.substr(0, upto);
    std::size_t line = 1 + static_cast<std::size_t>(std::count(head.begin(), head.end(), '\n'));
    auto nl = head.rfind('\n');
    std::size_t column = nl == std::string_view::npos ? upto + 1 : upto - nl;
    throw ContextError(source + " is not valid JSON (line " + std::to_string(line) +
                       ", column " + std::to_string(column) + "): fix or move it; " + kUntouched);
  } catch (const ordered_json::exception&) {
    // Valid JSON we cannot hold without changing it (a number beyond double range): rewriting
    // the file would alter the user's value, so refuse like for a syntax error.
    throw ContextError(source + " holds a number too large to keep exactly: fix or move it; " +
                       kUntouched);
  }
  if (doc.is_null()) return ordered_json::object();
  if (!doc.is_object())
    throw ContextError(source + " is not a JSON object (it holds " + type_phrase(doc) +
                       "): fix or move it; " + kUntouched);
  std::string key;
  if (const auto* v = effective_current_context(doc, &key); v && !v->is_string())
    throw ContextError(source + ": " + quote(key) + " is " + type_phrase(*v) +
                       ", not a string: fix it; " + kUntouched);
  return doc;
}

std::string current_of(const ordered_json& doc) {
  const auto* v = effective_current_context(doc, nullptr);
  if (!v || v->get_ref<const std::string&>().empty()) return kDefaultContext;
  return v->get<std::string>();
}

// Creates each missing directory from `base` down to `dir` with `mode` (exactly, not masked by
// the umask: the docker CLI expects to read them). Existing directories are left as they are.
std::error_code make_dirs(const fs::path& dir, fs::perms mode) {
  std::vector<fs::path> missing;
  for (fs::path p = dir; !p.empty() && !fs::exists(p); p = p.parent_path()) {
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  std::error_code ec;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST)
      return {errno, std::generic_category()};
    fs::permissions(*it, mode, ec);
    if (ec) return ec;
  }
  return {};
}

std::string context_id(const std::string& name) { return sha256_hex(name); }

}  // namespace

std::string parse_current_context(std::string_view config_json, const std::string& source) {
  return current_of(parse_config_json(config_json, source));
}

bool is_valid_context_name(std::string_view name) {
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  if (name.size() < 2 || !alnum(name.front())) return false;
  return std::all_of(name.begin() + 1, name.end(), [&](char c) {
    return alnum(c) || c == '_' || c == '.' || c == '+' || c == '-';
  });
}

ContextStore::ContextStore(fs::path docker_config_dir) : dir_(std::move(docker_config_dir)) {}

fs::path ContextStore::config_file() const { return dir_ / "config.json"; }

fs::path ContextStore::meta_file(const std::string& name) const {
  return dir_ / "contexts" / "meta" / context_id(name) / "meta.json";
}

std::string ContextStore::current_context() const {
  const auto file = config_file();
  std::string text;
  if (auto ec = read_file(file, text)) {
    if (ec == std::errc::no_such_file_or_directory) return kDefaultContext;
    throw ContextError(display_path(file) + " could not be read (" + ec.message() + "); " +
                       kUntouched);
  }
  return parse_current_context(text, display_path(file));
}

std::string ContextStore::use_context(const std::string& name) {
  const std::string target = name.empty() ? kDefaultContext : name;
  const fs::path file = config_file();
  const std::string shown = display_path(file);

  // Dotfile managers symlink config.json; replacing the link with a file would silently detach
  // it from the user's repository. Write through to the target, as the docker CLI does.
  fs::path write_path = file;
  std::error_code ec;
  if (fs::is_symlink(file, ec)) {
    auto resolved = fs::weakly_canonical(file, ec);
    if (!ec) write_path = resolved;
  }

  std::string text;
  bool existed = true;
  if (auto rec = read_file(file, text)) {
    if (rec != std::errc::no_such_file_or_directory)
      throw ContextError(shown + " could not be read (" + rec.message() + "); " + kUntouched);
    existed = false;
  }
  ordered_json doc = existed ? parse_config_json(text, shown) : ordered_json::object();

  const std::string previous = current_of(doc);
  if (previous == target) return previous;

  // Drop case variants of the key so the docker CLI cannot read a stale one after ours.
  std::vector<std::string> variants;
  for (const auto& [key, value] : doc.items())
    if (key != kCurrentContextKey && ascii_iequals(key, kCurrentContextKey)) variants.push_back(key);
  for (const auto& key : variants) doc.erase(key);
  if (target == kDefaultContext)
    doc.erase(kCurrentContextKey);
  else
    doc[kCurrentContextKey] = target;  // in place when present: the user's key order stays

  fs::perms mode = fs::perms(0600);
  if (existed) {
    struct stat st {};
    if (::stat(write_path.c_str(), &st) == 0) mode = fs::perms(st.st_mode & 07777);
  } else if (auto dec = make_dirs(dir_, fs::perms(0700))) {
    throw ContextError("could not create " + display_path(dir_) + ": " + dec.message());
  }

  // The docker CLI writes config.json with json.MarshalIndent(..., "", "\t") and no newline.
  std::string data = doc.dump(1, '\t', false, ordered_json::error_handler_t::replace);
  if (auto wec = write_file_atomic(write_path, data, mode))
    throw ContextError(shown + " could not be written (" + wec.message() + "); " + kUntouched);
  return previous;
}

void ContextStore::write_context(const std::string& name, const std::string& docker_host,
                                 const std::string& description) {
  if (name == kDefaultContext || !is_valid_context_name(name))
    throw ContextError("invalid context name " + quote(name) +
                       ": the docker CLI accepts [a-zA-Z0-9][a-zA-Z0-9_.+-]+ except \"default\"");
  const fs::path file = meta_file(name);

  std::string existing;
  ordered_json doc = ordered_json::object();
  bool existed = !read_file(file, existing);
  if (existed) {
    try {
      doc = ordered_json::parse(existing);
    } catch (const ordered_json::exception&) {
      doc = ordered_json::object();
    }
    if (!doc.is_object()) doc = ordered_json::object();
  }

  doc["Name"] = name;
  auto& metadata = doc["Metadata"];
  if (!metadata.is_object()) metadata = ordered_json::object();
  metadata["Description"] = description;
  metadata[kOffloadMetadataKey] = true;
  auto& endpoints = doc["Endpoints"];
  if (!endpoints.is_object()) endpoints = ordered_json::object();
  auto& docker = endpoints["docker"];
  if (!docker.is_object()) docker = ordered_json::object();
  docker["Host"] = docker_host;
  docker["SkipTLSVerify"] = false;

  // Compact, as the docker CLI writes meta.json.
  std::string data = doc.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
  if (existed && data == existing) return;

  if (!fs::exists(dir_)) {
    if (auto ec = make_dirs(dir_, fs::perms(0700)))
      throw ContextError("could not create " + display_path(dir_) + ": " + ec.message());
  }
  if (auto ec = make_dirs(file.parent_path(), fs::perms(0755)))
    throw ContextError("could not create " + display_path(file.parent_path()) + ": " +
                       ec.message());
  if (auto ec = write_file_atomic(file, data, fs::perms(0644)))
    throw ContextError("could not write " + display_path(file) + ": " + ec.message());
}

bool ContextStore::context_exists(const std::string& name) const {
  if (name == kDefaultContext) return true;
  std::error_code ec;
  return fs::is_regular_file(meta_file(name), ec);
}

std::optional<std::string> ContextStore::context_host(const std::string& name) const {
  if (name == kDefaultContext) return std::nullopt;
  std::string text;
  if (read_file(meta_file(name), text)) return std::nullopt;
  try {
    auto doc = ordered_json::parse(text);
    const auto& host = doc.at("Endpoints").at("docker").at("Host");
    if (host.is_string()) return host.get<std::string>();
  } catch (const ordered_json::exception&) {
  }
  return std::nullopt;
}

void ContextStore::remove_context(const std::string& name) {
  if (name == kDefaultContext) return;
  const auto id = context_id(name);
  for (const auto& dir : {dir_ / "contexts" / "meta" / id, dir_ / "contexts" / "tls" / id}) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) throw ContextError("could not remove " + display_path(dir) + ": " + ec.message());
  }
}

}  // namespace offload
