// The docker CLI's context store and its `currentContext` (docker-facts.md, "Context store").
// The user's config.json belongs to the user: every write is atomic, keeps every key we do not
// own (in order, tab-indented like the docker CLI writes it), keeps the file's mode, follows a
// symlinked config.json to its target, and never happens when nothing would change. A file we
// cannot parse is never rewritten.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace offload {

// One line naming the file, what is wrong and that it was left untouched.
struct ContextError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kOffloadContextName = "docker-offload";
// Marker in a context's Metadata so other tools can recognise our context.
inline constexpr const char* kOffloadMetadataKey = "com.docker.offload";

// The context the docker CLI would use from `config_json` (the text of its config.json): the
// value of `currentContext`, "default" when absent or empty. Like the docker CLI, an empty
// (whitespace-only) file or `null` counts as no settings, and the key matches case-insensitively
// (the last matching key wins, as with Go's encoding/json). `source` names the file in errors.
// Throws ContextError for invalid JSON, a non-object, or a non-string currentContext.
std::string parse_current_context(std::string_view config_json, const std::string& source);

// True if the docker CLI accepts `name` for a context it stores: ^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$.
bool is_valid_context_name(std::string_view name);

class ContextStore {
 public:
  explicit ContextStore(std::filesystem::path docker_config_dir);

  // See parse_current_context; an absent config.json is "default". Throws ContextError when the
  // file cannot be read or parsed.
  std::string current_context() const;

  // Makes `name` the current context and returns the previous one. "default" (or "") removes
  // the key. Creates the config dir (0700) and config.json (0600) when absent. Throws
  // ContextError, leaving the file untouched, if it cannot be parsed or written.
  std::string use_context(const std::string& name);

  // Creates or updates contexts/meta/<sha256(name)>/meta.json so that the docker endpoint is
  // `docker_host`, with `description` and the offload marker in Metadata. Other Metadata keys
  // and other endpoints of an existing context are kept; an unparsable meta.json is replaced (it
  // is ours by name, and the docker CLI cannot use it either). Dirs 0755, file 0644.
  // Throws ContextError for a name the docker CLI would reject or on I/O failure.
  void write_context(const std::string& name, const std::string& docker_host,
                     const std::string& description);

  // "default" always exists: the docker CLI builds it in and it has no meta.json.
  bool context_exists(const std::string& name) const;

  // Endpoints.docker.Host of a stored context; nullopt when the context is absent, is
  // "default", or its meta.json is unreadable or has no docker host (rewrite it then).
  std::optional<std::string> context_host(const std::string& name) const;

  // Removes the context's meta and tls directories; a missing context is fine. Does not touch
  // currentContext: switch away first. Throws ContextError on I/O failure.
  void remove_context(const std::string& name);

  std::filesystem::path config_file() const;
  // contexts/meta/<sha256(name)>/meta.json, whether or not it exists.
  std::filesystem::path meta_file(const std::string& name) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace offload
