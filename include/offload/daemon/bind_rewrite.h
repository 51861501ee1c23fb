// The bind mounts of a Docker `POST /containers/create` body, and rewriting their sources to
// runner-side paths. Pure functions on the JSON body; the synchroniser decides what to sync.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <vector>

namespace offload::daemon {

struct BindMount {
  std::string source;        // the host path as the client sent it (absolute)
  bool from_mounts = false;  // HostConfig.Mounts (Docker refuses a missing source) vs
                             // HostConfig.Binds (Docker creates a missing source directory)
  bool read_only = false;
};

// The bind mounts of a /containers/create body, in order (HostConfig.Binds first, then
// HostConfig.Mounts). Binds entries are "src:dst[:opts]" split like Docker on Linux; only
// sources starting with '/' are bind mounts (others are named volumes). Mounts entries count
// when "Type" is "bind". Throws std::invalid_argument with a user-facing message for a
// malformed Binds entry or a bind Mount without an absolute Source.
std::vector<BindMount> find_bind_mounts(const nlohmann::json& body);

// Replaces each bind source found by find_bind_mounts with replacement.at(source); sources
// missing from the map are left alone, and so is everything else (options, targets, other
// keys). Throws std::invalid_argument like find_bind_mounts, and for a replacement that cannot
// be written into a Binds entry (one containing ':').
void replace_bind_sources(nlohmann::json& body,
                          const std::map<std::string, std::string>& replacement);

}  // namespace offload::daemon
