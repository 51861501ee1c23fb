// find_bind_mounts / replace_bind_sources over every Binds syntax Docker accepts on Linux, the
// Mounts form, named volumes that must be left alone, and the malformed entries it refuses.
#include <gtest/gtest.h>

#include <stdexcept>

#include "offload/daemon/bind_rewrite.h"

using namespace offload::daemon;
using nlohmann::json;

namespace {

json with_binds(json binds) { return json{{"Image", "alpine"}, {"HostConfig", {{"Binds", binds}}}}; }

std::vector<BindMount> find_binds(json binds) { return find_bind_mounts(with_binds(std::move(binds))); }

std::string thrown_by(const json& body) {
  try {
    find_bind_mounts(body);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "nothing thrown";
}

TEST(FindBindMounts, NoHostConfigOrNoMountsMeansNone) {
  EXPECT_TRUE(find_bind_mounts(json{{"Image", "alpine"}}).empty());
  EXPECT_TRUE(find_bind_mounts(json{{"HostConfig", nullptr}}).empty());
  EXPECT_TRUE(find_bind_mounts(json{{"HostConfig", {{"Binds", nullptr}, {"Mounts", nullptr}}}}).empty());
  EXPECT_TRUE(find_binds(json::array()).empty());
}

TEST(FindBindMounts, SourceAndTarget) {
  auto found = find_binds({"/home/me/src:/src"});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].source, "/home/me/src");
  EXPECT_FALSE(found[0].from_mounts);
  EXPECT_FALSE(found[0].read_only);
}

TEST(FindBindMounts, ModesDecideReadOnly) {
  struct Case {
    std::string mode;
    bool read_only;
  };
  for (const auto& c : std::vector<Case>{{"ro", true},
                                         {"rw", false},
                                         {"z", false},
                                         {"Z", false},
                                         {"rw,z", false},
                                         {"ro,rslave", true},
                                         {"rslave,ro", true},
                                         {"nocopy", false},
                                         {"ro,Z,rprivate,nocopy,cached", true},
                                         {"delegated", false}}) {
    auto found = find_binds({"/data:/mnt:" + c.mode});
    ASSERT_EQ(found.size(), 1u) << c.mode;
    EXPECT_EQ(found[0].source, "/data") << c.mode;
    EXPECT_EQ(found[0].read_only, c.read_only) << c.mode;
  }
}

TEST(FindBindMounts, NamedAndAnonymousVolumesAreNotBindMounts) {
  auto found = find_binds({"cache:/root/.cache", "cache:/x:ro", "/anonymous", "/real:/real:ro"});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].source, "/real");
  EXPECT_TRUE(found[0].read_only);
}

TEST(FindBindMounts, MalformedBindsAreRefusedWithTheEntryNamed) {
  for (std::string bad : {"", ":/dst", "/src:", "/src:/dst:ro:extra", "/src::ro", "/dst:rw",
                          "/dst:ro"}) {
    auto what = thrown_by(with_binds({bad}));
    EXPECT_NE(what.find("invalid volume specification: '" + bad + "'"), std::string::npos)
        << bad << ": " << what;
  }
  for (std::string bad : {"/src:/dst:bogus", "/src:/dst:ro,rw", "/src:/dst:z,Z", "/src:/dst:ro,",
                          "/src:/dst:shared,slave"}) {
    auto what = thrown_by(with_binds({bad}));
    EXPECT_NE(what.find("invalid mode"), std::string::npos) << bad << ": " << what;
    EXPECT_NE(what.find(bad), std::string::npos) << bad << ": " << what;
  }
  EXPECT_NE(thrown_by(with_binds({42})).find("42"), std::string::npos);
  EXPECT_NE(thrown_by(with_binds("/a:/b")).find("HostConfig.Binds"), std::string::npos);
  EXPECT_NE(thrown_by(json{{"HostConfig", 1}}).find("HostConfig"), std::string::npos);
  EXPECT_NE(thrown_by(json::array()).find("object"), std::string::npos);
}

