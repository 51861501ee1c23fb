#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <set>

#include <boost/asio/ip/network_v4.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "offload/common/token.h"
#include "offload/runner/docker_backend.h"
#include "offload/runner/inventory.h"
#include "offload/runner/runner_service.h"
#include "offload/runner/sync_call.h"
#include "error_of.h"

using namespace offload::runner;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
namespace fs = std::filesystem;

namespace {

std::string corpus(const std::string& name) {
  std::ifstream in(fs::path(OFFLOAD_INVENTORY_CORPUS) / name, std::ios::binary);
  EXPECT_TRUE(in) << name;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

using offload::testing::error_of;

}  // namespace

// --- inventory: GET /containers/json ---

TEST(ParseContainers, RunningContainerWithPublishedAndExposedPorts) {
  auto containers = parse_containers(corpus("containers_running_with_ports.json"));
  ASSERT_EQ(containers.size(), 1u);
  const auto& c = containers[0];
  EXPECT_EQ(c.id(), "5f2c0f3b9a6e1d7c4b8a2e9f0d1c3b5a7e9f1d3c5b7a9e1f3d5c7b9a1e3f5d7c");
  EXPECT_THAT(c.names(), ElementsAre("web"));
  EXPECT_EQ(c.image(), "nginx:1.25");
  EXPECT_EQ(c.command(), "/docker-entrypoint.sh nginx -g 'daemon off;'");
  EXPECT_EQ(c.created_unix(), 1717000000);
  EXPECT_EQ(c.state(), "running");
  EXPECT_EQ(c.status(), "Up 3 seconds");
  ASSERT_EQ(c.ports_size(), 3);
  EXPECT_EQ(c.ports(0).host_ip(), "0.0.0.0");
  EXPECT_EQ(c.ports(0).host_port(), 8081u);
  EXPECT_EQ(c.ports(0).container_port(), 80u);
  EXPECT_EQ(c.ports(0).protocol(), "tcp");
  EXPECT_EQ(c.ports(1).host_ip(), "::");
  // Exposed but not published: no host side.
  EXPECT_EQ(c.ports(2).host_ip(), "");
  EXPECT_EQ(c.ports(2).host_port(), 0u);
  EXPECT_EQ(c.ports(2).container_port(), 443u);
}

TEST(ParseContainers, ExitedAndCreatedContainersWithNullFields) {
  auto containers = parse_containers(corpus("containers_all_exited_null_fields.json"));
  ASSERT_EQ(containers.size(), 2u);
  // A linked container has two names; only the one leading "/" goes.
  EXPECT_THAT(containers[0].names(), ElementsAre("quirky_turing", "web/db"));
  EXPECT_EQ(containers[0].state(), "exited");
  EXPECT_EQ(containers[0].status(), "Exited (3) 2 minutes ago");
  EXPECT_EQ(containers[0].ports_size(), 0);
  EXPECT_THAT(containers[1].names(), IsEmpty());
  EXPECT_EQ(containers[1].state(), "created");
  ASSERT_EQ(containers[1].ports_size(), 2);
  EXPECT_EQ(containers[1].ports(0).protocol(), "udp");
  EXPECT_EQ(containers[1].ports(1).host_ip(), "127.0.0.1");
  EXPECT_EQ(containers[1].ports(1).host_port(), 5353u);
  EXPECT_EQ(containers[1].ports(1).container_port(), 53u);
}

TEST(ParseContainers, EmptyListAndMissingOptionalFields) {
  EXPECT_THAT(parse_containers(corpus("containers_empty.json")), IsEmpty());
  EXPECT_THAT(parse_containers(" [ ] \n"), IsEmpty());
  auto minimal = parse_containers(R"([{"Id":"abc","Ports":null,"Names":null,"Created":null}])");
  ASSERT_EQ(minimal.size(), 1u);
  EXPECT_EQ(minimal[0].id(), "abc");
  EXPECT_EQ(minimal[0].created_unix(), 0);
  EXPECT_THAT(minimal[0].names(), IsEmpty());
}

TEST(ParseContainers, MalformedAnswersThrowTheDocumentedError) {
  const std::string prefix =
      "the session engine returned an unexpected answer to GET /containers/json: ";
  for (const std::string& bad :
       {std::string(""),
        std::string("not json"),
        std::string("{\"message\":\"page not found\"}"),
        corpus("malformed_error_object.json"),
        corpus("malformed_truncated.json"),
        corpus("malformed_wrong_types.json"),
        std::string("[1]"),
        std::string("[null]"),
        std::string(R"([{"Names":["/x"]}])"),                           // no Id
        std::string(R"([{"Id":"a","Names":"/x"}])"),                    // not a list
        std::string(R"([{"Id":"a","Names":[7]}])"),                     // not strings
        std::string(R"([{"Id":"a","Created":"yesterday"}])"),           // not a number
        std::string(R"([{"Id":"a","Created":1.5}])"),                   // not an integer
        std::string(R"([{"Id":"a","Created":18446744073709551615}])"),  // out of int64
        std::string(R"([{"Id":"a","Ports":{}}])"),
        std::string(R"([{"Id":"a","Ports":[7]}])"),
        std::string(R"([{"Id":"a","Ports":[{"PrivatePort":-1}]}])"),
        std::string(R"([{"Id":"a","Ports":[{"PrivatePort":65536}]}])"),
        std::string(R"([{"Id":"a","State":true}])"),
        std::string("[") + std::string(100000, '['),
        std::string(100000, '[') + std::string(100000, ']')}) {
    EXPECT_THAT(error_of([&] { parse_containers(bad); }), StartsWith(prefix)) << bad.substr(0, 80);
  }
}

// --- inventory: GET /images/json ---

TEST(ParseImages, TaggedUntaggedAndDanglingImages) {
  auto images = parse_images(corpus("images_tagged_and_untagged.json"));
  ASSERT_EQ(images.size(), 3u);
  EXPECT_EQ(images[0].id(),
            "sha256:a8758716bb6aa4d90071160d27028fe4eaee7ce8166221a97d30440c8eac2be6");
  EXPECT_THAT(images[0].repo_tags(), ElementsAre("nginx:1.25", "nginx:latest"));
  EXPECT_EQ(images[0].created_unix(), 1716480000);
  EXPECT_EQ(images[0].size_bytes(), 187694648);
  EXPECT_THAT(images[1].repo_tags(), IsEmpty());  // RepoTags null
  EXPECT_THAT(images[2].repo_tags(), IsEmpty());  // ["<none>:<none>"]
  EXPECT_EQ(images[2].size_bytes(), 4261574);
}

TEST(ParseImages, MalformedAnswersThrowTheDocumentedError) {
  const std::string prefix =
      "the session engine returned an unexpected answer to GET /images/json: ";
  for (const std::string& bad :
       {std::string("{}"), std::string("[\"sha256:x\"]"), std::string(R"([{"Size":1}])"),
        std::string(R"([{"Id":"a","RepoTags":"nginx:latest"}])"),
        std::string(R"([{"Id":"a","RepoTags":[null]}])"), std::string(R"([{"Id":"a","Size":1.5}])"),
        std::string(R"([{"Id":7}])"), corpus("malformed_wrong_types.json")}) {
    EXPECT_THAT(error_of([&] { parse_images(bad); }), StartsWith(prefix)) << bad;
  }
  // A containers answer is not an images answer only where the shapes differ; an empty list is
  // valid for both.
  EXPECT_THAT(parse_images("[]"), IsEmpty());
}

// --- token file (parse_token_file, account_tokens.cpp) ---

TEST(TokenFile, ParsesAccountsCommentsAndBlankLines) {
  auto tokens = parse_token_file(
      "# accounts of this runner\n"
      "\n"
      "alice:0123456789abcdef0123456789abcdef\r\n"
      "   # an indented comment\n"
      "  bob:fedcba9876543210fedcba9876543210  \n"
      "ci:with:colons:in:the:token:0123456789\n",
      "tokens.txt");
  EXPECT_EQ(tokens.size(), 3u);
  EXPECT_EQ(tokens.at("alice"), "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(tokens.at("bob"), "fedcba9876543210fedcba9876543210");
  EXPECT_EQ(tokens.at("ci"), "with:colons:in:the:token:0123456789");
}

TEST(TokenFile, ErrorsNameTheLineAndNeverTheToken) {
  struct Case {
    std::string text, secret, expected;
  };
  const std::string good = "alice:0123456789abcdef0123456789abcdef\n";
  const std::vector<Case> cases = {
      {good + "bob:short-secret1\n", "short-secret1", "tokens.txt:2: the token of account \"bob\""},
      {good + "alice:an0ther-secret-that-is-long\n", "an0ther-secret-that-is-long",
       "tokens.txt:2: account \"alice\" appears twice"},
      {"# x\nno-colon-secret-0123456789abcdef\n", "no-colon-secret-0123456789abcdef",
       "tokens.txt:2: expected NAME:TOKEN"},
      {":nameless-secret-0123456789abcdef\n", "nameless-secret-0123456789abcdef",
       "tokens.txt:1: expected NAME:TOKEN"},
      {"carol:\n", "carol:", "tokens.txt:1: expected NAME:TOKEN"},
  };
  for (const auto& c : cases) {
    const std::string message = error_of([&] { parse_token_file(c.text, "tokens.txt"); });
    EXPECT_THAT(message, StartsWith(c.expected)) << c.text;
    EXPECT_THAT(message, Not(HasSubstr(c.secret))) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(AccountsFile, SettingsAfterTheTokenGrantLimitsAndAllowances) {
  auto accounts = parse_accounts_file(
      "alice:0123456789abcdef0123456789abcdef max-sessions=2 "
      "allow=privileged,host-namespaces,devices,cap:SYS_PTRACE,cap:cap_net_admin\n"
      "bob:fedcba9876543210fedcba9876543210\n"
      "carol:fedcba9876543210fedcba98765432ff\tmax-sessions=0\n",
      "accounts.txt");
  ASSERT_EQ(accounts.size(), 3u);
  const auto& alice = accounts.at("alice");
  EXPECT_EQ(alice.token, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(alice.settings.max_sessions, std::optional<std::size_t>(2));
  EXPECT_TRUE(alice.settings.allow.privileged);
  EXPECT_TRUE(alice.settings.allow.host_namespaces);
  EXPECT_TRUE(alice.settings.allow.devices);
  EXPECT_EQ(alice.settings.allow.capabilities,
            (std::set<std::string>{"SYS_PTRACE", "NET_ADMIN"}));
  const auto& bob = accounts.at("bob");
  EXPECT_EQ(bob.token, "fedcba9876543210fedcba9876543210");
  EXPECT_FALSE(bob.settings.max_sessions);
  EXPECT_FALSE(bob.settings.allow.privileged);
  EXPECT_TRUE(bob.settings.allow.capabilities.empty());
  EXPECT_EQ(accounts.at("carol").settings.max_sessions, std::optional<std::size_t>(0));
  // The plain view keeps working for files with settings.
  EXPECT_EQ(parse_token_file("alice:0123456789abcdef0123456789abcdef max-sessions=1\n", "a")
                .at("alice"),
            "0123456789abcdef0123456789abcdef");
}

TEST(AccountsFile, BadSettingsNameTheFileLineAndKeyButNotTheToken) {
  const std::string secret = "0123456789abcdef0123456789abcdef";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"max-session=2", "accounts.txt:2: unknown setting \"max-session\""},
      {"colour", "accounts.txt:2: unknown setting \"colour\""},
      {"max-sessions=two", "accounts.txt:2: max-sessions= needs a whole number"},
      {"max-sessions=-1", "accounts.txt:2: max-sessions= needs a whole number"},
      {"max-sessions=", "accounts.txt:2: max-sessions= needs a whole number"},
      {"allow=root", "accounts.txt:2: allow=: unknown allowance \"root\""},
      {"allow=cap:", "accounts.txt:2: allow=: unknown allowance \"cap:\""},
      {"allow=cap:SYS-ADMIN", "accounts.txt:2: allow=: \"cap:SYS-ADMIN\" is not a capability"},
  };
  for (const auto& [words, expected] : cases) {
    const std::string text = "# accounts\nalice:" + secret + " " + words + "\n";
    const std::string message = error_of([&] { parse_accounts_file(text, "accounts.txt"); });
    EXPECT_THAT(message, StartsWith(expected)) << words;
    EXPECT_THAT(message, Not(HasSubstr(secret))) << message;
  }
}

TEST(TokenFile, EmptyFileIsAnError) {
  EXPECT_THAT(error_of([] { parse_token_file("", "t"); }), HasSubstr("no account tokens"));
  EXPECT_THAT(error_of([] { parse_token_file("# only a comment\n\n", "t"); }),
              HasSubstr("no account tokens"));
}

// --- DockerSessionBackend: what needs neither root nor dockerd ---

class BackendFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("offload-runner-test-" + offload::random_hex(6));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  DockerBackendOptions options() {
    return {dir_ / "state", dir_ / "run", boost::asio::ip::make_network_v4("10.213.0.0/24"), {}, {}};
  }
  fs::path dir_;
};

TEST_F(BackendFiles, RecordsLiveNextToTheSessionDirectories) {
  DockerSessionBackend backend(options());
  EXPECT_EQ(backend.sessions_dir(), dir_ / "state" / "sessions");
  EXPECT_EQ(backend.record_path("0123456789abcdef"),
            dir_ / "state" / "sessions" / "0123456789abcdef.json");
}

TEST_F(BackendFiles, PoolSmallerThanASlotIsRejected) {
  auto o = options();
  o.address_pool = boost::asio::ip::make_network_v4("10.213.0.0/31");
  EXPECT_THROW(DockerSessionBackend{o}, std::invalid_argument);
}

TEST_F(BackendFiles, NoLeftoversOnAFreshStateDir) {
  DockerSessionBackend backend(options());
  EXPECT_THAT(backend.destroy_leftovers(), IsEmpty());
  EXPECT_FALSE(fs::exists(backend.sessions_dir()));
}

TEST_F(BackendFiles, ForeignFilesAreLeftAloneAndStaleTemporariesRemoved) {
  DockerSessionBackend backend(options());
  fs::create_directories(backend.sessions_dir());
  std::ofstream(backend.sessions_dir() / "README.json") << "{}";
  std::ofstream(backend.sessions_dir() / "notes.txt") << "mine";
  fs::create_directories(backend.sessions_dir() / "NOT-A-SESSION");
  std::ofstream(backend.sessions_dir() / ".0123456789abcdef.json.tmp-Ab12Cd") << "{\"sess";
  EXPECT_THAT(backend.destroy_leftovers(), IsEmpty());
  EXPECT_TRUE(fs::exists(backend.sessions_dir() / "README.json"));
  EXPECT_TRUE(fs::exists(backend.sessions_dir() / "notes.txt"));
  EXPECT_TRUE(fs::exists(backend.sessions_dir() / "NOT-A-SESSION"));
  EXPECT_FALSE(fs::exists(backend.sessions_dir() / ".0123456789abcdef.json.tmp-Ab12Cd"));
}

// Each mount id keeps the mode it was first opened in for the session's life; what a mount offers
// for binding follows from it.
TEST(SyncCallsClaims, AMountKeepsItsModeAndOffersOnlyItsWholeSelf) {
  offload::runner::SyncCalls calls;
  EXPECT_EQ(calls.claim("0123456789abcdef", false, ""), "");
  EXPECT_EQ(calls.claim("0123456789abcdef", false, ""), "");  // a reconnect
  EXPECT_EQ(calls.claim("fedcba9876543210", true, "app.yml"), "");
  EXPECT_EQ(calls.claim("fedcba9876543210", true, "app.yml"), "");
  auto as_file = calls.claim("0123456789abcdef", true, "x");
  EXPECT_NE(as_file.find("cannot now hold the single file \"x\""), std::string::npos) << as_file;
  auto as_dir = calls.claim("fedcba9876543210", false, "");
  EXPECT_NE(as_dir.find("cannot now hold a directory"), std::string::npos) << as_dir;
  auto other_file = calls.claim("fedcba9876543210", true, "other.yml");
  EXPECT_NE(other_file.find("other.yml"), std::string::npos) << other_file;

  EXPECT_TRUE(calls.is_mount_source("0123456789abcdef"));
  EXPECT_TRUE(calls.is_mount_source("fedcba9876543210/app.yml"));
  for (const char* not_offered : {"", "0123456789abcdef/x", "0123456789abcdef/x/y",
                                  "fedcba9876543210", "fedcba9876543210/other.yml",
                                  "1111111111111111", "fedcba9876543210/app.yml/x"})
    EXPECT_FALSE(calls.is_mount_source(not_offered)) << not_offered;
}
