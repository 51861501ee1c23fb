// The runner's Docker API policy, read as dockerd reads requests. Table-driven: every rule in the
// shape the docker CLI 28 sends it, the spellings a hostile client would try instead (paths that
// gorilla/mux routes the same, JSON keys that encoding/json matches the same, capability
// spellings, bind sources that leave the sync root through `..` or a symlink), bodies that
// cannot be read, and what a session needs, which must stay allowed. Every refusal names the
// option it refuses.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "docker_cli_bodies.h"
#include "offload/runner/api_policy.h"
#include "temp_dir.h"

namespace offload::runner {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kRoot = "/var/lib/offload-runner/sessions/abc/sync";
// A directory offloadd synchronises for the session (one bind mount of the user's).
const std::string kMount = kRoot + "/0123456789abcdef";

const std::string kCreate = "/v1.51/containers/create?name=t";
const std::string kExec = "/v1.51/containers/t/exec";
const std::string kUpdate = "/v1.51/containers/t/update";
const std::string kStart = "/v1.51/containers/t/start";
const std::string kVolume = "/v1.51/volumes/create";
const std::string kNetwork = "/v1.51/networks/create";

ApiPolicy lexical_policy() {
  ApiPolicy p;
  p.sync_root = kRoot;
  // The tables are about the rules; the symlink tests further down use real file systems.
  p.resolve = [](const fs::path& path) -> std::optional<fs::path> { return path; };
  return p;
}

std::optional<ApiRefusal> judge(const std::string& method, const std::string& target,
                                const std::string& body, const ApiPolicy& p = lexical_policy()) {
  return judge_request(api_route(method, target), body, p);
}

using offload::test::cli_create;
using offload::test::cli_exec;

// `docker volume create [-d driver] [-o k=v]... v`.
std::string cli_volume(const std::string& driver, const json& opts) {
  return json{{"Driver", driver}, {"DriverOpts", opts}, {"Labels", json::object()}, {"Name", "v"}}
      .dump();
}

// `docker network create [-d driver] n`.
std::string cli_network(const std::string& driver) {
  json body = json::parse(R"({"Name":"n","Driver":"","Scope":"","EnableIPv4":null,
    "EnableIPv6":null,"IPAM":{"Driver":"default","Options":{},"Config":[]},"Internal":false,
    "Attachable":false,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{},
    "Labels":{}})");
  body["Driver"] = driver;
  return body.dump();
}

// `DOCKER_BUILDKIT=0 docker build --network=<mode> -t x .`: its query string.
std::string cli_build(const std::string& networkmode, const std::string& cgroupparent = "") {
  return "/v1.51/build?buildargs=%7B%7D&cachefrom=%5B%5D&cgroupparent=" + cgroupparent +
         "&cpuperiod=0&cpuquota=0&cpusetcpus=&cpusetmems=&cpushares=0&dockerfile=Dockerfile"
         "&labels=%7B%7D&memory=0&memswap=0&networkmode=" +
         networkmode + "&rm=1&shmsize=0&t=x&target=&ulimits=%5B%5D&version=1";
}

json mounts(std::vector<json> list) { return {{"Mounts", json(std::move(list))}}; }

// --- the table ---------------------------------------------------------------------------------

struct Case {
  std::string name;    // the gtest name: letters, digits, '_'
  std::string target;  // request target as sent
  std::string body;
  int status;                      // 0: forwarded to the engine; else 403 or 400
  std::vector<std::string> names;  // what the refusal's message must say
  std::string method = "POST";
};

Case refused(std::string name, std::string target, std::string body,
             std::vector<std::string> names) {
  return {std::move(name), std::move(target), std::move(body), 403, std::move(names)};
}
Case unreadable(std::string name, std::string target, std::string body) {
  return {std::move(name), std::move(target), std::move(body), 400, {"cannot read"}};
}
Case allowed(std::string name, std::string target, std::string body, std::string method = "POST") {
  return {std::move(name), std::move(target), std::move(body), 0, {}, std::move(method)};
}

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.method << " " << c.target << " "
      << (c.body.size() > 160 ? c.body.substr(0, 160) + "..." : c.body);
}

class ApiPolicyTable : public ::testing::TestWithParam<Case> {};

TEST_P(ApiPolicyTable, Judged) {
  const Case& c = GetParam();
  auto r = judge(c.method, c.target, c.body);
  if (c.status == 0) {
    EXPECT_FALSE(r.has_value()) << r->status << " " << r->message;
    return;
  }
  ASSERT_TRUE(r.has_value()) << "let through";
  EXPECT_EQ(r->status, c.status) << r->message;
  if (c.status == 403) {
    EXPECT_EQ(r->message.rfind("this offload runner does not allow ", 0), 0u) << r->message;
  }
  for (const auto& name : c.names)
    EXPECT_NE(r->message.find(name), std::string::npos) << "must name " << name << ": "
                                                        << r->message;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) { return info.param.name; }

