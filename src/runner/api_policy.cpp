#include "offload/runner/api_policy.h"

#include <algorithm>
#include <array>
#include <set>
#include <cctype>
#include <nlohmann/json.hpp>
#include <vector>

#include "offload/http/clean_path.h"

namespace offload::runner {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string fold_json_key(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (std::size_t i = 0; i < key.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(key[i]);
    if (c == 0xC5 && i + 1 < key.size() && static_cast<unsigned char>(key[i + 1]) == 0xBF) {
      out += 's';  // U+017F LATIN SMALL LETTER LONG S
      ++i;
    } else if (c == 0xE2 && i + 2 < key.size() &&
               static_cast<unsigned char>(key[i + 1]) == 0x84 &&
               static_cast<unsigned char>(key[i + 2]) == 0xAA) {
      out += 'k';  // U+212A KELVIN SIGN
      i += 2;
    } else {
      out += static_cast<char>(std::tolower(c));
    }
  }
  return out;
}

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Go's url.PathUnescape / QueryUnescape (plus_is_space): a malformed escape stays as it is
// (Go refuses the request then, so what we judge does not matter).
std::string percent_decode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plus_is_space && in[i] == '+') ? ' ' : in[i];
  }
  return out;
}

using http::clean_path;

// "HostConfig.Privileged", or "Privileged" at the top of the body.
std::string field_name(const std::string& at, std::string_view name) {
  return at.empty() ? std::string(name) : at + "." + std::string(name);
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.starts_with(prefix); }
bool ends_with(std::string_view s, std::string_view suffix) { return s.ends_with(suffix); }

// "/containers/{name:.*}/exec": Docker's container routes take names with slashes too.
bool container_action(std::string_view path, std::string_view action) {
  constexpr std::string_view kPrefix = "/containers/";
  std::string tail = "/" + std::string(action);
  return starts_with(path, kPrefix) && ends_with(path, tail) &&
         path.size() > kPrefix.size() + tail.size();
}

bool plugin_action(std::string_view path) {
  if (path == "/plugins/pull" || path == "/plugins/create") return true;
  constexpr std::string_view kPrefix = "/plugins/";
  if (!starts_with(path, kPrefix)) return false;
  for (std::string_view action : {"/enable", "/upgrade", "/set", "/push"})
    if (ends_with(path, action) && path.size() > kPrefix.size() + action.size()) return true;
  return false;
}

