// The runner's Docker API policy, read as dockerd reads requests: what it refuses (with the
// option named), the spellings a hostile client would try instead, and what it must let through.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "offload/runner/api_policy.h"
#include "temp_dir.h"

namespace offload::runner {
namespace {

namespace fs = std::filesystem;

ApiPolicy policy_with_root(const fs::path& root) {
  ApiPolicy p;
  p.sync_root = root;
  // Lexical: these tests are about the rules; the symlink test below uses the real resolver.
  p.resolve = [](const fs::path& path) -> std::optional<fs::path> { return path; };
  return p;
}

const fs::path kRoot = "/var/lib/offload-runner/sessions/abc/sync";

std::optional<ApiRefusal> judge(const std::string& method, const std::string& target,
                                const std::string& body, const ApiPolicy& p) {
  return judge_request(api_route(method, target), body, p);
}

std::optional<ApiRefusal> create(const std::string& body) {
  return judge("POST", "/v1.41/containers/create?name=x", body, policy_with_root(kRoot));
}

struct Refused {
  const char* what;
  const char* body;
  const char* names;  // the option the message must name
};

TEST(ApiPolicy, RefusesWhatReachesBeyondTheSession) {
  const Refused cases[] = {
      {"privileged", R"({"Image":"busybox","HostConfig":{"Privileged":true}})", "--privileged"},
      {"pid host", R"({"HostConfig":{"PidMode":"host"}})", "--pid=host"},
      {"ipc host", R"({"HostConfig":{"IpcMode":"host"}})", "--ipc=host"},
      {"network host", R"({"HostConfig":{"NetworkMode":"host"}})", "--network=host"},
      {"uts host", R"({"HostConfig":{"UTSMode":"host"}})", "--uts=host"},
      {"userns host", R"({"HostConfig":{"UsernsMode":"host"}})", "--userns=host"},
      {"cgroupns host", R"({"HostConfig":{"CgroupnsMode":"host"}})", "--cgroupns=host"},
      {"device", R"({"HostConfig":{"Devices":[{"PathOnHost":"/dev/sda","PathInContainer":"/dev/sda","CgroupPermissions":"rwm"}]}})", "--device"},
      {"device rule", R"({"HostConfig":{"DeviceCgroupRules":["b 8:* rmw"]}})", "--device"},
      {"gpus", R"({"HostConfig":{"DeviceRequests":[{"Count":-1,"Capabilities":[["gpu"]]}]}})", "--gpus"},
      {"cap sys_admin", R"({"HostConfig":{"CapAdd":["SYS_ADMIN"]}})", "SYS_ADMIN"},
      {"cap prefixed", R"({"HostConfig":{"CapAdd":["CAP_SYS_MODULE"]}})", "SYS_MODULE"},
      {"cap lower", R"({"HostConfig":{"CapAdd":["net_admin"]}})", "NET_ADMIN"},
      {"cap all", R"({"HostConfig":{"CapAdd":["ALL"]}})", "ALL"},
      {"capabilities", R"({"HostConfig":{"Capabilities":["CAP_BPF"]}})", "BPF"},
      {"seccomp", R"({"HostConfig":{"SecurityOpt":["seccomp=unconfined"]}})", "seccomp=unconfined"},
      {"apparmor", R"({"HostConfig":{"SecurityOpt":["apparmor:unconfined"]}})", "apparmor"},
      {"systempaths", R"({"HostConfig":{"MaskedPaths":[],"ReadonlyPaths":[]}})", "systempaths=unconfined"},
      {"runtime", R"({"HostConfig":{"Runtime":"runsc-host"}})", "--runtime"},
      {"cgroup parent", R"({"HostConfig":{"CgroupParent":"/"}})", "--cgroup-parent"},
      {"oom adj", R"({"HostConfig":{"OomScoreAdj":-1000}})", "--oom-score-adj"},
      {"root bind", R"({"HostConfig":{"Binds":["/:/host"]}})", "-v /"},
      {"state dir bind", R"({"HostConfig":{"Binds":["/var/lib/offload-runner:/x:ro"]}})", "-v /var/lib/offload-runner"},
      {"escaping bind", R"({"HostConfig":{"Binds":["/var/lib/offload-runner/sessions/abc/sync/../../def/sync:/x"]}})", "-v "},
      {"sibling prefix", R"({"HostConfig":{"Binds":["/var/lib/offload-runner/sessions/abc/sync2:/x"]}})", "-v "},
      {"root itself", R"({"HostConfig":{"Binds":["/var/lib/offload-runner/sessions/abc/sync:/x"]}})", "-v "},
      {"mount bind", R"({"HostConfig":{"Mounts":[{"Type":"bind","Source":"/etc","Target":"/e"}]}})", "--mount source=/etc"},
      {"mount volume bind opts", R"({"HostConfig":{"Mounts":[{"Type":"volume","Target":"/e","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"none","o":"bind","device":"/etc"}}}}]}})", "/etc"},
      {"mount volume device", R"({"HostConfig":{"Mounts":[{"Type":"volume","Target":"/d","VolumeOptions":{"DriverConfig":{"Options":{"type":"ext4","device":"/dev/sda1"}}}}]}})", "type=ext4"},
      {"mount volume driver", R"({"HostConfig":{"Mounts":[{"Type":"volume","Target":"/d","VolumeOptions":{"DriverConfig":{"Name":"sshfs"}}}]}})", "volume driver sshfs"},
      {"mount npipe", R"({"HostConfig":{"Mounts":[{"Type":"npipe","Source":"x","Target":"/d"}]}})", "--mount type=npipe"},
      {"volume driver", R"({"HostConfig":{"VolumeDriver":"convoy"}})", "--volume-driver"},
  };
  for (const auto& c : cases) {
    auto r = create(c.body);
    ASSERT_TRUE(r.has_value()) << c.what;
    EXPECT_EQ(r->status, 403) << c.what;
    EXPECT_NE(r->message.find(c.names), std::string::npos) << c.what << ": " << r->message;
  }
}

