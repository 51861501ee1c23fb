#include <gtest/gtest.h>

#include <sstream>

#include "offload/cli/commands.h"

using namespace offload::cli;

namespace {

struct Parsed {
  std::optional<int> code;
  CommandLine line;
  std::string out, err;
};

Parsed parse(std::vector<std::string> args) {
  Parsed p;
  std::ostringstream out, err;
  p.code = parse_command_line(args, p.line, out, err);
  p.out = out.str();
  p.err = err.str();
  return p;
}

void expect_flag_error(std::vector<std::string> args, const std::string& err) {
  Parsed p = parse(args);
  ASSERT_TRUE(p.code.has_value());
  EXPECT_EQ(*p.code, 1);
  EXPECT_EQ(p.err, err);
  EXPECT_EQ(p.out, "");
}

const char* kRootHelp =
    "Usage:  docker offload COMMAND\n"
    "\n"
    "Run containers and builds on an ephemeral remote engine\n"
    "\n"
    "Commands:\n"
    "  accounts    List the accounts you can start sessions with\n"
    "  diagnose    Check everything between docker and the session engine\n"
    "  images      List images in the offload session\n"
    "  ps          List containers in the offload session\n"
    "  start       Start an offload session\n"
    "  status      Show the offload session status\n"
    "  stop        Stop the offload session and destroy its environment\n"
    "  version     Show version information\n"
    "\n"
    "Run 'docker offload COMMAND --help' for more information on a command.\n";

}  // namespace

