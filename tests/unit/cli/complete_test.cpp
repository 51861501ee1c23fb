// `docker-offload __complete ...`: the exact bytes cobra's completion scripts read.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "offload/cli/cli.h"
#include "offload/cli/complete.h"
#include "temp_dir.h"

using namespace offload::cli;
using offload::test::TempDir;
namespace fs = std::filesystem;

namespace {

CompletionSources two_accounts() {
  CompletionSources s;
  s.accounts = [] {
    return std::vector<std::pair<std::string, std::string>>{
        {"local", "Embedded runner on this machine (default)"},
        {"gpu", "Runner at gpu.example.com:7443"}};
  };
  return s;
}

// What `docker-offload __complete <words...>` prints on stdout.
std::string complete(std::vector<std::string> words, bool descriptions = true,
                     const CompletionSources& sources = two_accounts()) {
  return render_completions(complete_command_line(words, sources), descriptions);
}

const std::string kVerbs =
    "accounts\tList the accounts you can start sessions with\n"
    "diagnose\tCheck everything between docker and the session engine\n"
    "images\tList images in the offload session\n"
    "ps\tList containers in the offload session\n"
    "start\tStart an offload session\n"
    "status\tShow the offload session status\n"
    "stop\tStop the offload session and destroy its environment\n"
    "version\tShow version information\n";

}  // namespace

TEST(Complete, EveryVerbWithItsSummaryAndNoFileNames) {
  EXPECT_EQ(complete({"offload", ""}), kVerbs + ":4\n");
}

TEST(Complete, VerbsByPrefix) {
  EXPECT_EQ(complete({"offload", "st"}),
            "start\tStart an offload session\n"
            "status\tShow the offload session status\n"
            "stop\tStop the offload session and destroy its environment\n"
            ":4\n");
}

TEST(Complete, NoDescKeepsOnlyTheValues) {
  EXPECT_EQ(complete({"offload", "st"}, false), "start\nstatus\nstop\n:4\n");
}

// Debian's docker.io bash completion runs `docker-offload __completeNoDesc <words after offload>`.
TEST(Complete, WithoutTheOffloadWordAsDebiansBashCompletionAsks) {
  EXPECT_EQ(complete({"st"}, false), "start\nstatus\nstop\n:4\n");
  EXPECT_EQ(complete({""}, false),
            "accounts\ndiagnose\nimages\nps\nstart\nstatus\nstop\nversion\n:4\n");
  // "offload" as the word being completed is a value, not the plugin's name.
  EXPECT_EQ(complete({"offload"}), ":4\n");
}

TEST(Complete, NoWordsAtAllIsAnEmptyWord) {
  EXPECT_EQ(complete({}, false), complete({""}, false));
}

TEST(Complete, LongFlagsSortedByNameWithTheirUsage) {
  EXPECT_EQ(complete({"offload", "start", "--"}),
            "--account\tAccount to start the session with\n"
            "--gpu\tRequest an engine with GPU support (the runner's NVIDIA GPUs)\n"
            "--help\tPrint usage\n"
            "--idle-timeout\tEnd the session after this long with nothing running, e.g. 2m\n"
            "--preload\tImages to copy into the session from the engine used before\n"
            "--timeout\tHow long provisioning may take, e.g. 90s or 5m\n"
            ":4\n");
}

TEST(Complete, ASingleDashAlsoOffersShorthands) {
  EXPECT_EQ(complete({"offload", "status", "-"}, false),
            "--format\n-f\n--help\n-h\n--watch\n-w\n:4\n");
}

TEST(Complete, FlagsAlreadyGivenAreNotOfferedAgain) {
  EXPECT_EQ(complete({"offload", "ps", "-a", "--format", "json", "--"}, false),
            "--help\n--quiet\n:4\n");
  EXPECT_EQ(complete({"offload", "ps", "-qa", "-"}, false), "--format\n--help\n-h\n:4\n");
}

TEST(Complete, RootFlags) {
  EXPECT_EQ(complete({"offload", "--"}, false), "--help\n:4\n");
}

TEST(Complete, FormatValues) {
  const std::string both = "pretty\tHuman-readable output\njson\tJSON output\n:4\n";
  EXPECT_EQ(complete({"offload", "status", "--format", ""}), both);
  EXPECT_EQ(complete({"offload", "status", "-f", ""}), both);
  EXPECT_EQ(complete({"offload", "ps", "--format", "j"}), "json\tJSON output\n:4\n");
  EXPECT_EQ(complete({"offload", "images", "--format=p"}, false), "pretty\n:4\n");
  EXPECT_EQ(complete({"offload", "status", "-wf", ""}, false), "pretty\njson\n:4\n");
}