// Every rule, in the JSON the docker CLI 28 sends for it.
std::vector<Case> cli_refusals() {
  const std::string all_devices = R"([{"PathOnHost":"/dev/sda","PathInContainer":"/dev/sda","CgroupPermissions":"rwm"}])";
  return {
      refused("run_privileged", kCreate, cli_create({{"Privileged", true}}),
              {"--privileged", "HostConfig.Privileged"}),
      refused("run_pid_host", kCreate, cli_create({{"PidMode", "host"}}),
              {"--pid=host", "HostConfig.PidMode"}),
      refused("run_ipc_host", kCreate, cli_create({{"IpcMode", "host"}}), {"--ipc=host"}),
      refused("run_network_host", kCreate,
              cli_create({{"NetworkMode", "host"}},
                         {{"NetworkingConfig", {{"EndpointsConfig", {{"host", json::object()}}}}}}),
              {"--network=host", "HostConfig.NetworkMode"}),
      refused("run_uts_host", kCreate, cli_create({{"UTSMode", "host"}}), {"--uts=host"}),
      refused("run_userns_host", kCreate, cli_create({{"UsernsMode", "host"}}), {"--userns=host"}),
      refused("run_cgroupns_host", kCreate, cli_create({{"CgroupnsMode", "host"}}),
              {"--cgroupns=host"}),
      refused("run_device", kCreate, cli_create({{"Devices", json::parse(all_devices)}}),
              {"--device", "HostConfig.Devices"}),
      refused("run_device_cgroup_rule", kCreate,
              cli_create({{"DeviceCgroupRules", {"c 1:3 mr", "b 8:* rmw"}}}),
              {"--device", "HostConfig.DeviceCgroupRules"}),
      refused("run_gpus_all", kCreate,
              cli_create({{"DeviceRequests",
                           json::parse(R"([{"Driver":"","Count":-1,"DeviceIDs":null,
                             "Capabilities":[["gpu"]],"Options":{}}])")}}),
              {"--gpus", "HostConfig.DeviceRequests"}),
      refused("run_cap_add_sys_admin", kCreate, cli_create({{"CapAdd", {"CAP_SYS_ADMIN"}}}),
              {"--cap-add SYS_ADMIN", "HostConfig.CapAdd"}),
      refused("run_cap_add_net_admin", kCreate, cli_create({{"CapAdd", {"CAP_NET_ADMIN"}}}),
              {"--cap-add NET_ADMIN"}),
      refused("run_cap_add_all", kCreate, cli_create({{"CapAdd", {"ALL"}}}), {"--cap-add ALL"}),
      refused("run_cap_add_after_allowed_ones", kCreate,
              cli_create({{"CapAdd", {"CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_PTRACE"}}}),
              {"--cap-add SYS_PTRACE"}),
      refused("run_cap_add_bpf_dropping_all", kCreate,
              cli_create({{"CapAdd", {"CAP_BPF"}}, {"CapDrop", {"ALL"}}}), {"--cap-add BPF"}),
      refused("run_capabilities_field", kCreate, cli_create({{"Capabilities", {"CAP_SYS_MODULE"}}}),
              {"SYS_MODULE", "HostConfig.Capabilities"}),
      refused("run_seccomp_unconfined", kCreate,
              cli_create({{"SecurityOpt", {"seccomp=unconfined"}}}),
              {"--security-opt seccomp=unconfined", "HostConfig.SecurityOpt"}),
      refused("run_seccomp_profile", kCreate,
              cli_create({{"SecurityOpt", {R"(seccomp={"defaultAction":"SCMP_ACT_ALLOW"})"}}}),
              {"--security-opt seccomp="}),
      refused("run_apparmor_unconfined", kCreate,
              cli_create({{"SecurityOpt", {"apparmor=unconfined"}}}),
              {"--security-opt apparmor=unconfined"}),
      refused("run_apparmor_colon", kCreate, cli_create({{"SecurityOpt", {"apparmor:unconfined"}}}),
              {"--security-opt apparmor:unconfined"}),
      refused("run_label_disable", kCreate, cli_create({{"SecurityOpt", {"label=disable"}}}),
              {"--security-opt label=disable"}),
      refused("run_seccomp_after_no_new_privileges", kCreate,
              cli_create({{"SecurityOpt", {"no-new-privileges", "seccomp=unconfined"}}}),
              {"seccomp=unconfined"}),
      refused("run_systempaths_unconfined", kCreate,
              cli_create({{"MaskedPaths", json::array()}, {"ReadonlyPaths", json::array()}}),
              {"--security-opt systempaths=unconfined", "HostConfig.MaskedPaths"}),
      refused("run_readonly_paths_only", kCreate, cli_create({{"ReadonlyPaths", json::array()}}),
              {"systempaths=unconfined", "HostConfig.ReadonlyPaths"}),
      refused("run_runtime_runsc", kCreate, cli_create({{"Runtime", "runsc"}}),
              {"--runtime runsc", "HostConfig.Runtime"}),
      refused("run_runtime_nvidia", kCreate, cli_create({{"Runtime", "nvidia"}}),
              {"--runtime nvidia"}),
      refused("run_volume_driver", kCreate, cli_create({{"VolumeDriver", "convoy"}}),
              {"--volume-driver convoy", "HostConfig.VolumeDriver"}),
      refused("run_log_driver_syslog_to_the_hosts_dev_log", kCreate,
              cli_create({{"LogConfig",
                           {{"Type", "syslog"},
                            {"Config", {{"syslog-address", "unix:///dev/log"}}}}}}),
              {"--log-driver syslog", "HostConfig.LogConfig"}),
      refused("run_log_driver_fluentd", kCreate,
              cli_create({{"LogConfig",
                           {{"Type", "fluentd"},
                            {"Config", {{"fluentd-address", "unix:///run/docker.sock"}}}}}}),
              {"--log-driver fluentd"}),
      refused("run_log_driver_journald", kCreate,
              cli_create({{"LogConfig", {{"Type", "journald"}, {"Config", json::object()}}}}),
              {"--log-driver journald"}),
      refused("run_log_driver_gelf", kCreate,
              cli_create({{"LogConfig", {{"Type", "gelf"}, {"Config", json::object()}}}}),
              {"--log-driver gelf"}),
      refused("run_log_driver_second_key_in_other_case", kCreate,
              cli_create({{"LogConfig", {{"Type", "json-file"}, {"type", "syslog"}}}}),
              {"--log-driver syslog"}),
      refused("run_oom_score_adj_negative", kCreate, cli_create({{"OomScoreAdj", -500}}),
              {"--oom-score-adj", "HostConfig.OomScoreAdj"}),
      refused("run_cgroup_parent", kCreate, cli_create({{"CgroupParent", "/"}}),
              {"--cgroup-parent", "HostConfig.CgroupParent"}),
      refused("run_v_root", kCreate, cli_create({{"Binds", {"/:/host"}}}),
              {"-v /", "HostConfig.Binds"}),
      refused("run_v_etc_ro", kCreate, cli_create({{"Binds", {"/etc:/e:ro"}}}), {"-v /etc"}),
      refused("run_v_docker_sock", kCreate,
              cli_create({{"Binds", {"/var/run/docker.sock:/var/run/docker.sock"}}}),
              {"-v /var/run/docker.sock"}),
      refused("run_v_runner_state", kCreate,
              cli_create({{"Binds", {"/var/lib/offload-runner:/x:ro"}}}),
              {"-v /var/lib/offload-runner"}),
      refused("run_v_second_of_two", kCreate,
              cli_create({{"Binds", {kMount + ":/src", "/root:/r"}}}), {"-v /root"}),
      refused("run_v_dotdot_out_of_the_root", kCreate,
              cli_create({{"Binds", {kRoot + "/../../def/sync:/x"}}}),
              {"-v " + kRoot + "/../../def/sync"}),
      refused("run_v_dotdot_deep", kCreate,
              cli_create({{"Binds", {kMount + "/a/../../../../../../../etc:/x"}}}), {"-v "}),
      refused("run_v_sibling_with_root_as_prefix", kCreate,
              cli_create({{"Binds", {kRoot + "2/x:/x"}}}), {"-v " + kRoot + "2/x"}),
      refused("run_v_sync_root_itself", kCreate, cli_create({{"Binds", {kRoot + ":/x"}}}),
              {"-v " + kRoot}),
      refused("run_v_sync_root_trailing_dot", kCreate, cli_create({{"Binds", {kRoot + "/.:/x"}}}),
              {"-v "}),
      refused("run_mount_bind_etc", kCreate,
              cli_create(mounts({{{"Type", "bind"}, {"Source", "/etc"}, {"Target", "/e"}}})),
              {"--mount source=/etc", "HostConfig.Mounts"}),
      refused("run_mount_bind_dotdot", kCreate,
              cli_create(mounts({{{"Type", "bind"}, {"Source", kMount + "/../../.."},
                                  {"Target", "/e"}}})),
              {"--mount source="}),
      refused("run_mount_bind_create_mountpoint", kCreate,
              cli_create(mounts({{{"Type", "bind"}, {"Source", "/opt/new"}, {"Target", "/e"},
                                  {"BindOptions", {{"CreateMountpoint", true}}}}})),
              {"--mount source=/opt/new"}),
      refused("run_mount_volume_opt_bind", kCreate,
              cli_create(mounts({json::parse(R"({"Type":"volume","Target":"/e",
                "VolumeOptions":{"DriverConfig":{"Options":{"type":"none","o":"bind",
                "device":"/etc"}}}})")})),
              {"a volume bound to /etc", "HostConfig.Mounts"}),
      refused("run_mount_named_volume_opt_rbind", kCreate,
              cli_create(mounts({json::parse(R"({"Type":"volume","Source":"v","Target":"/e",
                "VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"o":"rbind,ro",
                "device":"/"}}}})")})),
              {"a volume bound to /"}),
      // "bind" in o is MS_BIND for mount(2), which then ignores the file system type.
      refused("run_mount_volume_opt_tmpfs_bind", kCreate,
              cli_create(mounts({json::parse(R"({"Type":"volume","Target":"/e",
                "VolumeOptions":{"DriverConfig":{"Options":{"type":"tmpfs","o":"bind",
                "device":"/etc"}}}})")})),
              {"a volume bound to /etc"}),
      refused("run_mount_volume_opt_ext4_rbind", kCreate,
              cli_create(mounts({json::parse(R"({"Type":"volume","Target":"/e",
                "VolumeOptions":{"DriverConfig":{"Options":{"type":"ext4","o":"ro,rbind",
                "device":"/"}}}})")})),
              {"a volume bound to /"}),
      refused("run_mount_volume_opt_ext4_device", kCreate,
              cli_create(mounts({json::parse(R"({"Type":"volume","Target":"/d",
                "VolumeOptions":{"DriverConfig":{"Options":{"type":"ext4",
                "device":"/dev/sda1"}}}})")})),
              {"volume options type=ext4 device=/dev/sda1"}),
      refused("run_mount_volume_opt_nfs", kCreate,
              cli_create(mounts({json::parse(R"({"Type":"volume","Target":"/d",
                "VolumeOptions":{"DriverConfig":{"Options":{"type":"nfs",
                "o":"addr=10.0.0.1,rw","device":":/export"}}}})")})),
              {"volume options type=nfs"}),
      refused("run_mount_volume_driver", kCreate,
              cli_create(mounts({json::parse(R"({"Type":"volume","Source":"v","Target":"/d",
                "VolumeOptions":{"DriverConfig":{"Name":"vieux/sshfs"}}})")})),
              {"volume driver vieux/sshfs"}),
      refused("run_mount_npipe", kCreate,
              cli_create(mounts({{{"Type", "npipe"}, {"Source", "x"}, {"Target", "/d"}}})),
              {"--mount type=npipe"}),
      refused("run_mount_cluster", kCreate,
              cli_create(mounts({{{"Type", "cluster"}, {"Source", "x"}, {"Target", "/d"}}})),
              {"--mount type=cluster"}),
      refused("exec_privileged", kExec, cli_exec(true), {"docker exec --privileged", "Privileged"}),
      refused("exec_privileged_slashed_name", "/v1.51/containers/a/b/exec", cli_exec(true),
              {"docker exec --privileged"}),
      refused("update_devices", kUpdate, json::parse(R"({"Devices":[{"PathOnHost":"/dev/mem",
                "PathInContainer":"/dev/mem","CgroupPermissions":"rwm"}]})").dump(),
              {"--device", "Devices"}),
      refused("update_device_cgroup_rules", kUpdate, R"({"DeviceCgroupRules":["a *:* rwm"]})",
              {"--device", "DeviceCgroupRules"}),
      refused("update_device_requests", kUpdate, R"({"DeviceRequests":[{"Count":-1}]})",
              {"--gpus"}),
      refused("update_cgroup_parent", kUpdate, R"({"CgroupParent":"/"})", {"--cgroup-parent"}),
      refused("volume_bind_etc", kVolume,
              cli_volume("local", {{"device", "/etc"}, {"o", "bind"}, {"type", "none"}}),
              {"a volume bound to /etc", "DriverOpts"}),
      refused("volume_bind_escape", kVolume,
              cli_volume("local", {{"device", kMount + "/../../.."}, {"o", "bind"}, {"type", "none"}}),
              {"a volume bound to " + kMount + "/../../.."}),
      refused("volume_tmpfs_bind", kVolume,
              cli_volume("local", {{"device", "/etc"}, {"o", "size=1m,bind"}, {"type", "tmpfs"}}),
              {"a volume bound to /etc"}),
      refused("volume_device", kVolume,
              cli_volume("local", {{"device", "/dev/sda1"}, {"type", "ext4"}}),
              {"volume options type=ext4 device=/dev/sda1"}),
      refused("volume_nfs", kVolume,
              cli_volume("local", {{"device", ":/export"}, {"o", "addr=10.0.0.1"}, {"type", "nfs"}}),
              {"volume options type=nfs"}),
      refused("volume_cifs", kVolume,
              cli_volume("", {{"device", "//10.0.0.1/share"}, {"o", "username=x"}, {"type", "cifs"}}),
              {"volume options type=cifs"}),
      refused("volume_driver", kVolume, cli_volume("vieux/sshfs", {{"sshcmd", "u@h:/"}}),
              {"volume driver vieux/sshfs"}),
      refused("network_macvlan", kNetwork, cli_network("macvlan"),
              {"network driver macvlan", "Driver"}),
      refused("network_ipvlan", kNetwork, cli_network("ipvlan"), {"network driver ipvlan"}),
      refused("network_host", kNetwork, cli_network("host"), {"network driver host"}),
      refused("network_overlay", kNetwork, cli_network("overlay"), {"network driver overlay"}),
      refused("build_network_host", cli_build("host"), "",
              {"docker build --network=host", "networkmode"}),
      refused("build_buildkit_network_host",
              "/v1.51/build?networkmode=host&remote=client-session&session=abc&version=2", "",
              {"docker build --network=host"}),
      refused("build_cgroup_parent", cli_build("default", "%2F"), "",
              {"docker build --cgroup-parent", "cgroupparent"}),
      refused("plugin_install", "/v1.51/plugins/pull?remote=vieux%2Fsshfs%3Alatest&name=vieux%2Fsshfs%3Alatest",
              R"([{"Name":"network","Value":["host"]},{"Name":"capabilities","Value":["CAP_SYS_ADMIN"]}])",
              {"Docker plugins"}),
      refused("plugin_create", "/v1.51/plugins/create?name=p", "", {"Docker plugins"}),
      refused("plugin_enable", "/v1.51/plugins/vieux/sshfs:latest/enable?timeout=0", "",
              {"Docker plugins"}),
      refused("plugin_set", "/v1.51/plugins/p/set", R"(["DEBUG=1"])", {"Docker plugins"}),
      refused("plugin_upgrade", "/v1.51/plugins/p/upgrade?remote=x", "[]", {"Docker plugins"}),
      refused("plugin_push", "/v1.51/plugins/p/push", "", {"Docker plugins"}),
      refused("swarm_init", "/v1.51/swarm/init",
              R"({"ListenAddr":"0.0.0.0:2377","AdvertiseAddr":"","ForceNewCluster":false})",
              {"Docker swarm mode"}),
      refused("swarm_join", "/v1.51/swarm/join",
              R"({"ListenAddr":"0.0.0.0:2377","RemoteAddrs":["10.0.0.1:2377"],"JoinToken":"x"})",
              {"Docker swarm mode"}),
  };
}
INSTANTIATE_TEST_SUITE_P(CliRefusals, ApiPolicyTable, ::testing::ValuesIn(cli_refusals()),
                         case_name);

// The same privileged create, spelled the ways dockerd's router takes for /containers/create.
std::vector<Case> route_spellings() {
  const std::string body = cli_create({{"Privileged", true}});
  auto c = [&](std::string name, std::string target, std::string method = "POST") {
    Case r = refused(std::move(name), std::move(target), body, {"--privileged"});
    r.method = std::move(method);
    return r;
  };
  return {
      c("plain", "/containers/create"),
      c("version_prefix", "/v1.41/containers/create"),
      c("version_prefix_query", "/v1.24/containers/create?name=a"),
      c("version_prefix_dots", "/v1..1./containers/create"),
      c("trailing_slash", "/containers/create/"),
      c("doubled_slashes", "//containers//create"),
      c("dot_segment", "/containers/./create"),
      c("dotdot_segment", "/x/../containers/create"),
      c("dotdot_above_root", "/../../containers/create"),
      c("encoded_slash", "/containers%2Fcreate"),
      c("encoded_slash_lower", "/v1.41/containers%2fcreate"),
      c("encoded_letter", "/%63ontainers/create"),
      c("encoded_everything", "/%76%31%2E%34%31/%63%6F%6E%74%61%69%6E%65%72%73/%63reate"),
      c("encoded_dotdot", "/x/%2E%2E/containers/create"),
      c("absolute_form", "http://docker/containers/create"),
      c("absolute_form_versioned", "http://docker/v1.43/containers/create?name=a"),
      c("absolute_form_upper_scheme", "HTTP://api.moby.localhost/containers/create"),
      c("absolute_form_empty_authority", "http:///containers/create"),
      c("absolute_form_userinfo", "http://u:p@docker:2375/containers/create"),
      c("method_lower_case", "/containers/create", "post"),
      c("method_mixed_case", "/v1.41/containers/create", "Post"),
  };
}
INSTANTIATE_TEST_SUITE_P(RouteSpellings, ApiPolicyTable, ::testing::ValuesIn(route_spellings()),
                         case_name);

// JSON spellings encoding/json reads as the same fields.
std::vector<Case> key_spellings() {
  const std::string long_s = "\xC5\xBF";   // U+017F LATIN SMALL LETTER LONG S, folds to s
  const std::string kelvin = "\xE2\x84\xAA";  // U+212A KELVIN SIGN, folds to k
  return {
      refused("lower_case", kCreate, R"({"hostconfig":{"privileged":true}})", {"--privileged"}),
      refused("upper_case", kCreate, R"({"HOSTCONFIG":{"PRIVILEGED":true}})", {"--privileged"}),
      refused("long_s_utf8", kCreate, "{\"Ho" + long_s + "tConfig\":{\"Privileged\":true}}",
              {"--privileged"}),
      refused("long_s_escaped", kCreate, R"({"Ho\u017ftConfig":{"Privileged":true}})",
              {"--privileged"}),
      refused("long_s_in_binds", kCreate, "{\"HostConfig\":{\"Bind" + long_s + "\":[\"/:/h\"]}}",
              {"-v /"}),
      refused("long_s_in_security_opt", kCreate,
              "{\"HostConfig\":{\"" + long_s + "ecurityOpt\":[\"seccomp=unconfined\"]}}",
              {"seccomp=unconfined"}),
      refused("kelvin_in_masked_paths", kCreate,
              "{\"HostConfig\":{\"Mas" + kelvin + "edPaths\":[]}}", {"systempaths=unconfined"}),
      refused("kelvin_escaped", kCreate, R"({"HostConfig":{"Mas\u212AedPaths":[]}})",
              {"systempaths=unconfined"}),
      refused("escaped_key", kCreate, R"({"\u0048ostConfig":{"\u0050rivileged":true}})",
              {"--privileged"}),
      refused("escaped_value", kCreate, R"({"HostConfig":{"PidMode":"\u0068ost"}})",
              {"--pid=host"}),
      refused("escaped_bind_source", kCreate, R"({"HostConfig":{"Binds":["/\u0065tc:/x"]}})",
              {"-v /etc"}),
      refused("case_variant_dangerous_last", kCreate,
              R"({"HostConfig":{"Privileged":false,"privileged":true}})", {"--privileged"}),
      refused("case_variant_dangerous_first", kCreate,
              R"({"HostConfig":{"privileged":true,"Privileged":false}})", {"--privileged"}),
      refused("exact_duplicate_dangerous_last", kCreate,
              R"({"HostConfig":{"Privileged":false,"Privileged":true}})", {"--privileged"}),
      refused("case_variant_host_configs", kCreate,
              R"({"HostConfig":{"Privileged":false},"hostconfig":{"Privileged":true}})",
              {"--privileged"}),
      refused("case_variant_cap_lists", kCreate,
              R"({"HostConfig":{"CapAdd":["CHOWN"],"capadd":["SYS_ADMIN"]}})",
              {"--cap-add SYS_ADMIN"}),
      refused("mount_keys_lower_case", kCreate,
              R"({"HostConfig":{"mounts":[{"type":"bind","source":"/etc","target":"/e"}]}})",
              {"--mount source=/etc"}),
      refused("mount_case_variant_sources", kCreate,
              R"({"HostConfig":{"Mounts":[{"Type":"bind","Source":")" + kMount +
                  R"(","source":"/etc","Target":"/e"}]}})",
              {"--mount source=/etc"}),
      refused("cap_prefixed", kCreate, cli_create({{"CapAdd", {"CAP_SYS_ADMIN"}}}),
              {"--cap-add SYS_ADMIN"}),
      refused("cap_bare_lower", kCreate, cli_create({{"CapAdd", {"sys_admin"}}}),
              {"--cap-add SYS_ADMIN"}),
      refused("cap_prefixed_lower", kCreate, cli_create({{"CapAdd", {"cap_sys_admin"}}}),
              {"--cap-add SYS_ADMIN"}),
      refused("cap_mixed_case", kCreate, cli_create({{"CapAdd", {"Cap_Sys_Module"}}}),
              {"--cap-add SYS_MODULE"}),
      refused("cap_all_lower", kCreate, cli_create({{"CapAdd", {"all"}}}), {"--cap-add ALL"}),
      refused("cap_unknown", kCreate, cli_create({{"CapAdd", {"CAP_NOT_A_CAPABILITY"}}}),
              {"--cap-add NOT_A_CAPABILITY"}),
      refused("exec_key_lower_case", kExec, R"({"Cmd":["sh"],"privileged":true})",
              {"docker exec --privileged"}),
      refused("update_key_lower_case", kUpdate, R"({"devices":[{"PathOnHost":"/dev/mem"}]})",
              {"--device"}),
      refused("volume_keys_case", kVolume,
              R"({"name":"v","driveropts":{"type":"none","o":"bind","device":"/etc"}})",
              {"a volume bound to /etc"}),
      refused("volume_driver_key_case", kVolume, R"({"Name":"v","DRIVER":"nfs-plugin"})",
              {"volume driver nfs-plugin"}),
      refused("network_driver_key_case", kNetwork, R"({"Name":"n","driver":"macvlan"})",
              {"network driver macvlan"}),
      refused("build_value_encoded", "/build?networkmode=%68ost", "", {"--network=host"}),
      refused("build_key_encoded", "/build?network%6Dode=host", "", {"--network=host"}),
      refused("build_second_value", "/build?networkmode=default&networkmode=host", "",
              {"--network=host"}),
      refused("build_plus_in_cgroup_parent", "/build?cgroupparent=a+b", "", {"--cgroup-parent"}),
      // Go before 1.17 (dockerd 20.10 as Debian 11 ships it) also splits the query at ';'.
      refused("build_semicolon_separator", "/build?t=x;networkmode=host", "", {"--network=host"}),
      refused("build_semicolon_cgroup_parent", "/build?t=x&rm=1;cgroupparent=/", "",
              {"--cgroup-parent"}),
  };
}
INSTANTIATE_TEST_SUITE_P(KeySpellings, ApiPolicyTable, ::testing::ValuesIn(key_spellings()),
                         case_name);

// Bodies dockerd would not read as the judge would: refused, not passed on.
std::vector<Case> unreadable_bodies() {
  return {
      unreadable("not_json", kCreate, "{not json"),
      unreadable("truncated", kCreate, R"({"HostConfig":{"Privileged":tr)"),
      unreadable("trailing_garbage", kCreate, R"({"HostConfig":{}} trailing)"),
      unreadable("trailing_brace", kCreate, R"({"HostConfig":{}}})"),
      unreadable("second_object", kCreate, R"({"Image":"a"}{"HostConfig":{"Privileged":true}})"),
      unreadable("array", kCreate, "[1,2]"),
      unreadable("string", kCreate, R"("x")"),
      unreadable("number", kCreate, "42"),
      unreadable("boolean", kCreate, "true"),
      unreadable("invalid_utf8_value", kCreate, "{\"Image\":\"\xff\xfe\"}"),
      unreadable("invalid_utf8_key", kCreate, "{\"Ho\xffstConfig\":{\"Privileged\":true}}"),
      unreadable("overlong_utf8", kCreate, "{\"HostConfig\":{\"PidMode\":\"\xC1\xA8ost\"}}"),
      unreadable("lone_surrogate", kCreate, R"({"Image":"\ud800"})"),
      unreadable("trailing_comma", kCreate, R"({"Image":"a",})"),
      unreadable("comment", kCreate, R"(/* x */ {"Image":"a"})"),
      unreadable("single_quotes", kCreate, R"({'Image':'a'})"),
      unreadable("nan", kCreate, R"({"HostConfig":{"OomScoreAdj":NaN}})"),
      unreadable("exec_not_json", kExec, "privileged=true"),
      unreadable("update_not_json", kUpdate, "{"),
      unreadable("volume_not_json", kVolume, "x"),
      unreadable("network_not_json", kNetwork, "[]"),
  };
}
INSTANTIATE_TEST_SUITE_P(UnreadableBodies, ApiPolicyTable,
                         ::testing::ValuesIn(unreadable_bodies()), case_name);

// What a session needs: forwarded untouched.
std::vector<Case> allowed_requests() {
  const std::string tmpfs_volume = R"({"Type":"volume","Target":"/t","VolumeOptions":{
      "DriverConfig":{"Name":"local","Options":{"type":"tmpfs","device":"tmpfs","o":"size=100m"}}}})";
  return {
      allowed("run_plain", kCreate, cli_create()),
      allowed("run_it_rm_env_ports", kCreate,
              cli_create({{"AutoRemove", true},
                          {"PortBindings",
                           json::parse(R"({"80/tcp":[{"HostIp":"","HostPort":"8080"}]})")}},
                         {{"Tty", true}, {"OpenStdin", true}, {"Env", {"A=1"}},
                          {"ExposedPorts", {{"80/tcp", json::object()}}}})),
      allowed("run_v_inside_sync_root", kCreate,
              cli_create({{"Binds", {kMount + ":/src", kMount + "/sub/dir:/s:ro,z"}}})),
      allowed("run_v_dotdot_staying_inside", kCreate,
              cli_create({{"Binds", {kMount + "/a/../b:/src"}}})),
      allowed("run_v_named_volume", kCreate, cli_create({{"Binds", {"cache:/cache:rw"}}})),
      allowed("run_anonymous_volume", kCreate, cli_create({}, {{"Volumes", {{"/data", json::object()}}}})),
      // A bind spec of one part is only a destination: dockerd makes an anonymous volume there.
      allowed("run_binds_destination_only", kCreate, cli_create({{"Binds", {"/data", "/etc"}}})),
      allowed("run_mount_bind_inside", kCreate,
              cli_create(mounts({{{"Type", "bind"}, {"Source", kMount + "/sub"}, {"Target", "/s"},
                                  {"ReadOnly", true}}}))),
      allowed("run_mount_named_volume", kCreate,
              cli_create(mounts({{{"Type", "volume"}, {"Source", "data"}, {"Target", "/d"}}}))),
      allowed("run_mount_volume_local_driver", kCreate,
              cli_create(mounts({json::parse(R"({"Type":"volume","Source":"data","Target":"/d",
                "VolumeOptions":{"NoCopy":true,"DriverConfig":{"Name":"local"}}})")}))),
      allowed("run_mount_tmpfs", kCreate,
              cli_create(mounts({{{"Type", "tmpfs"}, {"Target", "/t"},
                                  {"TmpfsOptions", {{"SizeBytes", 1048576}}}}}))),
      allowed("run_tmpfs_flag", kCreate, cli_create({{"Tmpfs", {{"/run", "rw,size=64m"}}}})),
      allowed("run_mount_tmpfs_volume", kCreate, cli_create(mounts({json::parse(tmpfs_volume)}))),
      allowed("run_mount_volume_bound_inside", kCreate,
              cli_create(mounts({{{"Type", "volume"}, {"Target", "/e"},
                                  {"VolumeOptions",
                                   {{"DriverConfig",
                                     {{"Options",
                                       {{"type", "none"}, {"o", "bind"}, {"device", kMount}}}}}}}}}))),
      allowed("run_mount_image", kCreate,
              cli_create(mounts({{{"Type", "image"}, {"Source", "busybox"}, {"Target", "/img"}}}))),
      allowed("run_cap_add_net_bind_service", kCreate,
              cli_create({{"CapAdd", {"CAP_NET_BIND_SERVICE"}}})),
      allowed("run_cap_add_defaults_any_spelling", kCreate,
              cli_create({{"CapAdd", {"chown", "CAP_KILL", "Sys_Chroot", "cap_net_raw"}}})),
      allowed("run_cap_drop_all", kCreate, cli_create({{"CapDrop", {"ALL"}}})),
      allowed("run_no_new_privileges", kCreate,
              cli_create({{"SecurityOpt", {"no-new-privileges"}}})),
      allowed("run_no_new_privileges_true", kCreate,
              cli_create({{"SecurityOpt", {"no-new-privileges:true", "no-new-privileges=true"}}})),
      allowed("run_network_default", kCreate, cli_create({{"NetworkMode", "default"}})),
      allowed("run_network_none", kCreate, cli_create({{"NetworkMode", "none"}})),
      allowed("run_network_user_defined", kCreate, cli_create({{"NetworkMode", "mynet"}})),
      allowed("run_shared_namespaces_of_containers", kCreate,
              cli_create({{"NetworkMode", "container:abc"}, {"PidMode", "container:abc"},
                          {"IpcMode", "container:abc"}})),
      allowed("run_ipc_shareable", kCreate, cli_create({{"IpcMode", "shareable"}})),
      allowed("run_cgroupns_private", kCreate, cli_create({{"CgroupnsMode", "private"}})),
      allowed("run_runtime_runc", kCreate, cli_create({{"Runtime", "runc"}})),
      allowed("run_runtime_runc_v2", kCreate, cli_create({{"Runtime", "io.containerd.runc.v2"}})),
      allowed("run_volume_driver_local", kCreate, cli_create({{"VolumeDriver", "local"}})),
      allowed("run_oom_score_adj_positive", kCreate, cli_create({{"OomScoreAdj", 500}})),
      allowed("run_log_driver_json_file_with_rotation", kCreate,
              cli_create({{"LogConfig",
                           {{"Type", "json-file"},
                            {"Config", {{"max-size", "10m"}, {"max-file", "3"}}}}}})),
      allowed("run_log_driver_local", kCreate,
              cli_create({{"LogConfig", {{"Type", "local"}, {"Config", json::object()}}}})),
      allowed("run_log_driver_none", kCreate,
              cli_create({{"LogConfig", {{"Type", "none"}, {"Config", json::object()}}}})),
      allowed("run_limits", kCreate,
              cli_create({{"Memory", 536870912}, {"NanoCpus", 1000000000}, {"PidsLimit", 100},
                          {"Ulimits", json::parse(R"([{"Name":"nofile","Soft":1024,"Hard":2048}])")}})),
      allowed("run_json_whitespace", kCreate, "\r\n\t " + cli_create() + " \n"),
      allowed("create_minimal", "/containers/create", R"({"Image":"busybox"})"),
      allowed("create_null_host_config", "/containers/create", R"({"Image":"b","HostConfig":null})"),
      allowed("create_empty_body", kCreate, ""),
      allowed("create_blank_body", kCreate, " \r\n"),
      allowed("create_null_body", kCreate, "null"),
      allowed("exec_plain", kExec, cli_exec(false)),
      allowed("exec_root_user", kExec, R"({"Cmd":["sh"],"User":"0:0"})"),
      allowed("update_memory", kUpdate, R"({"Memory":1048576,"RestartPolicy":{"Name":"always"}})"),
      allowed("update_empty_devices", kUpdate, R"({"Devices":[],"CgroupParent":""})"),
      allowed("volume_plain", kVolume, cli_volume("local", json::object())),
      allowed("volume_no_driver", kVolume, R"({"Name":"v"})"),
      allowed("volume_tmpfs", kVolume,
              cli_volume("local", {{"type", "tmpfs"}, {"device", "tmpfs"}, {"o", "size=64m"}})),
      allowed("volume_bound_inside", kVolume,
              cli_volume("local", {{"type", "none"}, {"o", "bind"}, {"device", kMount + "/data"}})),
      allowed("volume_tmpfs_typed_bind_inside", kVolume,
              cli_volume("local", {{"type", "tmpfs"}, {"o", "rbind"}, {"device", kMount}})),
      allowed("network_bridge", kNetwork, cli_network("bridge")),
      allowed("network_default_driver", kNetwork, cli_network("")),
      allowed("build_default_network", cli_build("default"), ""),
      allowed("build_buildkit", "/v1.51/build?remote=client-session&session=abc&version=2", ""),
      allowed("build_network_none", "/build?networkmode=none", ""),
      allowed("build_key_case_is_significant", "/build?NetworkMode=host&CgroupParent=x", ""),
      allowed("list_containers", "/v1.51/containers/json?all=1", "", "GET"),
      allowed("inspect_container", "/v1.51/containers/t/json", "", "GET"),
      allowed("ping", "/_ping", "", "HEAD"),
      allowed("attach", "/v1.51/containers/t/attach?stderr=1&stdin=1&stdout=1&stream=1", ""),
      allowed("exec_start", "/v1.51/exec/e1/start", R"({"Detach":false,"Tty":true,"ConsoleSize":[48,160]})"),
      allowed("exec_start_body_not_judged", "/v1.51/exec/e1/start", R"({"Privileged":true})"),
      allowed("start", kStart, ""),
      allowed("wait", "/v1.51/containers/t/wait?condition=next-exit", ""),
      allowed("images_load", "/v1.51/images/load?quiet=1", "not json: a tar"),
      allowed("session", "/session", ""),
      allowed("grpc", "/grpc", ""),
      allowed("create_with_get", "/containers/create", cli_create({{"Privileged", true}}), "GET"),
      allowed("create_with_put", "/containers/create", cli_create({{"Privileged", true}}), "PUT"),
      allowed("version_prefix_upper_case_v", "/V1.41/containers/create",
              cli_create({{"Privileged", true}})),
      allowed("route_case_is_significant", "/Containers/Create", cli_create({{"Privileged", true}})),
      allowed("two_version_prefixes", "/v1.41/v1.41/containers/create",
              cli_create({{"Privileged", true}})),
  };
}
INSTANTIATE_TEST_SUITE_P(Allowed, ApiPolicyTable, ::testing::ValuesIn(allowed_requests()),
                         case_name);

// Request targets Go's url.ParseRequestURI reads differently from a plain "path?query#fragment":
// a scheme needs no "//" after it, and nothing is a fragment ('#' stays in the path or query).
std::vector<Case> go_request_uris() {
  const std::string body = cli_create({{"Privileged", true}});
  return {
      refused("scheme_without_authority", "http:/containers/create", body, {"--privileged"}),
      refused("any_scheme_without_authority", "unix:/v1.41/containers/create?name=a", body,
              {"--privileged"}),
      refused("scheme_with_digits_and_signs", "a1+b-c.d:/containers/create", body,
              {"--privileged"}),
      refused("exec_scheme_without_authority", "x:/containers/t/exec", cli_exec(true),
              {"docker exec --privileged"}),
      refused("build_hash_in_query", "/build?t=x#&networkmode=host", "", {"--network=host"}),
      refused("build_hash_before_query", "/v1.41/build?t=x%23#y&cgroupparent=/", "",
              {"--cgroup-parent"}),
      refused("exec_hash_in_container_name", "/containers/t#/exec", cli_exec(true),
              {"docker exec --privileged"}),
      // Not routed by dockerd: "/containers/create#x" is a path of its own there.
      allowed("hash_in_path", "/containers/create#x", body),
      allowed("scheme_must_start_with_a_letter", "1http:/containers/create", body),
  };
}
INSTANTIATE_TEST_SUITE_P(GoRequestUris, ApiPolicyTable, ::testing::ValuesIn(go_request_uris()),
                         case_name);

// A key encoding/json matches more than once: Go keeps the last in the document, nlohmann sorts
// the keys, so the judge must look at every one of them.
std::vector<Case> repeated_keys() {
  return {
      refused("mount_type_volume_then_bind", kCreate,
              R"({"HostConfig":{"Mounts":[{"type":"volume","Type":"bind","Source":"/etc","Target":"/e"}]}})",
              {"--mount source=/etc"}),
      refused("mount_type_upper_case_last", kCreate,
              R"({"HostConfig":{"Mounts":[{"Type":"volume","TYPE":"bind","Source":"/","Target":"/e"}]}})",
              {"--mount source=/"}),
      refused("mount_type_volume_options_behind_bind", kCreate,
              R"({"HostConfig":{"Mounts":[{"Type":"bind","type":"volume","Target":"/e",
                 "VolumeOptions":{"DriverConfig":{"Options":{"type":"none","o":"bind","device":"/etc"}}}}]}})",
              {"a volume bound to /etc"}),
      refused("mount_type_npipe_behind_tmpfs", kCreate,
              R"({"HostConfig":{"Mounts":[{"TYPE":"tmpfs","Type":"npipe","Target":"/e"}]}})",
              {"--mount type=npipe"}),
  };
}
INSTANTIATE_TEST_SUITE_P(RepeatedKeys, ApiPolicyTable, ::testing::ValuesIn(repeated_keys()),
                         case_name);