// Every member of `object` whose key matches `name` as Go's encoding/json matches it. Go keeps
// the last of several; the judge looks at all of them, so a refusal wins whatever the order.
std::vector<const json*> matching_members(const json& object, std::string_view name) {
  std::vector<const json*> out;
  if (!object.is_object()) return out;
  const std::string folded = fold_json_key(name);
  for (auto it = object.begin(); it != object.end(); ++it)
    if (fold_json_key(it.key()) == folded) out.push_back(&it.value());
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Docker's default capabilities, and a few more that act only within the container's own
// namespaces and cgroup. Everything else reaches the kernel as a whole (SYS_ADMIN, SYS_MODULE,
// NET_ADMIN in a shared namespace, BPF, ...).
constexpr std::array kAllowedCapabilities = {
    "AUDIT_WRITE", "CHOWN",   "DAC_OVERRIDE", "FOWNER",          "FSETID",  "KILL",
    "MKNOD",       "NET_BIND_SERVICE",        "NET_RAW",         "SETFCAP", "SETGID",
    "SETPCAP",     "SETUID",  "SYS_CHROOT",   "SYS_NICE",        "IPC_LOCK", "NET_BROADCAST",
    "LEASE",
};

class Judge {
 public:
  explicit Judge(const ApiPolicy& policy) : policy_(policy) {}

  std::optional<ApiRefusal> refusal() const { return refusal_; }

  void refuse(const std::string& option, const std::string& field, const std::string& why = {}) {
    if (refusal_) return;  // the first reason is the one the user sees
    std::string message = "this offload runner does not allow " + option;
    if (!field.empty()) message += " (" + field + ")";
    message += why.empty() ? ": the runner is shared, and this would reach beyond your session; "
                             "ask the runner's operator for an allowance if you need it"
                           : ": " + why;
    refusal_ = ApiRefusal{403, std::move(message)};
  }

  void bad_body(const std::string& what, const std::string& why = {}) {
    if (!refusal_)
      refusal_ = ApiRefusal{400, "the offload runner cannot read the " + what + " request body " +
                                     (why.empty() ? "(it must be one valid JSON object)" : why)};
  }

  // The members of a JSON object that Go decodes into the field `name`. When two or more of them
  // are objects or arrays, Go merges them into one value (an object decoded into a struct or map
  // that a previous key filled keeps what it does not mention; array elements are decoded into
  // the elements already there), which judging them one by one does not see: noted, and the
  // body is refused unless a rule refuses it first.
  std::vector<const json*> members(const json& object, std::string_view name) {
    auto found = matching_members(object, name);
    if (merged_.empty() &&
        std::count_if(found.begin(), found.end(), [](const json* v) {
          return v->is_object() || v->is_array();
        }) > 1)
      merged_ = std::string(name);
    return found;
  }

  // The end of judging a body: a refusal, or what made the body ambiguous.
  std::optional<ApiRefusal> verdict(const std::string& route, const std::string& repeated_key) {
    if (!repeated_key.empty())
      bad_body(route, "(the key \"" + repeated_key +
                          "\" appears twice in one object; dockerd would read both)");
    if (!merged_.empty())
      bad_body(route, "(" + merged_ +
                          " is given by several keys, which dockerd would merge into one)");
    return refusal_;
  }

  // --- container create / update / exec ---------------------------------------------------

  void host_config(const json& hc, const std::string& at) {
    if (!hc.is_object()) return;
    flag(hc, "Privileged", "--privileged", at, policy_.allow.privileged);
    mode(hc, "PidMode", "--pid=host", at);
    mode(hc, "IpcMode", "--ipc=host", at);
    mode(hc, "NetworkMode", "--network=host", at);
    mode(hc, "UTSMode", "--uts=host", at);
    mode(hc, "UsernsMode", "--userns=host", at);
    mode(hc, "CgroupnsMode", "--cgroupns=host", at);
    resources(hc, at);
    for (const auto* caps : members(hc, "CapAdd"))
      capabilities(*caps, field_name(at, "CapAdd"), "--cap-add");
    for (const auto* caps : members(hc, "Capabilities"))
      capabilities(*caps, field_name(at, "Capabilities"), "--cap-add");
    for (const auto* opts : members(hc, "SecurityOpt")) security_options(*opts, at);
    for (const char* name : {"MaskedPaths", "ReadonlyPaths"})
      for (const auto* v : members(hc, name))
        if (!v->is_null() && !policy_.allow.privileged)
          refuse("--security-opt systempaths=unconfined", field_name(at, name));
    for (const auto* v : members(hc, "Runtime")) {
      std::string runtime = v->is_string() ? v->get<std::string>() : std::string();
      if (!runtime.empty() && runtime != "runc" && runtime != "io.containerd.runc.v2" &&
          !(runtime == "nvidia" && policy_.allow.gpu))
        refuse("--runtime " + runtime, field_name(at, "Runtime"));
    }
    for (const auto* v : members(hc, "VolumeDriver"))
      if (v->is_string() && !v->get<std::string>().empty() && v->get<std::string>() != "local")
        refuse("--volume-driver " + v->get<std::string>(), field_name(at, "VolumeDriver"));
    for (const auto* v : members(hc, "OomScoreAdj"))
      if (v->is_number() && v->get<double>() < 0)
        refuse("a negative --oom-score-adj", field_name(at, "OomScoreAdj"),
               "it would make other sessions' containers die first when memory runs out");
    // dockerd runs the log driver itself, in the host's mount namespace: syslog, fluentd and
    // gelf write to any unix socket path of the runner host (its /dev/log, its docker.sock),
    // journald into the host's journal. Logs stay with the session's engine.
    for (const auto* log : members(hc, "LogConfig")) {
      if (!log->is_object()) continue;
      for (const auto* type : matching_members(*log, "Type")) {
        std::string driver = type->is_string() ? type->get<std::string>() : std::string();
        if (!driver.empty() && driver != "json-file" && driver != "local" && driver != "none")
          refuse("--log-driver " + driver, field_name(at, "LogConfig"),
                 "a session's logs stay on its own engine (json-file, local or none); other "
                 "drivers write to sockets and services of the runner host");
      }
    }
    for (const auto* binds : members(hc, "Binds")) bind_list(*binds, field_name(at, "Binds"));
    for (const auto* mounts : members(hc, "Mounts")) mount_list(*mounts, field_name(at, "Mounts"));
  }

  // The resource fields container create and update share.
  void resources(const json& r, const std::string& at) {
    for (const char* name : {"Devices", "DeviceCgroupRules"})
      for (const auto* v : members(r, name))
        if (v->is_array() && !v->empty() && !policy_.allow.devices)
          refuse("--device", field_name(at, name), "this runner gives sessions no host devices");
    for (const auto* v : members(r, "DeviceRequests")) {
      if (!v->is_array() || v->empty() || policy_.allow.devices) continue;
      if (!policy_.allow.gpu)
        refuse("--gpus", field_name(at, "DeviceRequests"),
               "this session has no GPU (start one with `docker offload start --gpu`, on a "
               "runner that has NVIDIA GPUs)");
      else
        for (const auto& request : *v) gpu_request(request, field_name(at, "DeviceRequests"));
    }
    for (const auto* v : members(r, "CgroupParent"))
      if (v->is_string() && !v->get<std::string>().empty())
        refuse("--cgroup-parent", field_name(at, "CgroupParent"),
               "a session's containers stay in the session's own cgroup and its limits");
  }

  // A GPU session's device request: for dockerd's nvidia driver, by name or by capabilities
  // that only it has, so no other driver (a CDI one on newer engines) is reached through it.
  void gpu_request(const json& request, const std::string& at) {
    static const std::set<std::string> kNvidiaCapabilities = {
        "gpu", "nvidia", "compute", "compat32", "graphics", "utility", "video", "display"};
    auto bad = [&](const std::string& what) {
      refuse("--gpus with " + what, at,
             "a session's GPUs are for dockerd's nvidia driver only (e.g. --gpus all, "
             "--gpus 2, --gpus '\"device=0,1\"', --gpus 'all,capabilities=utility')");
    };
    if (!request.is_object()) return bad("a device request that is not an object");
    for (const auto* driver : members(request, "Driver"))
      if (!driver->is_null() &&
          !(driver->is_string() && (driver->get<std::string>().empty() ||
                                    driver->get<std::string>() == "nvidia")))
        return bad("driver " + (driver->is_string() ? driver->get<std::string>() : driver->dump()));
    for (const auto* sets : members(request, "Capabilities")) {
      if (sets->is_null()) continue;
      if (!sets->is_array()) return bad("capabilities that are not a list");
      for (const auto& set : *sets) {
        if (!set.is_array()) return bad("capabilities that are not lists");
        for (const auto& cap : set)
          if (!cap.is_string() || !kNvidiaCapabilities.count(cap.get<std::string>()))
            return bad("capability " + (cap.is_string() ? cap.get<std::string>() : cap.dump()));
      }
    }
    // The nvidia driver reads no options; anything here is meant for another one.
    for (const auto* options : members(request, "Options"))
      if (!options->is_null() && !(options->is_object() && options->empty()))
        return bad("driver options");
  }

  void exec_config(const json& body) {
    flag(body, "Privileged", "docker exec --privileged", "", policy_.allow.privileged);
  }

  // --- volumes and networks -----------------------------------------------------------------

  void volume_create(const json& body) {
    for (const auto* v : members(body, "Driver")) driver(*v, "Driver");
    for (const auto* opts : members(body, "DriverOpts")) volume_options(*opts, "DriverOpts");
  }

  void network_create(const json& body) {
    for (const auto* v : members(body, "Driver")) {
      std::string name = v->is_string() ? v->get<std::string>() : std::string();
      if (!name.empty() && name != "bridge")
        refuse("network driver " + name, "Driver", "sessions have bridge networks only");
    }
  }

  // --- build --------------------------------------------------------------------------------

  void build_query(std::string_view query) {
    // Pairs are split at '&', and at ';' as Go did before 1.17 (Go 1.17 and later skip a pair
    // with ';' in it, so splitting there only ever judges more).
    std::size_t i = 0;
    while (i <= query.size()) {
      std::size_t j = query.find_first_of("&;", i);
      if (j == std::string_view::npos) j = query.size();
      std::string_view pair = query.substr(i, j - i);
      i = j + 1;
      auto eq = pair.find('=');
      std::string key = percent_decode(pair.substr(0, eq), true);
      std::string value = eq == std::string_view::npos ? std::string()
                                                         : percent_decode(pair.substr(eq + 1), true);
      if (key == "networkmode" && value == "host" && !policy_.allow.host_namespaces)
        refuse("docker build --network=host", "networkmode");
      if (key == "cgroupparent" && !value.empty())
        refuse("docker build --cgroup-parent", "cgroupparent",
               "a session's builds stay in the session's own cgroup and its limits");
    }
  }

 private:
  void flag(const json& object, const char* name, const std::string& option,
            const std::string& at, bool allowed) {
    if (allowed) return;
    for (const auto* v : members(object, name))
      if (v->is_boolean() && v->get<bool>()) refuse(option, field_name(at, name));
  }

  void mode(const json& hc, const char* name, const std::string& option, const std::string& at) {
    if (policy_.allow.host_namespaces) return;
    for (const auto* v : members(hc, name))
      if (v->is_string() && v->get<std::string>() == "host") refuse(option, field_name(at, name));
  }

  void capabilities(const json& list, const std::string& at, const char* option) {
    if (!list.is_array() || policy_.allow.privileged) return;
    for (const auto& entry : list) {
      if (!entry.is_string()) continue;  // dockerd refuses it
      std::string cap = upper(entry.get<std::string>());
      if (cap.starts_with("CAP_")) cap.erase(0, 4);
      bool allowed = std::find(kAllowedCapabilities.begin(), kAllowedCapabilities.end(), cap) !=
                         kAllowedCapabilities.end() ||
                     policy_.allow.capabilities.count(cap) > 0;
      if (!allowed) refuse(std::string(option) + " " + cap, at);
    }
  }

  void security_options(const json& list, const std::string& at) {
    if (!list.is_array() || policy_.allow.privileged) return;
    for (const auto& entry : list) {
      if (!entry.is_string()) continue;
      std::string opt = entry.get<std::string>();
      auto sep = opt.find_first_of("=:");
      std::string key = opt.substr(0, sep);
      // no-new-privileges only ever takes privileges away; every other option loosens or
      // replaces the confinement (seccomp, AppArmor, SELinux labels, system paths).
      if (key == "no-new-privileges") continue;
      refuse("--security-opt " + opt, field_name(at, "SecurityOpt"));
    }
  }

  void driver(const json& v, const std::string& at) {
    std::string name = v.is_string() ? v.get<std::string>() : std::string();
    if (!name.empty() && name != "local")
      refuse("volume driver " + name, at, "sessions have local volumes only");
  }

  // The local driver mounts what its options say: `type=none,o=bind,device=/path` is a bind of
  // any path, `type=ext4,device=/dev/sda1` a host disk, `type=nfs` a remote share.
  void volume_options(const json& opts, const std::string& at) {
    if (!opts.is_object()) return;
    std::string type, o, device;
    for (auto it = opts.begin(); it != opts.end(); ++it) {
      std::string value = it.value().is_string() ? it.value().get<std::string>() : std::string();
      if (it.key() == "type") type = value;
      else if (it.key() == "o") o = value;
      else if (it.key() == "device") device = value;
    }
    if (type.empty() && o.empty() && device.empty()) return;
    // "bind" and "rbind" in o are MS_BIND for mount(2), which then ignores the file system
    // type: whatever type says (tmpfs too), the volume is the device path, bound.
    if (o.find("bind") != std::string::npos) {
      check_source(device, at + ".device", "a volume bound to " + device);
      return;
    }
    if (type == "tmpfs") return;
    refuse("volume options type=" + type + (device.empty() ? "" : " device=" + device), at,
           "sessions can make tmpfs volumes and volumes bound inside their synchronised bind "
           "mounts, not mount host devices or network file systems");
  }

  void bind_list(const json& binds, const std::string& at) {
    if (!binds.is_array()) return;
    for (const auto& entry : binds) {
      if (!entry.is_string()) continue;
      std::string spec = entry.get<std::string>();
      auto colon = spec.find(':');
      if (colon == std::string::npos) continue;  // a destination only: an anonymous volume
      std::string source = spec.substr(0, colon);
      if (!source.starts_with("/")) continue;  // a named volume
      check_source(source, at, "-v " + source);
    }
  }

  void mount_list(const json& mounts, const std::string& at) {
    if (!mounts.is_array()) return;
    for (const auto& m : mounts) {
      if (!m.is_object()) continue;
      // Several keys can match Type ("type", "TYPE"): Go keeps the last in the document, which
      // the parsed object no longer tells, so the mount is judged as each of them.
      for (const auto* t : members(m, "Type"))
        if (t->is_string()) mount(m, t->get<std::string>(), at);
    }
  }

  void mount(const json& m, const std::string& type, const std::string& at) {
    if (type == "bind") {
      for (const auto* v : members(m, "Source"))
        if (v->is_string())
          check_source(v->get<std::string>(), at, "--mount source=" + v->get<std::string>());
    } else if (type == "volume") {
      for (const auto* vo : members(m, "VolumeOptions"))
        for (const auto* dc : members(*vo, "DriverConfig")) {
          for (const auto* name : members(*dc, "Name")) driver(*name, at + ".DriverConfig");
          for (const auto* opts : members(*dc, "Options"))
            volume_options(*opts, at + ".DriverConfig.Options");
        }
    } else if (type != "tmpfs" && type != "image" && !type.empty()) {
      refuse("--mount type=" + type, at);
    }
  }

  // A host path a container would see: it must lie inside the session's sync root, where
  // offloadd puts the copies of the user's bind-mounted directories, also once symlinks are
  // followed (a symlink synchronised from the laptop or planted by a container can point
  // anywhere on the runner).
  void check_source(const std::string& source, const std::string& at, const std::string& option) {
    if (policy_.allow.privileged) return;
    // The gated socket: the session's own API, through this policy again.
    if (!policy_.api_socket.empty() && !source.empty() && source.front() == '/' &&
        clean_path(source) == clean_path(policy_.api_socket.string()))
      return;
    auto refuse_outside = [&] {
      refuse(option, at,
             "containers of a session may bind only the directories offloadd synchronises for "
             "it, not paths of the runner host");
    };
    if (policy_.sync_root.empty() || source.empty() || source.front() != '/')
      return refuse_outside();
    fs::path lexical = fs::path(clean_path(source));
    fs::path root = fs::path(clean_path(policy_.sync_root.string()));
    auto inside = [](const fs::path& p, const fs::path& dir) {
      auto rel = p.lexically_relative(dir);
      return !rel.empty() && rel != "." && *rel.begin() != "..";
    };
    if (!inside(lexical, root)) return refuse_outside();
    if (policy_.is_mount_source && !policy_.is_mount_source(lexical.lexically_relative(root)))
      return refuse(option, at,
                    "containers of a session may bind each directory or file offloadd "
                    "synchronises for it as a whole, not a path inside one (bind the directory "
                    "itself from your machine instead)");
    auto resolve = policy_.resolve ? policy_.resolve
                                   : [](const fs::path& p) -> std::optional<fs::path> {
      std::error_code ec;
      auto r = fs::weakly_canonical(p, ec);
      if (ec) return std::nullopt;
      return r;
    };
    auto resolved = resolve(lexical);
    auto resolved_root = resolve(root);
    if (!resolved || !resolved_root || !inside(*resolved, *resolved_root)) return refuse_outside();
  }

  const ApiPolicy& policy_;
  std::optional<ApiRefusal> refusal_;
  std::string merged_;  // a field several object or array members match
};

// The body as dockerd's encoding/json reads it, as far as nlohmann can tell: nlohmann keeps the
// last of several members with the same key, where Go decodes each of them into the same field
// (merging objects and arrays). The first such key is noted in `repeated_key`.
json parse_body(std::string_view body, std::string& repeated_key) {
  std::vector<std::set<std::string>> open;  // the keys of each object being parsed
  json::parser_callback_t note = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key:
        // A key always belongs to the innermost open object: an array opened after it is closed
        // before the object's next key.
        if (!open.empty() && parsed.is_string() &&
            !open.back().insert(parsed.get<std::string>()).second && repeated_key.empty())
          repeated_key = parsed.get<std::string>();
        break;
      default:
        break;
    }
    return true;
  };
  return json::parse(body, note, /*allow_exceptions=*/false);
}

}  // namespace

