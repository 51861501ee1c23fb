#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/token.h"
#include "offload/dockerctx/context_store.h"

using namespace offload;
namespace fs = std::filesystem;

namespace {

class ContextStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("offload-ctx-" + random_hex(6));
    dir_ = root_ / "docker";
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string read(const fs::path& p) const {
    std::string s;
    EXPECT_FALSE(read_file(p, s)) << p;
    return s;
  }
  void write(const fs::path& p, std::string_view data, fs::perms mode = fs::perms(0600)) {
    fs::create_directories(p.parent_path());
    ASSERT_FALSE(write_file_atomic(p, data, mode));
  }
  static unsigned mode_of(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
  }
  static ino_t inode_of(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_ino;
  }
  fs::path config() const { return dir_ / "config.json"; }

  fs::path root_;
  fs::path dir_;
};

// A config.json as the docker CLI writes it: tab-indented, no trailing newline.
const std::string kUserConfig =
    "{\n"
    "\t\"auths\": {\n"
    "\t\t\"https://index.docker.io/v1/\": {\n"
    "\t\t\t\"auth\": \"dXNlcjpwYXNz\"\n"
    "\t\t}\n"
    "\t},\n"
    "\t\"credsStore\": \"desktop\",\n"
    "\t\"zzz\": [\n"
    "\t\t1,\n"
    "\t\t2.5,\n"
    "\t\ttrue,\n"
    "\t\tnull\n"
    "\t],\n"
    "\t\"currentContext\": \"desktop-linux\",\n"
    "\t\"plugins\": {\n"
    "\t\t\"offload\": {\n"
    "\t\t\t\"hooks\": \"run,build\"\n"
    "\t\t}\n"
    "\t},\n"
    "\t\"aliases\": {\n"
    "\t\t\"builder\": \"buildx\"\n"
    "\t}\n"
    "}";

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (auto p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

}  // namespace

TEST(ParseCurrentContext, Values) {
  EXPECT_EQ(parse_current_context("{}", "c"), "default");
  EXPECT_EQ(parse_current_context("", "c"), "default");
  EXPECT_EQ(parse_current_context(" \n\t", "c"), "default");
  EXPECT_EQ(parse_current_context("null", "c"), "default");
  EXPECT_EQ(parse_current_context(R"({"currentContext": ""})", "c"), "default");
  EXPECT_EQ(parse_current_context(R"({"currentContext": "x1"})", "c"), "x1");
  // Go's encoding/json matches field names case-insensitively; the last match wins.
  EXPECT_EQ(parse_current_context(R"({"CurrentContext": "a1"})", "c"), "a1");
  EXPECT_EQ(parse_current_context(R"({"currentContext": "a1", "CURRENTCONTEXT": "b2"})", "c"),
            "b2");
}