// encoding/json decodes every key that matches a field into that same field, and an object or
// array decoded a second time is merged into what the first left there (struct fields and map
// entries it does not mention stay, slice elements are decoded into in place). nlohmann keeps
// one member per exact key (the last) and the judge sees case-variant keys one by one, so a
// dangerous value split over two members must not get through.
std::vector<Case> merged_members() {
  auto merged = [](std::string name, std::string target, std::string body, std::string key) {
    return Case{std::move(name), std::move(target), std::move(body), 400, {"cannot read", key}};
  };
  return {
      merged("host_config_twice", kCreate,
             R"({"Image":"b","HostConfig":{"Privileged":true},"HostConfig":{"Memory":0}})",
             "HostConfig"),
      merged("mounts_twice", kCreate,
             R"({"HostConfig":{"Mounts":[{"Type":"bind","Source":"/etc","Target":"/x"}],
                 "Mounts":[{"Target":"/x"}]}})",
             "Mounts"),
      merged("mounts_case_variant_lists", kCreate,
             R"({"HostConfig":{"Mounts":[{"Type":"bind","Source":")" + kMount +
                 R"(","Target":"/x"}],"mounts":[{"Source":"/etc"}]}})",
             "Mounts"),
      // Each of these option maps is allowed on its own (a bind inside the sync root, a tmpfs,
      // nothing); merged, they are type "", o "bind", device "/etc": a bind of /etc.
      merged("driver_options_case_variant", kCreate,
             R"({"HostConfig":{"Mounts":[{"Type":"volume","Target":"/x","VolumeOptions":{
                 "DriverConfig":{"Options":{"type":"none","o":"bind","device":")" + kMount + R"("},
                 "options":{"type":"tmpfs","device":"/etc"},"OPTIONS":{"type":""}}}}]}})",
             "Options"),
      merged("volume_options_case_variant", kCreate,
             R"({"HostConfig":{"Mounts":[{"Type":"volume","Target":"/x",
                 "VolumeOptions":{"DriverConfig":{"Options":{"type":"none","o":"bind","device":")" +
                 kMount + R"("}}},
                 "volumeoptions":{"DriverConfig":{"Options":{"type":"tmpfs","device":"/"}}},
                 "VOLUMEOPTIONS":{"DriverConfig":{"Options":{"type":""}}}}]}})",
             "VolumeOptions"),
      merged("volume_driver_opts_case_variant", kVolume,
             R"({"Name":"v","DriverOpts":{"type":"none","o":"bind","device":")" + kMount + R"("},
                 "driveropts":{"type":"tmpfs","device":"/etc"},"DRIVEROPTS":{"type":""}})",
             "DriverOpts"),
      merged("volume_driver_opts_twice", kVolume,
             R"({"Name":"v","DriverOpts":{"type":"none","o":"bind","device":")" + kMount + R"("},
                 "DriverOpts":{"type":"tmpfs","device":"/etc"},"DriverOpts":{"type":""}})",
             "DriverOpts"),
      merged("exec_key_twice", kExec, R"({"Cmd":["sh"],"Privileged":true,"Privileged":false})",
             "Privileged"),
      merged("map_key_twice", kCreate, R"({"Image":"b","Labels":{"a":"1","a":"2"}})", "\"a\""),
      // A dangerous value among them is still refused for what it is.
      refused("host_config_twice_dangerous_last", kCreate,
              R"({"HostConfig":{"Memory":0},"HostConfig":{"Privileged":true}})", {"--privileged"}),
      refused("case_variant_host_configs_dangerous", kCreate,
              R"({"HostConfig":{"CapAdd":["CHOWN"]},"hostconfig":{"CapAdd":["SYS_ADMIN"]}})",
              {"--cap-add SYS_ADMIN"}),
      // Case variants of scalars are no merge (every candidate is judged), nor are map keys that
      // differ in case (Go's maps keep both).
      allowed("case_variant_scalars", kCreate,
              R"({"HostConfig":{"Privileged":false,"privileged":false,"NetworkMode":"bridge"}})"),
      allowed("case_variant_map_keys", kCreate,
              R"({"Image":"b","Labels":{"a":"1","A":"2"},"Volumes":{"/Data":{},"/data":{}},
                  "HostConfig":{"Tmpfs":{"/Run":"","/run":""}}})"),
      allowed("same_key_in_sibling_objects", kCreate,
              R"({"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/a"},{"Type":"tmpfs","Target":"/b"}]}})"),
  };
}
INSTANTIATE_TEST_SUITE_P(MergedMembers, ApiPolicyTable, ::testing::ValuesIn(merged_members()),
                         case_name);