ApiRoute api_route(std::string_view method, std::string_view target) {
  ApiRoute route;
  route.method = upper(method);
  // Go's url.ParseRequestURI, which net/http applies to the request target: an optional scheme
  // (a letter, then letters, digits, '+', '-', '.', up to ':'), then the query from the first
  // '?', then, after a scheme, an authority if "//" follows. A request target has no fragment:
  // '#' is part of the path or the query ("/build?t=x#&networkmode=host" sets networkmode).
  std::string_view rest = target;
  bool scheme = false;
  if (!rest.empty() && std::isalpha(static_cast<unsigned char>(rest[0]))) {
    std::size_t i = 1;
    while (i < rest.size() && (std::isalnum(static_cast<unsigned char>(rest[i])) ||
                               rest[i] == '+' || rest[i] == '-' || rest[i] == '.'))
      ++i;
    if (i < rest.size() && rest[i] == ':') {
      scheme = true;  // "http://docker/containers/create", and also "http:/containers/create"
      rest.remove_prefix(i + 1);
    }
  }
  std::string_view path = rest;
  if (auto q = path.find('?'); q != std::string_view::npos) {
    route.query = std::string(path.substr(q + 1));
    path = path.substr(0, q);
  }
  if (scheme) {
    if (path.starts_with("//")) {
      auto slash = path.find('/', 2);
      path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
    } else if (!path.starts_with("/")) {
      path = {};  // opaque ("http:containers/create"): no path, nothing dockerd routes
    }
  }
  std::string p = clean_path(percent_decode(path, false));
  // Docker's router accepts an optional /v{version:[0-9.]+} in front of every route.
  if (p.size() > 2 && p[1] == 'v') {
    std::size_t i = 2;
    while (i < p.size() && ((p[i] >= '0' && p[i] <= '9') || p[i] == '.')) ++i;
    if (i > 2 && i < p.size() && p[i] == '/') p.erase(0, i);
  }
  route.path = std::move(p);
  return route;
}