TEST(ApiPolicy, SpellingsDockerdAcceptsAreJudgedTheSame) {
  const char* privileged = R"({"HostConfig":{"Privileged":true}})";
  for (const char* target :
       {"/containers/create", "/v1.41/containers/create", "/v1.24/containers/create?name=a",
        "/containers/create/", "//containers//create", "/containers/./create",
        "/x/../containers/create", "/containers%2Fcreate", "/%63ontainers/create",
        "http://docker/v1.43/containers/create", "/v1.41/containers%2fcreate"}) {
    auto r = judge("POST", target, privileged, policy_with_root(kRoot));
    EXPECT_TRUE(r.has_value()) << target;
  }
  EXPECT_TRUE(judge("post", "/containers/create", privileged, policy_with_root(kRoot)));
  // Go's encoding/json: keys match case-insensitively, with the non-ASCII letters that fold.
  for (const char* body : {R"({"hostconfig":{"privileged":true}})",
                           R"({"HOSTCONFIG":{"PRIVILEGED":true}})",
                           "{\"Ho\xC5\xBFtConfig\":{\"Privileged\":true}}",
                           R"({"HostConfig":{"Privileged":false,"privileged":true}})",
                           R"({"HostConfig":{"\u0050rivileged":true}})",
                           R"({"HostConfig":{"Binds":["/\u0065tc:/x"]}})"}) {
    EXPECT_TRUE(create(body).has_value()) << body;
  }
  EXPECT_EQ(fold_json_key("\xE2\x84\xAA"), "k");
  EXPECT_EQ(fold_json_key("Ho\xC5\xBFtConfig"), "hostconfig");
}

TEST(ApiPolicy, BodiesItCannotReadAreRefusedNotPassedOn) {
  for (const char* body : {"{not json", "{\"HostConfig\":{}} trailing", "[1,2]", "\"x\"",
                           "{\"Image\":\"\xff\xfe\"}"}) {
    auto r = create(body);
    ASSERT_TRUE(r.has_value()) << body;
    EXPECT_EQ(r->status, 400) << body;
  }
  EXPECT_FALSE(create("").has_value());  // dockerd answers an empty body itself
  EXPECT_FALSE(create("null").has_value());
}

TEST(ApiPolicy, WhatASessionNeedsStaysAllowed) {
  for (const char* body : {
           R"({"Image":"busybox","Cmd":["echo","hi"],"HostConfig":{"NetworkMode":"default","AutoRemove":true}})",
           R"({"HostConfig":{"Binds":["/var/lib/offload-runner/sessions/abc/sync/0123456789abcdef:/src:ro","cache:/cache"]}})",
           R"({"HostConfig":{"Mounts":[{"Type":"bind","Source":"/var/lib/offload-runner/sessions/abc/sync/0123456789abcdef/sub","Target":"/s"},{"Type":"tmpfs","Target":"/t"},{"Type":"volume","Source":"data","Target":"/d"}]}})",
           R"({"HostConfig":{"Mounts":[{"Type":"volume","Target":"/t","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"tmpfs","device":"tmpfs","o":"size=100m"}}}}]}})",
           R"({"HostConfig":{"CapAdd":["NET_BIND_SERVICE","CAP_SYS_NICE"],"CapDrop":["ALL"]}})",
           R"({"HostConfig":{"SecurityOpt":["no-new-privileges","no-new-privileges:true"]}})",
           R"({"HostConfig":{"PidMode":"container:abc","IpcMode":"shareable","NetworkMode":"mynet","Runtime":"runc"}})",
           R"({"HostConfig":{"OomScoreAdj":500,"Devices":[],"MaskedPaths":null}})",
       }) {
    auto r = create(body);
    EXPECT_FALSE(r.has_value()) << body << ": " << (r ? r->message : "");
  }
  auto p = policy_with_root(kRoot);
  for (const char* target : {"/containers/json?all=1", "/_ping", "/containers/abc/attach",
                             "/exec/abc/start", "/containers/abc/start", "/images/load",
                             "/session", "/grpc"})
    EXPECT_FALSE(judge("POST", target, "{}", p).has_value()) << target;
  EXPECT_EQ(judged(api_route("GET", "/containers/json")), Judged::no);
}