// What older engines still read (the runner runs the host's docker.io, whatever its version):
// until moby 27 the create body embeds a deprecated HostConfig whose fields sit at the top level
// and are used whole when there is no "HostConfig" key; before API 1.24 (accepted by default
// until moby 25) a start request may carry a HostConfig.
std::vector<Case> older_engines() {
  return {
      refused("create_top_level_privileged", "/v1.17/containers/create",
              R"({"Image":"busybox","Cmd":["sh"],"Privileged":true})", {"--privileged (Privileged)"}),
      refused("create_top_level_binds", "/v1.17/containers/create",
              R"({"Image":"busybox","Binds":["/:/host"]})", {"-v / (Binds)"}),
      refused("create_top_level_cap_add", "/containers/create",
              R"({"Image":"busybox","capadd":["SYS_ADMIN"]})", {"--cap-add SYS_ADMIN (CapAdd)"}),
      refused("create_top_level_pid_host", "/containers/create",
              R"({"Image":"busybox","PidMode":"host","HostConfig":null})", {"--pid=host (PidMode)"}),
      refused("create_top_level_volume_driver_beside_host_config", "/v1.17/containers/create",
              R"({"Image":"busybox","VolumeDriver":"convoy","HostConfig":{}})",
              {"--volume-driver convoy (VolumeDriver)"}),
      refused("start_with_privileged", "/v1.23/containers/t/start", R"({"Privileged":true})",
              {"--privileged (Privileged)"}),
      refused("start_with_binds", "/v1.19/containers/t/start",
              R"({"Binds":["/:/host"],"NetworkMode":"bridge"})", {"-v /"}),
      refused("start_with_host_network", "/v1.19/containers/t/start", R"({"NetworkMode":"host"})",
              {"--network=host"}),
      refused("start_with_caps_any_case", "/v1.19/containers/t/start", R"({"capadd":["all"]})",
              {"--cap-add ALL"}),
      refused("start_with_devices", "/v1.19/containers/a/b/start",
              R"({"Devices":[{"PathOnHost":"/dev/sda"}]})", {"--device"}),
      unreadable("start_with_garbage", "/v1.19/containers/t/start", "{privileged}"),
      allowed("start_without_body", "/v1.51/containers/t/start", ""),
      allowed("start_with_empty_object", "/v1.51/containers/t/start", "{}"),
      allowed("start_with_null", "/v1.51/containers/t/start", "null"),
      allowed("start_with_harmless_host_config", "/v1.23/containers/t/start",
              R"({"Binds":[")" + kMount + R"(:/src"],"Memory":0})"),
      allowed("create_top_level_harmless", "/v1.17/containers/create",
              R"({"Image":"busybox","Memory":1048576,"CpuShares":512,"Cpuset":"0"})"),
  };
}
INSTANTIATE_TEST_SUITE_P(OlderEngines, ApiPolicyTable, ::testing::ValuesIn(older_engines()),
                         case_name);