Judged judged(const ApiRoute& route) {
  if (route.method != "POST") return Judged::no;
  const std::string& p = route.path;
  if (p == "/containers/create" || p == "/volumes/create" || p == "/networks/create" ||
      container_action(p, "update") || container_action(p, "exec") ||
      container_action(p, "start"))
    return Judged::body;
  if (p == "/build" || plugin_action(p) || p == "/swarm/init" || p == "/swarm/join")
    return Judged::query;
  return Judged::no;
}

std::optional<ApiRefusal> judge_request(const ApiRoute& route, std::string_view body,
                                        const ApiPolicy& policy) {
  Judge judge(policy);
  const std::string& p = route.path;
  switch (judged(route)) {
    case Judged::no:
      return std::nullopt;
    case Judged::query:
      if (p == "/build") {
        judge.build_query(route.query);
      } else if (plugin_action(p)) {
        judge.refuse("Docker plugins", "",
                     "a plugin runs with full privileges on the runner host");
      } else {
        judge.refuse("Docker swarm mode", "", "a session's engine stays on its own");
      }
      return judge.refusal();
    case Judged::body:
      break;
  }
  // An empty body is the engine's to refuse; anything else must be what dockerd would read.
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return std::nullopt;
  std::string repeated_key;
  json doc = parse_body(body, repeated_key);
  if (doc.is_discarded() || !(doc.is_object() || doc.is_null())) {
    judge.bad_body(p);
    return judge.refusal();
  }
  if (p == "/containers/create") {
    for (const auto* hc : judge.members(doc, "HostConfig")) judge.host_config(*hc, "HostConfig");
    // Until moby 27 the body also embeds a deprecated HostConfig: its fields at the top level
    // are dockerd's host config when there is no "HostConfig" key (and VolumeDriver is taken
    // from there besides one). No field of the container Config has one of these names.
    judge.host_config(doc, "");
  } else if (container_action(p, "start")) {
    // Before API 1.24 (served by default until moby 25) a start request may carry the
    // container's HostConfig, which dockerd then applies.
    judge.host_config(doc, "");
  } else if (container_action(p, "update")) {
    judge.resources(doc, "");
  } else if (container_action(p, "exec")) {
    judge.exec_config(doc);
  } else if (p == "/volumes/create") {
    judge.volume_create(doc);
  } else if (p == "/networks/create") {
    judge.network_create(doc);
  }
  return judge.verdict(p, repeated_key);
}

