#include "offload/daemon/bind_rewrite.h"

#include <array>
#include <stdexcept>
#include <string_view>
#include <type_traits>

namespace offload::daemon {
using nlohmann::json;

namespace {

// Docker's linuxValidMountMode: every comma-separated item is known, and at most one item of
// each kind is given. The empty mode is valid.
bool valid_mount_mode(std::string_view mode) {
  if (mode.empty()) return true;
  static constexpr std::array<std::array<std::string_view, 6>, 5> kinds{{
      {"rw", "ro"},
      {"z", "Z"},
      {"private", "rprivate", "slave", "rslave", "shared", "rshared"},
      {"nocopy"},
      {"consistent", "cached", "delegated"},
  }};
  std::array<int, kinds.size()> seen{};
  for (std::size_t start = 0;;) {
    auto comma = mode.find(',', start);
    auto item = mode.substr(start, comma == std::string_view::npos ? mode.npos : comma - start);
    bool known = false;
    for (std::size_t k = 0; k < kinds.size() && !known; ++k) {
      for (auto name : kinds[k]) {
        if (!name.empty() && name == item) {
          known = true;
          if (++seen[k] > 1) return false;
          break;
        }
      }
    }
    if (!known) return false;
    if (comma == std::string_view::npos) return true;
    start = comma + 1;
  }
}

bool mode_is_read_only(std::string_view mode) {
  for (std::size_t start = 0;;) {
    auto comma = mode.find(',', start);
    if (mode.substr(start, comma == std::string_view::npos ? mode.npos : comma - start) == "ro")
      return true;
    if (comma == std::string_view::npos) return false;
    start = comma + 1;
  }
}

struct ParsedBind {
  std::string_view source;  // empty for an anonymous volume ("/target" alone)
  bool read_only = false;
};

// Docker's linuxParser.ParseMountRaw, as far as the source and the mode go.
ParsedBind parse_bind_entry(std::string_view raw) {
  auto invalid = [&] {
    return std::invalid_argument("invalid volume specification: '" + std::string(raw) + "'");
  };
  std::array<std::string_view, 3> parts;
  std::size_t count = 0;
  for (std::size_t start = 0;;) {
    auto colon = raw.find(':', start);
    if (count == parts.size()) throw invalid();  // more than src:dst:mode
    parts[count++] = raw.substr(start, colon == std::string_view::npos ? raw.npos : colon - start);
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  if (parts[0].empty()) throw invalid();
  std::string_view mode;
  switch (count) {
    case 1:
      return {};  // a container path only: an anonymous volume
    case 2:
      // "/foo:rw" is a destination with a mode, which volumes cannot have.
      if (valid_mount_mode(parts[1])) throw invalid();
      break;
    case 3:
      if (parts[1].empty()) throw invalid();
      mode = parts[2];
      break;
  }
  if (!valid_mount_mode(mode))
    throw std::invalid_argument("invalid mode: " + std::string(mode) + " in volume specification '" +
                                std::string(raw) + "'");
  return {parts[0], mode_is_read_only(mode)};
}

// Calls visit(mount, set_source) for every bind mount of `body` in order; set_source(path)
// replaces that mount's source in place. Works on a const body too (then with no setter use).
template <class Json, class Visit>
void for_each_bind_mount(Json& body, Visit&& visit) {
  if (!body.is_object()) throw std::invalid_argument("container config must be a JSON object");
  auto host_config = body.find("HostConfig");
  if (host_config == body.end() || host_config->is_null()) return;
  if (!host_config->is_object())
    throw std::invalid_argument("HostConfig of the container config must be a JSON object");

  if (auto binds = host_config->find("Binds"); binds != host_config->end() && !binds->is_null()) {
    if (!binds->is_array())
      throw std::invalid_argument("HostConfig.Binds must be a list of \"src:dst[:mode]\" strings");
    for (auto& entry : *binds) {
      if (!entry.is_string())
        throw std::invalid_argument(
            "HostConfig.Binds must be a list of \"src:dst[:mode]\" strings, not " + entry.dump());
      const std::string raw = entry.template get<std::string>();
      auto parsed = parse_bind_entry(raw);
      if (parsed.source.empty() || parsed.source.front() != '/') continue;  // a named volume
      BindMount mount{std::string(parsed.source), false, parsed.read_only};
      const std::size_t source_size = parsed.source.size();
      visit(mount, [&entry, &raw, source_size](const std::string& replacement) {
        if constexpr (!std::is_const_v<Json>) {
          if (replacement.find(':') != std::string::npos)
            throw std::invalid_argument("cannot write bind source '" + replacement +
                                        "' into HostConfig.Binds: it contains ':'");
          entry = replacement + raw.substr(source_size);
        }
      });
    }
  }

  if (auto mounts = host_config->find("Mounts");
      mounts != host_config->end() && !mounts->is_null()) {
    if (!mounts->is_array()) throw std::invalid_argument("HostConfig.Mounts must be a list");
    for (auto& m : *mounts) {
      if (!m.is_object())
        throw std::invalid_argument("HostConfig.Mounts entries must be objects, not " + m.dump());
      auto type = m.find("Type");
      if (type == m.end() || !type->is_string() || type->template get<std::string>() != "bind")
        continue;
      auto source = m.find("Source");
      if (source == m.end() || !source->is_string() ||
          source->template get<std::string>().empty())
        throw std::invalid_argument(
            "invalid mount config for type \"bind\": field Source must not be empty");
      std::string path = source->template get<std::string>();
      if (path.front() != '/')
        throw std::invalid_argument("invalid mount config for type \"bind\": invalid mount path: '" +
                                    path + "' mount path must be absolute");
      bool read_only = false;
      if (auto ro = m.find("ReadOnly"); ro != m.end() && !ro->is_null()) {
        if (!ro->is_boolean())
          throw std::invalid_argument("invalid mount config for type \"bind\": ReadOnly of '" +
                                      path + "' must be true or false");
        read_only = ro->template get<bool>();
      }
      BindMount mount{std::move(path), true, read_only};
      visit(mount, [&m](const std::string& replacement) {
        if constexpr (!std::is_const_v<Json>) m["Source"] = replacement;
      });
    }
  }
}

}  // namespace

std::vector<BindMount> find_bind_mounts(const json& body) {
  std::vector<BindMount> found;
  for_each_bind_mount(body, [&found](BindMount& mount, auto&&) { found.push_back(std::move(mount)); });
  return found;
}

void replace_bind_sources(json& body, const std::map<std::string, std::string>& replacement) {
  for_each_bind_mount(body, [&replacement](BindMount& mount, auto&& set_source) {
    if (auto it = replacement.find(mount.source); it != replacement.end()) set_source(it->second);
  });
}

}  // namespace offload::daemon