// --- the router's view ------------------------------------------------------------------------

TEST(ApiPolicyRoute, NormalisesAsDockerdsRouter) {
  struct {
    const char* method;
    const char* target;
    const char* path;
    const char* query;
  } cases[] = {
      {"post", "/v1.41/containers/create?name=x", "/containers/create", "name=x"},
      {"POST", "/containers%2Fcreate", "/containers/create", ""},
      {"POST", "//containers//create/", "/containers/create", ""},
      {"POST", "/a/b/../../containers/./create", "/containers/create", ""},
      {"POST", "/../containers/create", "/containers/create", ""},
      {"POST", "http://docker/v1.41/containers/create?x=1", "/containers/create", "x=1"},
      {"POST", "http://docker", "/", ""},
      {"POST", "http://docker?x=1", "/", "x=1"},
      {"POST", "http:/v1.41/containers/create?x=1", "/containers/create", "x=1"},
      {"POST", "http://a?b/containers/create", "/", "b/containers/create"},
      {"POST", "http:containers/create", "/", ""},  // opaque: no path dockerd routes
      {"POST", "/containers/create#x", "/containers/create#x", ""},
      {"POST", "/build?t=x#&networkmode=host", "/build", "t=x#&networkmode=host"},
      {"POST", "/a:/containers/create", "/a:/containers/create", ""},
      {"GET", "/v1.41", "/v1.41", ""},
      {"GET", "/v1.41/", "/v1.41", ""},
      {"GET", "/v/containers/json", "/v/containers/json", ""},
      {"GET", "/vx1/containers/json", "/vx1/containers/json", ""},
      {"GET", "/containers/json?filters=%7B%7D&all=1", "/containers/json", "filters=%7B%7D&all=1"},
      {"POST", "/build?a=%2F+b", "/build", "a=%2F+b"},
      {"POST", "/containers/a+b/exec", "/containers/a+b/exec", ""},
      {"POST", "/containers/%zz/exec", "/containers/%zz/exec", ""},
      {"POST", "/", "/", ""},
  };
  for (const auto& c : cases) {
    ApiRoute r = api_route(c.method, c.target);
    EXPECT_EQ(r.method, std::string(c.method) == "post" ? "POST" : c.method) << c.target;
    EXPECT_EQ(r.path, c.path) << c.target;
    EXPECT_EQ(r.query, c.query) << c.target;
  }
}