TEST(ParseCurrentContext, Errors) {
  auto error_of = [](std::string_view json) -> std::string {
    try {
      parse_current_context(json, "~/.docker/config.json");
    } catch (const ContextError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error_of("{\n\t\"auths\": {},\n\t\"x\" 1\n}"),
            "~/.docker/config.json is not valid JSON (line 3, column 6): fix or move it; "
            "docker-offload left it untouched");
  EXPECT_EQ(error_of("[]"),
            "~/.docker/config.json is not a JSON object (it holds an array): fix or move it; "
            "docker-offload left it untouched");
  EXPECT_EQ(error_of(R"({"currentContext": 3})"),
            "~/.docker/config.json: \"currentContext\" is a number, not a string: fix it; "
            "docker-offload left it untouched");
  EXPECT_NE(error_of(R"({"currentcontext": {}})").find("\"currentcontext\" is an object"),
            std::string::npos);
  EXPECT_NE(error_of("{} x").find("not valid JSON (line 1, column 4)"), std::string::npos);
  EXPECT_NE(error_of("{\"a\": \"\xff\"}").find("not valid JSON"), std::string::npos);
}

TEST(IsValidContextName, FollowsDockerCli) {
  for (const char* ok : {"docker-offload", "ab", "a.b+c_d-e", "0x"})
    EXPECT_TRUE(is_valid_context_name(ok)) << ok;
  for (const char* bad : {"", "a", "-ab", "a/b", "a b", "../x", ".x", "ab\n"})
    EXPECT_FALSE(is_valid_context_name(bad)) << bad;
}

TEST_F(ContextStoreTest, AbsentConfigIsDefault) {
  ContextStore store(dir_);
  EXPECT_EQ(store.config_file(), dir_ / "config.json");
  EXPECT_EQ(store.current_context(), "default");
  EXPECT_FALSE(fs::exists(config()));
}

TEST_F(ContextStoreTest, UseCreatesConfigAndDirWhenAbsent) {
  auto dir = root_ / "fresh" / ".docker";
  ContextStore store(dir);
  EXPECT_EQ(store.use_context("docker-offload"), "default");
  EXPECT_EQ(read(dir / "config.json"), "{\n\t\"currentContext\": \"docker-offload\"\n}");
  EXPECT_EQ(mode_of(dir / "config.json"), 0600u);
  EXPECT_EQ(mode_of(dir), 0700u);
  EXPECT_EQ(store.current_context(), "docker-offload");
}

TEST_F(ContextStoreTest, UseDefaultOnAbsentConfigWritesNothing) {
  ContextStore store(dir_);
  EXPECT_EQ(store.use_context("default"), "default");
  EXPECT_FALSE(fs::exists(config()));
}

TEST_F(ContextStoreTest, SwitchAndRestoreKeepsEverythingElse) {
  write(config(), kUserConfig);
  ContextStore store(dir_);
  EXPECT_EQ(store.current_context(), "desktop-linux");
  EXPECT_EQ(store.use_context("docker-offload"), "desktop-linux");
  // Only the value changed: same keys, same order, same values, same format.
  EXPECT_EQ(read(config()),
            replace_all(kUserConfig, "\"desktop-linux\"", "\"docker-offload\""));
  EXPECT_EQ(store.current_context(), "docker-offload");
  EXPECT_EQ(store.use_context("desktop-linux"), "docker-offload");
  EXPECT_EQ(read(config()), kUserConfig);
}

TEST_F(ContextStoreTest, SwitchFromAbsentKeyAndBackIsByteIdentical) {
  auto original = replace_all(kUserConfig, "\t\"currentContext\": \"desktop-linux\",\n", "");
  write(config(), original);
  ContextStore store(dir_);
  EXPECT_EQ(store.use_context("docker-offload"), "default");
  auto switched = read(config());
  EXPECT_NE(switched.find("\"credsStore\": \"desktop\""), std::string::npos);
  EXPECT_TRUE(switched.ends_with("\t},\n\t\"currentContext\": \"docker-offload\"\n}"))
      << switched;
  EXPECT_EQ(store.use_context("default"), "docker-offload");
  EXPECT_EQ(read(config()), original);
}

TEST_F(ContextStoreTest, NoWriteWhenNothingChanges) {
  // Not the docker CLI's format: a needless rewrite would be visible.
  const std::string mine = "{ \"currentContext\" : \"docker-offload\",  \"auths\":{} }\n";
  write(config(), mine);
  auto inode = inode_of(config());
  ContextStore store(dir_);
  EXPECT_EQ(store.use_context("docker-offload"), "docker-offload");
  EXPECT_EQ(read(config()), mine);
  EXPECT_EQ(inode_of(config()), inode);

  const std::string empty_key = "{\"currentContext\": \"\"}";
  write(config(), empty_key);
  inode = inode_of(config());
  EXPECT_EQ(store.use_context("default"), "default");
  EXPECT_EQ(read(config()), empty_key);
  EXPECT_EQ(inode_of(config()), inode);
}

TEST_F(ContextStoreTest, KeepsFileMode) {
  write(config(), "{}", fs::perms(0640));
  ContextStore store(dir_);
  store.use_context("docker-offload");
  EXPECT_EQ(mode_of(config()), 0640u);
  store.use_context("default");
  EXPECT_EQ(mode_of(config()), 0640u);
  EXPECT_EQ(read(config()), "{}");
}

TEST_F(ContextStoreTest, CaseVariantKeysAreReplaced) {
  write(config(), "{\"CurrentContext\": \"old\", \"auths\": {}}");
  ContextStore store(dir_);
  EXPECT_EQ(store.use_context("docker-offload"), "old");
  EXPECT_EQ(read(config()), "{\n\t\"auths\": {},\n\t\"currentContext\": \"docker-offload\"\n}");
}

TEST_F(ContextStoreTest, EmptyConfigFileIsTreatedAsNoSettings) {
  write(config(), "");
  ContextStore store(dir_);
  EXPECT_EQ(store.current_context(), "default");
  EXPECT_EQ(store.use_context("docker-offload"), "default");
  EXPECT_EQ(read(config()), "{\n\t\"currentContext\": \"docker-offload\"\n}");
}

TEST_F(ContextStoreTest, CorruptConfigIsLeftByteIdentical) {
  const std::string corrupt = "{\n\t\"auths\": {},\n\t\"currentContext\": \"desktop-linux\"\n";
  write(config(), corrupt, fs::perms(0644));
  auto inode = inode_of(config());
  ContextStore store(dir_);
  const std::string expected = display_path(config()) +
                               " is not valid JSON (line 4, column 1): fix or move it; "
                               "docker-offload left it untouched";
  try {
    store.current_context();
    FAIL() << "no error";
  } catch (const ContextError& e) {
    EXPECT_EQ(std::string(e.what()), expected);
  }
  try {
    store.use_context("docker-offload");
    FAIL() << "no error";
  } catch (const ContextError& e) {
    EXPECT_EQ(std::string(e.what()), expected);
  }
  EXPECT_EQ(read(config()), corrupt);
  EXPECT_EQ(inode_of(config()), inode);
  EXPECT_EQ(mode_of(config()), 0644u);
  // No temporary file left next to it.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(ContextStoreTest, WrongShapesAreLeftUntouched) {
  ContextStore store(dir_);
  for (const std::string bad : {"[\"currentContext\"]", "{\"currentContext\": false}", "42"}) {
    write(config(), bad);
    EXPECT_THROW(store.use_context("docker-offload"), ContextError) << bad;
    EXPECT_EQ(read(config()), bad);
  }
}

TEST_F(ContextStoreTest, UnrepresentableNumberIsLeftUntouched) {
  // Found by the fuzzer. Rewriting would turn 1e999 into something else: refuse instead.
  const std::string huge = "{\"x\": 1e999, \"currentContext\": \"a1\"}";
  write(config(), huge);
  ContextStore store(dir_);
  try {
    store.use_context("docker-offload");
    FAIL() << "no error";
  } catch (const ContextError& e) {
    EXPECT_EQ(std::string(e.what()), display_path(config()) +
                                         " holds a number too large to keep exactly: fix or move "
                                         "it; docker-offload left it untouched");
  }
  EXPECT_EQ(read(config()), huge);
}

TEST_F(ContextStoreTest, UnreadableConfigThrows) {
  fs::create_directories(config());  // a directory: read fails with EISDIR
  ContextStore store(dir_);
  EXPECT_THROW(store.current_context(), ContextError);
  EXPECT_THROW(store.use_context("docker-offload"), ContextError);
  EXPECT_TRUE(fs::is_directory(config()));
}

TEST_F(ContextStoreTest, SymlinkedConfigIsWrittenThrough) {
  auto target = root_ / "dotfiles" / "docker-config.json";
  write(target, "{\"auths\": {}}", fs::perms(0600));
  fs::create_symlink(target, config());
  ContextStore store(dir_);
  store.use_context("docker-offload");
  EXPECT_TRUE(fs::is_symlink(config()));
  EXPECT_EQ(read(target), "{\n\t\"auths\": {},\n\t\"currentContext\": \"docker-offload\"\n}");
}

TEST_F(ContextStoreTest, WriteContextCreatesMetaLikeDockerCli) {
  ContextStore store(dir_);
  EXPECT_FALSE(store.context_exists(kOffloadContextName));
  EXPECT_EQ(store.context_host(kOffloadContextName), std::nullopt);
  store.write_context(kOffloadContextName, "unix:///run/offload/docker.sock", "Docker Offload");
  auto meta = dir_ / "contexts" / "meta" / sha256_hex("docker-offload") / "meta.json";
  EXPECT_EQ(store.meta_file(kOffloadContextName), meta);
  EXPECT_EQ(read(meta),
            "{\"Name\":\"docker-offload\",\"Metadata\":{\"Description\":\"Docker Offload\","
            "\"com.docker.offload\":true},\"Endpoints\":{\"docker\":{\"Host\":"
            "\"unix:///run/offload/docker.sock\",\"SkipTLSVerify\":false}}}");
  EXPECT_EQ(mode_of(meta), 0644u);
  EXPECT_EQ(mode_of(meta.parent_path()), 0755u);
  EXPECT_EQ(mode_of(dir_ / "contexts" / "meta"), 0755u);
  EXPECT_EQ(mode_of(dir_ / "contexts"), 0755u);
  EXPECT_TRUE(store.context_exists(kOffloadContextName));
  EXPECT_EQ(store.context_host(kOffloadContextName), "unix:///run/offload/docker.sock");
  EXPECT_TRUE(store.context_exists("default"));
  EXPECT_EQ(store.context_host("default"), std::nullopt);
}

TEST_F(ContextStoreTest, WriteContextKeepsForeignMetadataAndEndpoints) {
  auto meta = dir_ / "contexts" / "meta" / sha256_hex("docker-offload") / "meta.json";
  write(meta,
        R"({"Name":"docker-offload","Metadata":{"Description":"old","StackOrchestrator":"swarm",)"
        R"("com.docker.offload":true},"Endpoints":{"docker":{"Host":"unix:///old.sock",)"
        R"("SkipTLSVerify":false},"kubernetes":{"Host":"https://k"}}})",
        fs::perms(0644));
  ContextStore store(dir_);
  store.write_context(kOffloadContextName, "unix:///new.sock", "new");
  EXPECT_EQ(read(meta),
            R"({"Name":"docker-offload","Metadata":{"Description":"new","StackOrchestrator":)"
            R"("swarm","com.docker.offload":true},"Endpoints":{"docker":{"Host":)"
            R"("unix:///new.sock","SkipTLSVerify":false},"kubernetes":{"Host":"https://k"}}})");
  // Unchanged: no rewrite.
  auto inode = inode_of(meta);
  store.write_context(kOffloadContextName, "unix:///new.sock", "new");
  EXPECT_EQ(inode_of(meta), inode);
}

TEST_F(ContextStoreTest, WriteContextReplacesCorruptMeta) {
  auto meta = dir_ / "contexts" / "meta" / sha256_hex("docker-offload") / "meta.json";
  write(meta, "{\"Name\":", fs::perms(0644));
  ContextStore store(dir_);
  EXPECT_TRUE(store.context_exists(kOffloadContextName));
  EXPECT_EQ(store.context_host(kOffloadContextName), std::nullopt);
  store.write_context(kOffloadContextName, "unix:///s.sock", "d");
  EXPECT_EQ(store.context_host(kOffloadContextName), "unix:///s.sock");
}

TEST_F(ContextStoreTest, WriteContextRejectsNamesDockerRejects) {
  ContextStore store(dir_);
  EXPECT_THROW(store.write_context("default", "unix:///s", ""), ContextError);
  EXPECT_THROW(store.write_context("../x", "unix:///s", ""), ContextError);
  EXPECT_THROW(store.write_context("", "unix:///s", ""), ContextError);
  EXPECT_FALSE(fs::exists(dir_ / "contexts"));
}

TEST_F(ContextStoreTest, OtherContextsAreUntouched) {
  auto other = dir_ / "contexts" / "meta" / sha256_hex("other") / "meta.json";
  const std::string other_meta =
      R"({"Name":"other","Metadata":{"Description":"x"},"Endpoints":{"docker":{"Host":"tcp://h:2375","SkipTLSVerify":false}}})";
  write(other, other_meta, fs::perms(0644));
  auto other_tls = dir_ / "contexts" / "tls" / sha256_hex("other") / "docker" / "ca.pem";
  write(other_tls, "PEM", fs::perms(0600));
  ContextStore store(dir_);
  store.write_context(kOffloadContextName, "unix:///s.sock", "d");
  store.remove_context(kOffloadContextName);
  EXPECT_EQ(read(other), other_meta);
  EXPECT_EQ(read(other_tls), "PEM");
  EXPECT_EQ(store.context_host("other"), "tcp://h:2375");
}

TEST_F(ContextStoreTest, RemoveContextRemovesMetaAndTls) {
  ContextStore store(dir_);
  store.remove_context(kOffloadContextName);  // missing is fine
  store.write_context(kOffloadContextName, "unix:///s.sock", "d");
  auto tls = dir_ / "contexts" / "tls" / sha256_hex("docker-offload") / "docker" / "ca.pem";
  write(tls, "PEM");
  store.remove_context(kOffloadContextName);
  EXPECT_FALSE(store.context_exists(kOffloadContextName));
  EXPECT_FALSE(fs::exists(store.meta_file(kOffloadContextName).parent_path()));
  EXPECT_FALSE(fs::exists(tls.parent_path().parent_path()));
  EXPECT_TRUE(fs::is_directory(dir_ / "contexts" / "meta"));
}

// The real docker CLI must read what we write, and we must read what it writes. It needs no
// daemon for context commands.
class DockerCliInterop : public ContextStoreTest {
 protected:
  static constexpr const char* kDocker = "/usr/local/bin/docker";
  void SetUp() override {
    if (!fs::exists(kDocker)) GTEST_SKIP() << kDocker << " not installed";
    ContextStoreTest::SetUp();
  }
  CommandResult docker(std::vector<std::string> args) const {
    std::vector<std::string> argv = {"env",     "-u", "DOCKER_HOST", "-u", "DOCKER_CONTEXT",
                                     "DOCKER_CONFIG=" + dir_.string(), kDocker};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv);
  }
};

TEST_F(DockerCliInterop, CliSeesOurContextAndCurrent) {
  ContextStore store(dir_);
  store.write_context(kOffloadContextName, "unix:///tmp/offload-test/docker.sock",
                      "Docker Offload");
  auto ls = docker({"context", "ls", "--format", "{{.Name}}|{{.Current}}|{{.DockerEndpoint}}"});
  ASSERT_TRUE(ls.ok()) << ls.output << ls.error;
  EXPECT_NE(ls.output.find("docker-offload|false|unix:///tmp/offload-test/docker.sock"),
            std::string::npos)
      << ls.output;
  EXPECT_NE(ls.output.find("default|true|"), std::string::npos) << ls.output;

  EXPECT_EQ(store.use_context(kOffloadContextName), "default");
  auto show = docker({"context", "show"});
  ASSERT_TRUE(show.ok()) << show.output;
  EXPECT_EQ(show.output, "docker-offload\n");
  ls = docker({"context", "ls", "--format", "{{.Name}}|{{.Current}}"});
  EXPECT_NE(ls.output.find("docker-offload|true"), std::string::npos) << ls.output;

  auto inspect = docker({"context", "inspect", "docker-offload"});
  ASSERT_TRUE(inspect.ok()) << inspect.output;
  for (const char* expected :
       {"\"Name\": \"docker-offload\"", "\"Description\": \"Docker Offload\"",
        "\"com.docker.offload\": true", "\"Host\": \"unix:///tmp/offload-test/docker.sock\"",
        "\"SkipTLSVerify\": false"})
    EXPECT_NE(inspect.output.find(expected), std::string::npos) << expected << inspect.output;

  EXPECT_EQ(store.use_context("default"), kOffloadContextName);
  show = docker({"context", "show"});
  EXPECT_EQ(show.output, "default\n");
}

TEST_F(DockerCliInterop, WeReadWhatTheCliWrites) {
  auto create = docker({"context", "create", "other", "--docker", "host=tcp://10.0.0.1:2375"});
  ASSERT_TRUE(create.ok()) << create.output;
  auto use = docker({"context", "use", "other"});
  ASSERT_TRUE(use.ok()) << use.output;
  const std::string cli_written = read(config());
  ContextStore store(dir_);
  EXPECT_EQ(store.current_context(), "other");
  EXPECT_EQ(store.context_host("other"), "tcp://10.0.0.1:2375");

  store.write_context(kOffloadContextName, "unix:///tmp/o.sock", "d");
  EXPECT_EQ(store.use_context(kOffloadContextName), "other");
  EXPECT_EQ(store.use_context("other"), kOffloadContextName);
  // Our restore reproduces the CLI's own bytes.
  EXPECT_EQ(read(config()), cli_written);

  // And the CLI can remove what we created.
  auto rm = docker({"context", "rm", "docker-offload"});
  ASSERT_TRUE(rm.ok()) << rm.output;
  EXPECT_FALSE(store.context_exists(kOffloadContextName));
}
