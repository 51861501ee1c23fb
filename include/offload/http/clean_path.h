// Docker's Engine API is Go: paths in it are compared after Go's path.Clean.
#pragma once

#include <string>
#include <string_view>

namespace offload::http {

// Go's path.Clean for an absolute path: what gorilla/mux routes on, and what dockerd shows as a
// bind's Mounts[].Source. "." and empty parts go, ".." drops the part before it (never above /).
std::string clean_path(std::string_view path);

}  // namespace offload::http