TEST(ApiPolicyRoute, WhichRequestsAreJudged) {
  struct {
    const char* method;
    const char* target;
    Judged want;
  } cases[] = {
      {"POST", "/containers/create", Judged::body},
      {"POST", "/v1.51/containers/t/exec", Judged::body},
      {"POST", "/containers/a/b/c/exec", Judged::body},
      {"POST", "/containers/create/exec", Judged::body},  // exec in a container named "create"
      {"POST", "/containers/t/update", Judged::body},
      {"POST", "/containers/t/start", Judged::body},  // a HostConfig before API 1.24
      {"POST", "/containers/a/b/start", Judged::body},
      {"POST", "/volumes/create", Judged::body},
      {"POST", "/networks/create", Judged::body},
      {"POST", "/build", Judged::query},
      {"POST", "/plugins/pull", Judged::query},
      {"POST", "/plugins/p/enable", Judged::query},
      {"POST", "/swarm/init", Judged::query},
      {"POST", "/swarm/join", Judged::query},
      {"GET", "/containers/create", Judged::no},
      {"GET", "/containers/json", Judged::no},
      {"GET", "/plugins", Judged::no},
      {"POST", "/containers/exec", Judged::no},  // no container name
      {"POST", "/containers/t/attach", Judged::no},
      {"POST", "/exec/e1/start", Judged::no},
      {"POST", "/exec/e1/resize", Judged::no},
      {"POST", "/containers/t/wait", Judged::no},
      {"POST", "/containers/t/restart", Judged::no},
      {"POST", "/containers/start", Judged::no},
      {"POST", "/containers/t/kill", Judged::no},
      {"POST", "/images/create", Judged::no},
      {"POST", "/session", Judged::no},
      {"POST", "/grpc", Judged::no},
      {"POST", "/swarm/leave", Judged::no},
      {"POST", "/plugins", Judged::no},
      {"HEAD", "/_ping", Judged::no},
  };
  for (const auto& c : cases)
    EXPECT_EQ(judged(api_route(c.method, c.target)), c.want) << c.method << " " << c.target;
}

TEST(ApiPolicyRoute, JudgedIsTheSameWithAndWithoutAVersionPrefix) {
  for (const char* path : {"/containers/create", "/containers/t/exec", "/containers/t/update",
                           "/volumes/create", "/networks/create", "/build", "/plugins/pull",
                           "/swarm/init", "/containers/json", "/exec/e/start", "/_ping"})
    for (const char* method : {"GET", "POST"})
      EXPECT_EQ(judged(api_route(method, std::string("/v1.41") + path)),
                judged(api_route(method, path)))
          << method << " " << path;
}

TEST(ApiPolicyKeys, FoldLikeGoEncodingJson) {
  EXPECT_EQ(fold_json_key("HostConfig"), "hostconfig");
  EXPECT_EQ(fold_json_key("HOSTCONFIG"), "hostconfig");
  EXPECT_EQ(fold_json_key("Ho\xC5\xBFtConfig"), "hostconfig");
  EXPECT_EQ(fold_json_key("Mas\xE2\x84\xAA" "edPaths"), "maskedpaths");
  EXPECT_EQ(fold_json_key("\xE2\x84\xAA"), "k");
  // Other non-ASCII letters fold to nothing ASCII (İ is not I for encoding/json).
  EXPECT_NE(fold_json_key("Pr\xC4\xB0vileged"), "privileged");
  EXPECT_NE(fold_json_key("Privileged\xC5"), "privileged");  // a cut sequence stays as it is
  EXPECT_EQ(fold_json_key(""), "");
}

// --- the sync root and the runner's file system ------------------------------------------------

TEST(ApiPolicyBinds, NoSyncRootMeansNoBinds) {
  ApiPolicy p = lexical_policy();
  p.sync_root.clear();
  auto r = judge("POST", kCreate, cli_create({{"Binds", {kMount + ":/src"}}}), p);
  ASSERT_TRUE(r);
  EXPECT_NE(r->message.find("-v " + kMount), std::string::npos) << r->message;
  EXPECT_FALSE(judge("POST", kCreate, cli_create({{"Binds", {"named:/x"}}}), p));
}

