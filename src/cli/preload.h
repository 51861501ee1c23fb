// `docker offload start --preload IMAGE...`: images copied from the engine the user had before
// the switch into the new session (`docker save` from it, `docker load` into the session).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "offload/cli/cli.h"

namespace offload::cli {

// The engine images are preloaded from: DOCKER_HOST when set (it is what `docker` used in this
// shell), else the context that was current before `start` switched (`previous_context`), whose
// docker endpoint comes from the context store; "default" means unix:///var/run/docker.sock.
// Throws CliError naming the way out when that is not a unix socket.
std::string preload_source(const Environment& env, const std::string& previous_context);

// Streams GET /images/get?names=... from `from_host` into POST /images/load on `to_host` (both
// "unix://PATH"), calling `progress` with the bytes copied so far. Returns what the session's
// engine said it loaded ("Loaded image: ..." lines). Throws CliError when either side refuses.
std::string copy_images(const std::vector<std::string>& images, const std::string& from_host,
                        const std::string& to_host,
                        const std::function<void(std::uint64_t)>& progress);

}  // namespace offload::cli
