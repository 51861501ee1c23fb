// The runner's Docker API policy: which requests a session may send to its engine. The runner,
// not offloadd, is the trust boundary (a hostile client talks to the tunnel directly), so every
// request that could reach the runner host through the engine is judged here before the engine
// sees it: privileged containers, host namespaces, devices, dangerous capabilities, unconfined
// security profiles, bind sources outside the session's own sync root, host-path volumes,
// non-bridge networks, plugins.
//
// The judge reads requests the way dockerd does, so that no spelling slips past it: JSON keys
// match case-insensitively with Go's folding (encoding/json), several keys for one field count
// all (a refusal wins), and where dockerd would merge them (a key repeated in one object, or
// several keys holding objects or arrays) the body is refused; the request target is read as
// Go's url.ParseRequestURI reads it (a scheme with or without an authority, no fragment), paths
// are percent-decoded and cleaned (gorilla/mux), the /vX.Y prefix is optional, capability names
// may carry CAP_ and any case. What older engines still accept is judged too: HostConfig fields
// at the top of a create body, a HostConfig on container start.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace offload::runner {

// What an operator may allow an account beyond the default policy (accounts file).
struct ApiAllowances {
  bool privileged = false;        // --privileged, unconfined profiles, all capabilities
  bool host_namespaces = false;   // --pid/--ipc/--uts/--userns/--cgroupns host, --network host
  bool devices = false;           // --device, device cgroup rules, --gpus
  std::set<std::string> capabilities;  // extra --cap-add names (upper case, without CAP_)
  // Not an account setting: the session was started with --gpu on a runner with NVIDIA GPUs.
  // `--gpus` (device requests for dockerd's nvidia driver, nothing else) and `--runtime nvidia`.
  bool gpu = false;

  friend bool operator==(const ApiAllowances&, const ApiAllowances&) = default;
};

struct ApiPolicy {
  // The session's sync root on the runner: bind sources must lie inside it.
  std::filesystem::path sync_root;
  ApiAllowances allow;
  // Resolves a bind source the way the kernel will when dockerd mounts it (symlinks followed);
  // nullopt when it does not exist. Default: std::filesystem::weakly_canonical.
  std::function<std::optional<std::filesystem::path>(const std::filesystem::path&)> resolve;
  // When set, a bind source inside the sync root must also be one a mount offers as a whole
  // (the path relative to the sync root; see SyncCalls::is_mount_source): a path inside a
  // mount can be swapped for a symlink between the check and dockerd's mount.
  std::function<bool(const std::filesystem::path& relative)> is_mount_source;
  // The session's gated Docker API socket (gated_api_socket.h): a bind of exactly this path is
  // allowed, as it gives a container nothing but this same policy. Empty: none.
  std::filesystem::path api_socket;
  // Starts serving api_socket if it is not served yet; false when it cannot be (logged). The gate
  // calls it for a create that binds the Docker socket (see bind_docker_socket).
  std::function<bool()> serve_api_socket;
};

// A bind source that means "the Docker API" to a client: /var/run/docker.sock or
// /run/docker.sock (however spelled: "//run/./docker.sock" too). offloadd sends the context's
// own socket as /var/run/docker.sock.
bool is_docker_socket_path(std::string_view source);

// The create `body` with every bind of the Docker socket (HostConfig.Binds sources and
// HostConfig.Mounts bind sources, exact keys) made a bind of `gated` instead, as Docker Desktop
// gives containers its engine's socket; nullopt when it binds no Docker socket or is no JSON
// object. Whatever it returns is judged afterwards like any body: a spelling this misses (other
// key case, a top-level HostConfig) stays a bind of a runner path and is refused.
std::optional<std::string> bind_docker_socket(std::string_view body, const std::string& gated);

// Which requests the judge needs to see whole: their body (or query) decides.
enum class Judged {
  no,           // forwarded as it is
  query,        // decided by the request line alone
  body,         // decided by the JSON body
};

// A request's route as dockerd's router sees it.
struct ApiRoute {
  std::string method;  // upper case
  std::string path;    // percent-decoded, cleaned, without /vX.Y and query: "/containers/create"
  std::string query;   // raw query string without '?'
};
ApiRoute api_route(std::string_view method, std::string_view target);

Judged judged(const ApiRoute& route);

// A refusal: the Docker-style JSON error to answer with (HTTP 403) instead of the engine.
struct ApiRefusal {
  int status = 403;
  std::string message;
};

// Judges one request. `body` is the complete, de-chunked body for Judged::body routes (ignored
// otherwise). Never throws. A refusal is 403 naming the option, or 400 for a body the judge
// cannot read as dockerd would: not one JSON object (or null), or ambiguous (see above). An
// empty body is allowed: the engine answers it itself.
std::optional<ApiRefusal> judge_request(const ApiRoute& route, std::string_view body,
                                        const ApiPolicy& policy);

// Go's encoding/json key match: ASCII case-insensitive plus the two non-ASCII letters that fold
// to ASCII ones (U+017F ſ ~ s, U+212A K ~ k). Exposed for tests.
std::string fold_json_key(std::string_view key);

}  // namespace offload::runner