TEST(ApiPolicyDockerSocket, OnlyTheSessionsGatedSocketMayBeBoundOutsideTheSyncRoot) {
  ApiPolicy p = lexical_policy();
  const std::string gated = "/run/offload/abcd1234/api/docker.sock";
  // Without a gated socket, the Docker socket is a runner path like any other.
  EXPECT_TRUE(judge("POST", kCreate, cli_create({{"Binds", {gated + ":/var/run/docker.sock"}}}), p));
  p.api_socket = gated;
  EXPECT_FALSE(judge("POST", kCreate, cli_create({{"Binds", {gated + ":/var/run/docker.sock"}}}), p));
  EXPECT_FALSE(judge("POST", kCreate,
                     cli_create({{"Mounts", {{{"Type", "bind"}, {"Source", "/run//offload/abcd1234/api/./docker.sock"},
                                              {"Target", "/s"}}}}}), p));
  // Not the engine's own socket beside it, nor its directory, nor the host's socket.
  for (const char* source : {"/run/offload/abcd1234/docker.sock",
                                    "/run/offload/abcd1234/api", "/var/run/docker.sock",
                                    "/run/offload/abcd1234/api/docker.sock/.."}) {
    auto r = judge("POST", kCreate, cli_create({{"Binds", {std::string(source) + ":/s"}}}), p);
    EXPECT_TRUE(r) << source;
  }
  // The rest of the policy still holds for a create that binds it.
  auto r = judge("POST", kCreate,
                 cli_create({{"Binds", {gated + ":/var/run/docker.sock"}}, {"Privileged", true}}), p);
  ASSERT_TRUE(r);
  EXPECT_NE(r->message.find("--privileged"), std::string::npos);
}

TEST(ApiPolicyDockerSocket, BindDockerSocketRewritesOnlyDockerSocketBinds) {
  const std::string gated = "/g/docker.sock";
  EXPECT_TRUE(is_docker_socket_path("/var/run/docker.sock"));
  EXPECT_TRUE(is_docker_socket_path("//run/./docker.sock"));
  EXPECT_FALSE(is_docker_socket_path("/var/run/docker.sock.bak"));
  EXPECT_FALSE(is_docker_socket_path("docker.sock"));
  EXPECT_FALSE(bind_docker_socket(cli_create({{"Binds", {kMount + ":/src"}}}), gated));
  EXPECT_FALSE(bind_docker_socket("not json", gated));
  auto out = bind_docker_socket(
      cli_create({{"Binds", {kMount + ":/src", "/var/run/docker.sock:/var/run/docker.sock:ro"}},
                  {"Mounts", {{{"Type", "bind"}, {"Source", "/run/docker.sock"}, {"Target", "/d"}},
                              {{"Type", "volume"}, {"Source", "/run/docker.sock"}, {"Target", "/v"}}}}}),
      gated);
  ASSERT_TRUE(out);
  auto doc = json::parse(*out);
  EXPECT_EQ(doc["HostConfig"]["Binds"], json({kMount + ":/src", gated + ":/var/run/docker.sock:ro"}));
  EXPECT_EQ(doc["HostConfig"]["Mounts"][0]["Source"], gated);
  EXPECT_EQ(doc["HostConfig"]["Mounts"][1]["Source"], "/run/docker.sock") << "not a bind";
}

TEST(ApiPolicyBinds, SyncRootIsCompared) {
  // A root given with a trailing slash or `..` means the same directory.
  for (const std::string& root : {kRoot + "/", kRoot + "/.", kRoot + "/x/.."}) {
    ApiPolicy p = lexical_policy();
    p.sync_root = root;
    EXPECT_FALSE(judge("POST", kCreate, cli_create({{"Binds", {kMount + ":/src"}}}), p)) << root;
    EXPECT_TRUE(judge("POST", kCreate, cli_create({{"Binds", {kRoot + "2:/src"}}}), p)) << root;
  }
}

struct SymlinkTree {
  offload::test::TempDir dir{"offload-policy"};
  fs::path root = dir.path() / "sessions" / "abc" / "sync";
  fs::path mount = root / "0123456789abcdef";
  SymlinkTree() {
    fs::create_directories(mount / "inside" / "deeper");
    fs::create_directories(dir.path() / "sessions" / "def" / "sync" / "secret");
    fs::create_directories(dir.path() / "host-etc");
    fs::create_directory_symlink("/", mount / "to-slash");
    fs::create_directory_symlink(dir.path() / "host-etc", mount / "to-host-etc");
    fs::create_directory_symlink("../../../def/sync/secret", mount / "to-sibling");
    fs::create_directory_symlink("inside", mount / "alias");
    fs::create_directory_symlink(mount / "inside" / "deeper", mount / "absolute-alias");
    fs::create_directory_symlink(mount / "to-slash", mount / "chain");
    fs::create_directory_symlink("../../..", mount / "inside" / "up-three");
  }
  ApiPolicy policy() const {
    ApiPolicy p;  // the default resolver: the file system as it is
    p.sync_root = root;
    return p;
  }
};

std::optional<ApiRefusal> bind_v(const fs::path& source, const ApiPolicy& p) {
  return judge("POST", kCreate, cli_create({{"Binds", {source.string() + ":/x"}}}), p);
}
std::optional<ApiRefusal> mount_bind(const fs::path& source, const ApiPolicy& p) {
  return judge("POST", kCreate,
               cli_create(mounts({{{"Type", "bind"}, {"Source", source.string()}, {"Target", "/x"}}})),
               p);
}
std::optional<ApiRefusal> volume_bind(const fs::path& device, const ApiPolicy& p) {
  return judge("POST", kVolume,
               cli_volume("local", {{"type", "none"}, {"o", "bind"}, {"device", device.string()}}),
               p);
}

TEST(ApiPolicyBinds, SymlinksOutOfTheSyncRootAreRefused) {
  SymlinkTree t;
  const ApiPolicy p = t.policy();
  for (const fs::path& out :
       {t.mount / "to-slash", t.mount / "to-slash" / "etc", t.mount / "to-host-etc",
        t.mount / "to-sibling", t.mount / "chain", t.mount / "chain" / "root",
        t.mount / "inside" / "up-three", t.mount / "to-host-etc" / "not-yet"}) {
    auto r = bind_v(out, p);
    ASSERT_TRUE(r) << out;
    EXPECT_EQ(r->status, 403);
    EXPECT_NE(r->message.find("-v " + out.string()), std::string::npos) << r->message;
    EXPECT_TRUE(mount_bind(out, p)) << out;
    EXPECT_TRUE(volume_bind(out, p)) << out;
  }
}

TEST(ApiPolicyBinds, SymlinksThatStayInsideAreAllowed) {
  SymlinkTree t;
  const ApiPolicy p = t.policy();
  for (const fs::path& in :
       {t.mount, t.mount / "inside", t.mount / "alias", t.mount / "alias" / "deeper",
        t.mount / "absolute-alias", t.mount / "not-yet",  // dockerd creates it, inside
        t.mount / "to-slash" / ".." / "inside"}) {      // dockerd cleans `..` lexically first
    EXPECT_FALSE(bind_v(in, p)) << in;
    EXPECT_FALSE(mount_bind(in, p)) << in;
    EXPECT_FALSE(volume_bind(in, p)) << in;
  }
}

TEST(ApiPolicyBinds, ASyncRootReachedThroughASymlinkIsItsTarget) {
  SymlinkTree t;
  fs::create_directory_symlink(t.root, t.dir.path() / "root-link");
  ApiPolicy p = t.policy();
  p.sync_root = t.dir.path() / "root-link";
  EXPECT_FALSE(bind_v(p.sync_root / "0123456789abcdef" / "inside", p));
  EXPECT_TRUE(bind_v(p.sync_root / "0123456789abcdef" / "to-slash", p));
  EXPECT_TRUE(bind_v(t.dir.path() / "host-etc", p));
}

TEST(ApiPolicyBinds, TheInjectedResolverDecides) {
  std::vector<fs::path> asked;
  ApiPolicy p = lexical_policy();
  p.resolve = [&](const fs::path& path) -> std::optional<fs::path> {
    asked.push_back(path);
    if (path == fs::path(kMount + "/link")) return fs::path("/etc");
    if (path == fs::path(kMount + "/gone")) return std::nullopt;
    if (path == fs::path(kRoot)) return fs::path("/data/sync");  // the root itself moved
    if (path.string().starts_with(kRoot)) return fs::path("/data/sync") / path.lexically_relative(kRoot);
    return path;
  };
  auto r = bind_v(kMount + "/link", p);
  ASSERT_TRUE(r);
  EXPECT_NE(r->message.find("-v " + kMount + "/link"), std::string::npos) << r->message;
  EXPECT_TRUE(bind_v(kMount + "/gone", p)) << "a source the resolver cannot resolve";
  EXPECT_TRUE(mount_bind(kMount + "/link", p));
  EXPECT_TRUE(volume_bind(kMount + "/link", p));
  EXPECT_FALSE(bind_v(kMount + "/ok", p));

  // The resolver sees the path as dockerd will use it: cleaned.
  asked.clear();
  EXPECT_FALSE(bind_v(kMount + "/a/../ok/./x", p));
  ASSERT_FALSE(asked.empty());
  EXPECT_EQ(asked.front(), fs::path(kMount + "/ok/x"));

  // Sources outside the root lexically never get as far as the resolver.
  asked.clear();
  EXPECT_TRUE(bind_v("/etc", p));
  EXPECT_TRUE(asked.empty());
}

// --- allowances --------------------------------------------------------------------------------