TEST(FindBindMounts, MountsOfTypeBindOnly) {
  json body = {{"HostConfig",
                {{"Mounts",
                  {{{"Type", "volume"}, {"Source", "cache"}, {"Target", "/c"}},
                   {{"Type", "bind"}, {"Source", "/work"}, {"Target", "/w"}},
                   {{"Type", "tmpfs"}, {"Target", "/tmp"}},
                   {{"Type", "bind"}, {"Source", "/etc/ssl"}, {"Target", "/ssl"}, {"ReadOnly", true}},
                   {{"Type", "bind"}, {"Source", "/x"}, {"Target", "/x"}, {"ReadOnly", false}}}}}}};
  auto found = find_bind_mounts(body);
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].source, "/work");
  EXPECT_TRUE(found[0].from_mounts);
  EXPECT_FALSE(found[0].read_only);
  EXPECT_EQ(found[1].source, "/etc/ssl");
  EXPECT_TRUE(found[1].read_only);
  EXPECT_EQ(found[2].source, "/x");
  EXPECT_FALSE(found[2].read_only);
}

TEST(FindBindMounts, BindsComeBeforeMountsAndRepeatsAreKept) {
  json body = {{"HostConfig",
                {{"Mounts", {{{"Type", "bind"}, {"Source", "/m"}, {"Target", "/m"}}}},
                 {"Binds", {"/b:/b", "/b:/b2:ro"}}}}};
  auto found = find_bind_mounts(body);
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].source, "/b");
  EXPECT_FALSE(found[0].read_only);
  EXPECT_EQ(found[1].source, "/b");
  EXPECT_TRUE(found[1].read_only);
  EXPECT_EQ(found[2].source, "/m");
  EXPECT_TRUE(found[2].from_mounts);
}

TEST(FindBindMounts, BindMountsWithoutAnAbsoluteSourceAreRefused) {
  auto mounts = [](json m) { return json{{"HostConfig", {{"Mounts", json::array({m})}}}}; };
  EXPECT_NE(thrown_by(mounts({{"Type", "bind"}, {"Target", "/t"}})).find("Source must not be empty"),
            std::string::npos);
  EXPECT_NE(thrown_by(mounts({{"Type", "bind"}, {"Source", ""}, {"Target", "/t"}}))
                .find("Source must not be empty"),
            std::string::npos);
  EXPECT_NE(thrown_by(mounts({{"Type", "bind"}, {"Source", "rel"}, {"Target", "/t"}}))
                .find("'rel' mount path must be absolute"),
            std::string::npos);
  EXPECT_NE(thrown_by(mounts({{"Type", "bind"}, {"Source", "/s"}, {"ReadOnly", "yes"}}))
                .find("ReadOnly"),
            std::string::npos);
  EXPECT_NE(thrown_by(json{{"HostConfig", {{"Mounts", {"/a:/b"}}}}}).find("objects"),
            std::string::npos);
}

TEST(ReplaceBindSources, KeepsTargetsModesAndEverythingElse) {
  json body = {{"Image", "alpine"},
               {"Cmd", {"ls", "/src"}},
               {"HostConfig",
                {{"Binds", {"/home/me/src:/src", "cache:/cache", "/etc/x:/x:ro,rslave", "/keep:/k"}},
                 {"Mounts",
                  {{{"Type", "bind"}, {"Source", "/home/me/out"}, {"Target", "/out"},
                    {"BindOptions", {{"Propagation", "rprivate"}}}},
                   {{"Type", "volume"}, {"Source", "/home/me/src"}, {"Target", "/v"}}}},
                 {"Memory", 0}}}};
  json expected = body;
  expected["HostConfig"]["Binds"] = {"/runner/s1:/src", "cache:/cache", "/runner/s2:/x:ro,rslave",
                                     "/keep:/k"};
  expected["HostConfig"]["Mounts"][0]["Source"] = "/runner/s3";
  replace_bind_sources(body, {{"/home/me/src", "/runner/s1"},
                              {"/etc/x", "/runner/s2"},
                              {"/home/me/out", "/runner/s3"},
                              {"/not/used", "/runner/s4"}});
  EXPECT_EQ(body, expected) << body.dump(2);
  // The dump is what goes to the engine: same keys, same order.
  EXPECT_EQ(body.dump(), expected.dump());
}

TEST(ReplaceBindSources, EmptyMapChangesNothing) {
  json body = with_binds({"/a:/b:ro", "v:/c"});
  json before = body;
  replace_bind_sources(body, {});
  EXPECT_EQ(body, before);
}

TEST(ReplaceBindSources, RefusesWhatFindRefusesAndUnwritableReplacements) {
  json bad = with_binds({"/a:/b:ro:x"});
  EXPECT_THROW(replace_bind_sources(bad, {{"/a", "/r"}}), std::invalid_argument);
  json body = with_binds({"/a:/b"});
  EXPECT_THROW(replace_bind_sources(body, {{"/a", "/r:x"}}), std::invalid_argument);
}

}  // namespace