TEST(Parse, StartFlags) {
  Parsed p = parse({"start", "-a", "remote", "--timeout", "90s"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.verb, "start");
  EXPECT_EQ(p.line.start.account, "remote");
  EXPECT_EQ(p.line.start.timeout, "90s");

  p = parse({"start", "--account=gpu"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.start.account, "gpu");
  EXPECT_EQ(p.line.start.timeout, "");
}

TEST(Parse, StartRejectsBadDuration) {
  expect_flag_error({"start", "--timeout", "ten"},
                    "invalid argument \"ten\" for \"--timeout\" flag: not a duration (use e.g. "
                    "90s, 5m or 1h30m)\nSee 'docker offload start --help'.\n");
  expect_flag_error({"start", "--timeout", "-5m"},
                    "invalid argument \"-5m\" for \"--timeout\" flag: not a duration (use e.g. "
                    "90s, 5m or 1h30m)\nSee 'docker offload start --help'.\n");
}

TEST(Parse, StartIdleTimeout) {
  Parsed p = parse({"start", "--idle-timeout", "2m"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.start.idle_timeout, "2m");
  EXPECT_EQ(parse({"start"}).line.start.idle_timeout, "");
  expect_flag_error({"start", "--idle-timeout", "2 minutes"},
                    "invalid argument \"2 minutes\" for \"--idle-timeout\" flag: not a duration "
                    "(use e.g. 90s, 5m or 1h30m)\nSee 'docker offload start --help'.\n");
  expect_flag_error({"start", "--idle-timeout", "0"},
                    "invalid argument \"0\" for \"--idle-timeout\" flag: must be longer than zero "
                    "(to never end an idle session, set \"idleTimeout\": \"0\" in config.json)\n"
                    "See 'docker offload start --help'.\n");
  expect_flag_error({"start", "--idle-timeout"},
                    "flag needs an argument: --idle-timeout\nSee 'docker offload start --help'.\n");
}

TEST(Parse, DiagnoseFlags) {
  Parsed p = parse({"diagnose"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.verb, "diagnose");
  EXPECT_EQ(p.line.diagnose.format, "pretty");
  EXPECT_EQ(parse({"diagnose", "--format", "json"}).line.diagnose.format, "json");
  expect_flag_error({"diagnose", "--format", "yaml"},
                    "invalid argument \"yaml\" for \"--format\" flag: must be \"pretty\" or "
                    "\"json\"\nSee 'docker offload diagnose --help'.\n");
  expect_flag_error({"diagnose", "now"},
                    "\"docker offload diagnose\" accepts no arguments.\nSee 'docker offload "
                    "diagnose --help'.\n");
}

TEST(Parse, StopFlags) {
  EXPECT_FALSE(parse({"stop"}).line.stop.force);
  EXPECT_TRUE(parse({"stop", "-f"}).line.stop.force);
  EXPECT_TRUE(parse({"stop", "--force"}).line.stop.force);
  EXPECT_EQ(parse({"stop", "--force"}).line.verb, "stop");
}

TEST(Parse, StatusFlags) {
  Parsed p = parse({"status"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.status.format, "pretty");
  EXPECT_FALSE(p.line.status.watch);

  p = parse({"status", "-f", "json", "-w"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.status.format, "json");
  EXPECT_TRUE(p.line.status.watch);

  p = parse({"status", "--format=json", "--watch"});
  EXPECT_EQ(p.line.status.format, "json");
  EXPECT_TRUE(p.line.status.watch);

  // Like pflag, the last occurrence wins.
  EXPECT_EQ(parse({"status", "-f", "json", "--format", "pretty"}).line.status.format, "pretty");
}

TEST(Parse, StatusRejectsBadValues) {
  expect_flag_error({"status", "--format", "xml"},
                    "invalid argument \"xml\" for \"-f, --format\" flag: must be \"pretty\" or "
                    "\"json\"\nSee 'docker offload status --help'.\n");
  expect_flag_error({"status", "--format"},
                    "flag needs an argument: --format\nSee 'docker offload status --help'.\n");
  expect_flag_error({"status", "--bogus"},
                    "unknown flag: --bogus\nSee 'docker offload status --help'.\n");
  expect_flag_error({"status", "--bogus=1"},
                    "unknown flag: --bogus\nSee 'docker offload status --help'.\n");
  expect_flag_error({"status", "-x"},
                    "unknown shorthand flag: 'x' in -x\nSee 'docker offload status --help'.\n");
  expect_flag_error({"status", "now"},
                    "\"docker offload status\" accepts no arguments.\nSee 'docker offload "
                    "status --help'.\n");
}

TEST(Parse, PsFlags) {
  Parsed p = parse({"ps", "-a", "-q", "--format", "json"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.verb, "ps");
  EXPECT_TRUE(p.line.ps.all);
  EXPECT_TRUE(p.line.ps.quiet);
  EXPECT_EQ(p.line.ps.format, "json");

  p = parse({"ps", "-aq"});
  EXPECT_FALSE(p.code);
  EXPECT_TRUE(p.line.ps.all);
  EXPECT_TRUE(p.line.ps.quiet);

  // -f is status's shorthand only.
  expect_flag_error({"ps", "-f", "json"},
                    "unknown shorthand flag: 'f' in -f\nSee 'docker offload ps --help'.\n");
  expect_flag_error({"ps", "--format", "table"},
                    "invalid argument \"table\" for \"--format\" flag: must be \"pretty\" or "
                    "\"json\"\nSee 'docker offload ps --help'.\n");
}

TEST(Parse, ImagesFlags) {
  Parsed p = parse({"images", "--quiet", "--format", "json"});
  EXPECT_FALSE(p.code);
  EXPECT_TRUE(p.line.images.quiet);
  EXPECT_EQ(p.line.images.format, "json");
  expect_flag_error({"images", "-a"},
                    "unknown shorthand flag: 'a' in -a\nSee 'docker offload images --help'.\n");
}

TEST(Parse, VersionFlags) {
  EXPECT_TRUE(parse({"version", "--json"}).line.version.json);
  EXPECT_TRUE(parse({"version", "--short"}).line.version.short_only);
  expect_flag_error({"version", "--json", "--short"},
                    "--json and --short cannot be used together\nSee 'docker offload version "
                    "--help'.\n");
}

TEST(Parse, AccountsFlags) {
  Parsed p = parse({"accounts", "--format", "json"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.verb, "accounts");
  EXPECT_EQ(p.line.accounts.format, "json");
}

TEST(Parse, UnknownCommandAndRootFlags) {
  expect_flag_error({"bogus"},
                    "docker: 'bogus' is not a docker offload command.\nSee 'docker offload "
                    "--help'.\n");
  expect_flag_error({"--bogus", "status"}, "unknown flag: --bogus\nSee 'docker offload --help'.\n");
  // One verb per run: a second one is a stray argument of the first.
  expect_flag_error({"status", "ps"},
                    "\"docker offload status\" accepts no arguments.\nSee 'docker offload "
                    "status --help'.\n");
}

TEST(Help, BareCommandPrintsRootHelp) {
  Parsed p = parse({});
  ASSERT_TRUE(p.code);
  EXPECT_EQ(*p.code, 0);
  EXPECT_EQ(p.out, kRootHelp);
  EXPECT_EQ(p.err, "");
}

TEST(Help, RootGolden) {
  for (const char* flag : {"--help", "-h"}) {
    Parsed p = parse({flag});
    ASSERT_TRUE(p.code);
    EXPECT_EQ(*p.code, 0);
    EXPECT_EQ(p.out, kRootHelp);
  }
}

TEST(Help, StatusGolden) {
  Parsed p = parse({"status", "--help"});
  ASSERT_TRUE(p.code);
  EXPECT_EQ(*p.code, 0);
  EXPECT_EQ(p.out,
            "Usage:  docker offload status [OPTIONS]\n"
            "\n"
            "Show the offload session status\n"
            "\n"
            "Options:\n"
            "  -f, --format string   Format the output: pretty or json (default \"pretty\")\n"
            "  -w, --watch           Watch the status and show it again on every change\n");
  // Help wins over other flags, as in docker.
  EXPECT_EQ(parse({"status", "-w", "-h"}).out, p.out);
}

TEST(Help, StartGolden) {
  EXPECT_EQ(parse({"start", "--help"}).out,
            "Usage:  docker offload start [OPTIONS]\n"
            "\n"
            "Start an offload session\n"
            "\n"
            "Options:\n"
            "  -a, --account string          Account to start the session with\n"
            "      --idle-timeout duration   End the session after this long with nothing "
            "running, e.g. 2m\n"
            "      --preload list            Images to copy into the session from the engine used "
            "before\n"
            "      --timeout duration        How long provisioning may take, e.g. 90s or 5m\n");
}

TEST(Help, DiagnoseGolden) {
  EXPECT_EQ(parse({"diagnose", "--help"}).out,
            "Usage:  docker offload diagnose [OPTIONS]\n"
            "\n"
            "Check everything between docker and the session engine\n"
            "\n"
            "Options:\n"
            "      --format string   Format the output: pretty or json (default \"pretty\")\n");
}

TEST(Help, PsListsOptionsByLongName) {
  EXPECT_EQ(parse({"ps", "--help"}).out,
            "Usage:  docker offload ps [OPTIONS]\n"
            "\n"
            "List containers in the offload session\n"
            "\n"
            "Options:\n"
            "  -a, --all             Show all containers (default shows just running)\n"
            "      --format string   Format the output: pretty or json (default \"pretty\")\n"
            "  -q, --quiet           Only display container IDs\n");
}