TEST(ApiPolicyAllowances, PrivilegedLiftsItsRulesOnly) {
  ApiPolicy p = lexical_policy();
  p.allow.privileged = true;
  for (const json& hc : {json{{"Privileged", true}}, json{{"CapAdd", {"CAP_SYS_ADMIN", "ALL"}}},
                         json{{"SecurityOpt", {"seccomp=unconfined", "apparmor=unconfined"}}},
                         json{{"MaskedPaths", json::array()}, {"ReadonlyPaths", json::array()}},
                         json{{"Binds", {"/:/host"}}},
                         mounts({{{"Type", "bind"}, {"Source", "/etc"}, {"Target", "/e"}}})})
    EXPECT_FALSE(judge("POST", kCreate, cli_create(hc), p)) << hc.dump();
  EXPECT_FALSE(judge("POST", kExec, cli_exec(true), p));
  for (const json& hc : {json{{"PidMode", "host"}}, json{{"NetworkMode", "host"}},
                         json{{"Devices", json::parse(R"([{"PathOnHost":"/dev/sda"}])")}},
                         json{{"CgroupParent", "/"}}, json{{"Runtime", "runsc"}},
                         json{{"VolumeDriver", "convoy"}}, json{{"OomScoreAdj", -1000}}})
    EXPECT_TRUE(judge("POST", kCreate, cli_create(hc), p)) << hc.dump();
  EXPECT_TRUE(judge("POST", "/plugins/pull?remote=x", "", p));
  EXPECT_TRUE(judge("POST", "/swarm/init", "{}", p));
}

TEST(ApiPolicyAllowances, HostNamespacesLiftTheirRulesOnly) {
  ApiPolicy p = lexical_policy();
  p.allow.host_namespaces = true;
  for (const char* mode : {"PidMode", "IpcMode", "NetworkMode", "UTSMode", "UsernsMode",
                           "CgroupnsMode"})
    EXPECT_FALSE(judge("POST", kCreate, cli_create({{mode, "host"}}), p)) << mode;
  EXPECT_FALSE(judge("POST", cli_build("host"), "", p));
  EXPECT_TRUE(judge("POST", kCreate, cli_create({{"Privileged", true}}), p));
  EXPECT_TRUE(judge("POST", kCreate, cli_create({{"CapAdd", {"NET_ADMIN"}}}), p));
  EXPECT_TRUE(judge("POST", kNetwork, cli_network("host"), p));  // a network of the host's
  EXPECT_TRUE(judge("POST", cli_build("default", "x"), "", p));
}

TEST(ApiPolicyAllowances, DevicesLiftTheirRulesOnly) {
  ApiPolicy p = lexical_policy();
  p.allow.devices = true;
  for (const json& hc : {json{{"Devices", json::parse(R"([{"PathOnHost":"/dev/fuse"}])")}},
                         json{{"DeviceCgroupRules", {"c 10:229 rwm"}}},
                         json{{"DeviceRequests", json::parse(R"([{"Count":-1}])")}}})
    EXPECT_FALSE(judge("POST", kCreate, cli_create(hc), p)) << hc.dump();
  EXPECT_FALSE(judge("POST", kUpdate, R"({"Devices":[{"PathOnHost":"/dev/fuse"}]})", p));
  EXPECT_TRUE(judge("POST", kUpdate, R"({"CgroupParent":"/"})", p));
  EXPECT_TRUE(judge("POST", kCreate, cli_create({{"CapAdd", {"SYS_ADMIN"}}}), p));
  EXPECT_TRUE(judge("POST", kVolume, cli_volume("local", {{"type", "ext4"}, {"device", "/dev/sda1"}}), p));
}

TEST(ApiPolicyAllowances, CapabilitiesAreNamedOneByOne) {
  ApiPolicy p = lexical_policy();
  p.allow.capabilities = {"NET_ADMIN", "SYS_PTRACE"};
  for (const char* cap : {"NET_ADMIN", "CAP_NET_ADMIN", "net_admin", "Cap_Sys_Ptrace"})
    EXPECT_FALSE(judge("POST", kCreate, cli_create({{"CapAdd", {cap}}}), p)) << cap;
  for (const char* cap : {"SYS_ADMIN", "ALL", "NET_ADMIN_X"}) {
    auto r = judge("POST", kCreate, cli_create({{"CapAdd", {"NET_ADMIN", cap}}}), p);
    ASSERT_TRUE(r) << cap;
    EXPECT_NE(r->message.find("--cap-add"), std::string::npos);
  }
}

// With the session's mount registry, a bind source must be a whole mount: a path inside one can
// be swapped for a symlink between the check and dockerd's mount.
TEST(ApiPolicyBinds, OnlyWholeMountsWhenTheRegistryIsGiven) {
  ApiPolicy p = lexical_policy();
  std::vector<fs::path> asked;
  p.is_mount_source = [&](const fs::path& relative) {
    asked.push_back(relative);
    return relative == fs::path("0123456789abcdef") ||
           relative == fs::path("fedcba9876543210/app.yml");
  };
  EXPECT_FALSE(bind_v(kMount, p));
  EXPECT_FALSE(bind_v(kMount + "/", p));  // cleaned first
  EXPECT_FALSE(bind_v(kRoot + "/fedcba9876543210/app.yml", p));
  EXPECT_FALSE(mount_bind(kMount, p));
  EXPECT_FALSE(volume_bind(kMount, p));
  ASSERT_FALSE(asked.empty());
  EXPECT_EQ(asked.front(), fs::path("0123456789abcdef"));
  for (const std::string& source :
       {kMount + "/sub", kMount + "/sub/../other", kRoot + "/fedcba9876543210",
        kRoot + "/fedcba9876543210/other.yml", kRoot + "/1111111111111111"}) {
    auto r = bind_v(source, p);
    ASSERT_TRUE(r) << source;
    EXPECT_EQ(r->status, 403);
    EXPECT_NE(r->message.find("not a path inside one"), std::string::npos) << r->message;
    EXPECT_TRUE(mount_bind(source, p)) << source;
    EXPECT_TRUE(volume_bind(source, p)) << source;
  }
  // Outside the sync root the old answer stands, whatever the registry says.
  auto outside = bind_v("/etc", p);
  ASSERT_TRUE(outside);
  EXPECT_NE(outside->message.find("not paths of the runner host"), std::string::npos);
}

// `docker offload start --gpu`: the session's --gpus requests reach dockerd's nvidia driver,
// and only it; a session without the GPUs is told how to get one.
TEST(ApiPolicyAllowances, GpuSessionsMayAskForNvidiaGpusOnly) {
  auto gpus = [](const std::string& requests) {
    return cli_create({{"DeviceRequests", json::parse(requests)}});
  };
  // What the docker CLI 28 sends for --gpus all, --gpus 2, --gpus '"device=0,1"' and
  // --gpus 'all,capabilities=utility'.
  const std::vector<std::string> cli_requests = {
      R"([{"Driver":"","Count":-1,"DeviceIDs":null,"Capabilities":[["gpu"]],"Options":{}}])",
      R"([{"Driver":"","Count":2,"DeviceIDs":null,"Capabilities":[["gpu"]],"Options":{}}])",
      R"([{"Driver":"","Count":0,"DeviceIDs":["0","1"],"Capabilities":[["gpu"]],"Options":{}}])",
      R"([{"Driver":"","Count":-1,"DeviceIDs":null,"Capabilities":[["gpu","utility"]],"Options":null}])",
      R"([{"Driver":"nvidia","Count":-1}])",
  };
  ApiPolicy plain = lexical_policy();
  for (const auto& r : cli_requests) {
    auto refusal = judge("POST", kCreate, gpus(r), plain);
    ASSERT_TRUE(refusal) << r;
    EXPECT_NE(refusal->message.find("--gpus (HostConfig.DeviceRequests): this session has no GPU "
                                    "(start one with `docker offload start --gpu`"),
              std::string::npos)
        << refusal->message;
  }
  ApiPolicy gpu = lexical_policy();
  gpu.allow.gpu = true;
  for (const auto& r : cli_requests) EXPECT_FALSE(judge("POST", kCreate, gpus(r), gpu)) << r;
  EXPECT_FALSE(judge("POST", kUpdate, R"({"DeviceRequests":[{"Count":-1,"Capabilities":[["gpu"]]}]})", gpu));
  EXPECT_FALSE(judge("POST", kCreate, cli_create({{"Runtime", "nvidia"}}), gpu));
  EXPECT_TRUE(judge("POST", kCreate, cli_create({{"Runtime", "nvidia"}}), plain));

  // Anything else a device request could reach stays refused.
  for (const char* r : {
           R"([{"Driver":"cdi","DeviceIDs":["vendor.com/device=all"]}])",
           R"([{"Driver":"","Count":-1,"Capabilities":[["cdi"]]}])",
           R"([{"Count":-1,"Capabilities":[["gpu"],["fpga"]]}])",
           R"([{"Count":-1,"Capabilities":[["gpu"]],"Options":{"mode":"x"}}])",
           R"([{"Count":-1,"Capabilities":"gpu"}])",
           R"([{"Count":-1,"Driver":7}])",
           R"(["all"])",
       }) {
    auto refusal = judge("POST", kCreate, gpus(r), gpu);
    ASSERT_TRUE(refusal) << r;
    EXPECT_NE(refusal->message.find("this offload runner does not allow --gpus with "),
              std::string::npos)
        << refusal->message;
  }
  // Devices and other runtimes are not part of a GPU session.
  EXPECT_TRUE(judge("POST", kCreate,
                    cli_create({{"Devices", json::parse(R"([{"PathOnHost":"/dev/nvidia0"}])")}}),
                    gpu));
  EXPECT_TRUE(judge("POST", kCreate, cli_create({{"Runtime", "runsc"}}), gpu));
}

}  // namespace
}  // namespace offload::runner