TEST(ApiPolicy, OtherJudgedRoutes) {
  auto p = policy_with_root(kRoot);
  EXPECT_TRUE(judge("POST", "/containers/abc/exec", R"({"Cmd":["sh"],"Privileged":true})", p));
  EXPECT_FALSE(judge("POST", "/containers/abc/exec", R"({"Cmd":["sh"],"User":"root"})", p));
  EXPECT_TRUE(judge("POST", "/v1.41/containers/a/b/exec", R"({"privileged":true})", p));
  EXPECT_TRUE(judge("POST", "/containers/abc/update", R"({"Devices":[{"PathOnHost":"/dev/mem"}]})", p));
  EXPECT_TRUE(judge("POST", "/containers/abc/update", R"({"CgroupParent":"/x"})", p));
  EXPECT_FALSE(judge("POST", "/containers/abc/update", R"({"Memory":1048576})", p));
  auto vol = judge("POST", "/volumes/create",
                   R"({"Name":"v","DriverOpts":{"type":"none","o":"bind","device":"/etc"}})", p);
  ASSERT_TRUE(vol);
  EXPECT_NE(vol->message.find("/etc"), std::string::npos);
  EXPECT_FALSE(judge("POST", "/volumes/create", R"({"Name":"v"})", p));
  EXPECT_TRUE(judge("POST", "/volumes/create", R"({"Name":"v","Driver":"nfs-plugin"})", p));
  EXPECT_TRUE(judge("POST", "/networks/create", R"({"Name":"n","Driver":"macvlan"})", p));
  EXPECT_FALSE(judge("POST", "/networks/create", R"({"Name":"n","Driver":"bridge"})", p));
  EXPECT_TRUE(judge("POST", "/build?t=x&networkmode=host", "", p));
  EXPECT_TRUE(judge("POST", "/build?networkmode=%68ost", "", p));
  EXPECT_TRUE(judge("POST", "/build?cgroupparent=/", "", p));
  EXPECT_FALSE(judge("POST", "/build?t=x&networkmode=default", "", p));
  EXPECT_TRUE(judge("POST", "/plugins/pull?remote=x", "", p));
  EXPECT_TRUE(judge("POST", "/plugins/x/enable", "", p));
  EXPECT_TRUE(judge("POST", "/swarm/init", "{}", p));
}

TEST(ApiPolicy, BindSourcesAreResolvedThroughSymlinksOnTheRunner) {
  offload::test::TempDir dir;
  const fs::path root = dir.path() / "sync";
  fs::create_directories(root / "m");
  fs::create_directory_symlink("/", root / "m" / "escape");
  fs::create_directories(root / "m" / "inside");
  fs::create_directory_symlink(root / "m" / "inside", root / "m" / "alias");
  ApiPolicy p;
  p.sync_root = root;  // the default resolver: the file system as it is
  auto bind = [&](const fs::path& source) {
    return judge("POST", "/containers/create",
                 R"({"HostConfig":{"Binds":[")" + source.string() + R"(:/x"]}})", p);
  };
  EXPECT_TRUE(bind(root / "m" / "escape")) << "a symlink out of the sync root";
  EXPECT_TRUE(bind(root / "m" / "escape" / "etc"));
  EXPECT_FALSE(bind(root / "m" / "inside"));
  EXPECT_FALSE(bind(root / "m" / "alias"));
  EXPECT_FALSE(bind(root / "m" / "not-yet"));  // dockerd creates it inside the root
}

TEST(ApiPolicy, AllowancesLiftTheirRulesOnly) {
  auto p = policy_with_root(kRoot);
  p.allow.host_namespaces = true;
  p.allow.capabilities = {"NET_ADMIN"};
  EXPECT_FALSE(judge("POST", "/containers/create", R"({"HostConfig":{"NetworkMode":"host"}})", p));
  EXPECT_FALSE(judge("POST", "/containers/create", R"({"HostConfig":{"CapAdd":["NET_ADMIN"]}})", p));
  EXPECT_TRUE(judge("POST", "/containers/create", R"({"HostConfig":{"CapAdd":["SYS_ADMIN"]}})", p));
  EXPECT_TRUE(judge("POST", "/containers/create", R"({"HostConfig":{"Privileged":true}})", p));
  p.allow.devices = true;
  EXPECT_FALSE(judge("POST", "/containers/create", R"({"HostConfig":{"DeviceRequests":[{"Count":1}]}})", p));
}

}  // namespace
}  // namespace offload::runner