bool is_docker_socket_path(std::string_view source) {
  if (source.empty() || source.front() != '/') return false;
  const std::string clean = clean_path(source);
  return clean == "/var/run/docker.sock" || clean == "/run/docker.sock";
}

std::optional<std::string> bind_docker_socket(std::string_view body, const std::string& gated) {
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  auto hc = doc.find("HostConfig");
  if (hc == doc.end() || !hc->is_object()) return std::nullopt;
  bool changed = false;
  if (auto binds = hc->find("Binds"); binds != hc->end() && binds->is_array()) {
    for (auto& entry : *binds) {
      if (!entry.is_string()) continue;
      const std::string spec = entry.get<std::string>();
      const auto colon = spec.find(':');
      if (colon == std::string::npos || !is_docker_socket_path(spec.substr(0, colon))) continue;
      entry = gated + spec.substr(colon);
      changed = true;
    }
  }
  if (auto mounts = hc->find("Mounts"); mounts != hc->end() && mounts->is_array()) {
    for (auto& m : *mounts) {
      if (!m.is_object()) continue;
      auto type = m.find("Type");
      auto source = m.find("Source");
      if (type == m.end() || !type->is_string() || type->get<std::string>() != "bind" ||
          source == m.end() || !source->is_string() ||
          !is_docker_socket_path(source->get<std::string>()))
        continue;
      *source = gated;
      changed = true;
    }
  }
  if (!changed) return std::nullopt;
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace offload::runner