TEST(Complete, AccountNamesFromTheSources) {
  EXPECT_EQ(complete({"offload", "start", "--account", ""}),
            "local\tEmbedded runner on this machine (default)\n"
            "gpu\tRunner at gpu.example.com:7443\n"
            ":4\n");
  EXPECT_EQ(complete({"offload", "start", "-a", "g"}, false), "gpu\n:4\n");
  EXPECT_EQ(complete({"offload", "start", "--timeout", "5m", "--account=l"}, false),
            "local\n:4\n");
}

TEST(Complete, AnUnreadableConfigIsTheErrorDirective) {
  CompletionSources broken;
  broken.accounts = []() -> std::vector<std::pair<std::string, std::string>> {
    throw std::runtime_error("config.json: bad");
  };
  EXPECT_EQ(complete({"offload", "start", "--account", ""}, true, broken), ":1\n");
}

TEST(Complete, DurationsAndArgumentsCompleteNothingAndNoFiles) {
  EXPECT_EQ(complete({"offload", "start", "--timeout", ""}), ":4\n");
  EXPECT_EQ(complete({"offload", "start", "--idle-timeout="}), ":4\n");
  EXPECT_EQ(complete({"offload", "stop", ""}), ":4\n");
  EXPECT_EQ(complete({"offload", "stop", "-f", ""}), ":4\n");
  EXPECT_EQ(complete({"offload", "bogus", ""}), ":4\n");
  // A flag value already given is not a verb.
  EXPECT_EQ(complete({"offload", "status", "--format", "json", "st"}), ":4\n");
}

TEST(Complete, NothingAfterHelp) {
  EXPECT_EQ(complete({"offload", "start", "--help", "--"}), ":4\n");
}

TEST(Complete, ADescriptionKeepsToOneLineAndIsTrimmed) {
  Completions c{{{"a", "first line\nsecond"}, {" b ", ""}}, kCompNoSpace | kCompKeepOrder};
  EXPECT_EQ(render_completions(c, true), "a\tfirst line\nb\n:34\n");
}

TEST(Complete, DirectiveNamesAsCobraPrintsThem) {
  EXPECT_EQ(describe_directive(0), "ShellCompDirectiveDefault");
  EXPECT_EQ(describe_directive(4), "ShellCompDirectiveNoFileComp");
  EXPECT_EQ(describe_directive(1 | 2), "ShellCompDirectiveError, ShellCompDirectiveNoSpace");
}

TEST(Complete, ConfiguredAccountsAreLocalAndEveryRemoteOne) {
  TempDir dir;
  fs::create_directories(dir.path() / "offload");
  std::ofstream(dir.path() / "offload" / "config.json") << R"({
    "defaultAccount": "gpu",
    "accounts": {
      "gpu": {"type": "remote", "address": "gpu.example.com:7443", "tokenFile": "gpu.token",
              "fingerprint": "sha256:)" + std::string(64, 'a') + R"("}
    }})";
  auto accounts = configured_accounts(dir.path());
  ASSERT_EQ(accounts.size(), 2u);
  EXPECT_EQ(accounts[0], std::make_pair(std::string("local"),
                                        std::string("Embedded runner on this machine")));
  EXPECT_EQ(accounts[1], std::make_pair(std::string("gpu"),
                                        std::string("Runner at gpu.example.com:7443 (default)")));
}

TEST(Complete, NoConfigFileMeansTheLocalAccountAlone) {
  TempDir dir;
  auto accounts = configured_accounts(dir.path());
  ASSERT_EQ(accounts.size(), 1u);
  EXPECT_EQ(accounts[0].first, "local");
  EXPECT_EQ(accounts[0].second, "Embedded runner on this machine (default)");
}

// The plugin's entry point: answered from the config alone, on stdout, with cobra's stderr line.
TEST(Complete, RunAnswersWithoutTheDaemon) {
  TempDir dir;
  std::istringstream in;
  std::ostringstream out, err;
  Console console{in, out, err, false, false};
  Environment env;
  env.docker_config = dir.path();
  EXPECT_EQ(run({"docker-offload", "__complete", "offload", "start", "--account", ""}, console,
                env),
            0);
  EXPECT_EQ(out.str(), "local\tEmbedded runner on this machine (default)\n:4\n");
  EXPECT_EQ(err.str(), "Completion ended with directive: ShellCompDirectiveNoFileComp\n");
  out.str("");
  EXPECT_EQ(run({"docker-offload", "__completeNoDesc", "sta"}, console, env), 0);
  EXPECT_EQ(out.str(), "start\nstatus\n:4\n");
  EXPECT_FALSE(fs::exists(dir.path() / "offload")) << "completion must not start offloadd";
}
