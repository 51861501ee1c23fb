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

// docker 28's usage errors: the complaint, the usage line, where help is.
std::string usage_error(const std::string& message, const std::string& usage,
                        const std::string& path) {
  return message + "\n\nUsage:  " + usage + "\n\nRun '" + path + " --help' for more information\n";
}

// A flag error: unknown flag, missing or bad value. docker exits 125 for these.
void expect_flag_error(std::vector<std::string> args, const std::string& message,
                       const std::string& path) {
  Parsed p = parse(args);
  ASSERT_TRUE(p.code.has_value());
  EXPECT_EQ(*p.code, 125);
  EXPECT_EQ(p.err, usage_error(message, path + " [OPTIONS]", path));
  EXPECT_EQ(p.out, "");
}

// A stray or missing argument, or an unknown command: docker exits 1 for these.
void expect_argument_error(std::vector<std::string> args, const std::string& message,
                           const std::string& usage, const std::string& path) {
  Parsed p = parse(args);
  ASSERT_TRUE(p.code.has_value());
  EXPECT_EQ(*p.code, 1);
  EXPECT_EQ(p.err, usage_error(message, usage, path));
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

TEST(Parse, StartGpu) {
  EXPECT_FALSE(parse({"start"}).line.start.gpu);
  EXPECT_TRUE(parse({"start", "--gpu"}).line.start.gpu);
  Parsed p = parse({"start", "-g", "-a", "gpu-box"});
  EXPECT_FALSE(p.code);
  EXPECT_TRUE(p.line.start.gpu);
  EXPECT_EQ(p.line.start.account, "gpu-box");
  EXPECT_TRUE(parse({"start", "-ga", "gpu-box"}).line.start.gpu);
  expect_flag_error({"status", "--gpu"}, "unknown flag: --gpu", "docker offload status");
}

TEST(Parse, StartRejectsBadDuration) {
  expect_flag_error({"start", "--timeout", "ten"},
                    "invalid argument \"ten\" for \"--timeout\" flag: not a duration (use e.g. "
                    "90s, 5m or 1h30m)", "docker offload start");
  expect_flag_error({"start", "--timeout", "-5m"},
                    "invalid argument \"-5m\" for \"--timeout\" flag: not a duration (use e.g. "
                    "90s, 5m or 1h30m)", "docker offload start");
}

TEST(Parse, StartIdleTimeout) {
  Parsed p = parse({"start", "--idle-timeout", "2m"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.start.idle_timeout, "2m");
  EXPECT_EQ(parse({"start"}).line.start.idle_timeout, "");
  expect_flag_error({"start", "--idle-timeout", "2 minutes"},
                    "invalid argument \"2 minutes\" for \"--idle-timeout\" flag: not a duration "
                    "(use e.g. 90s, 5m or 1h30m)", "docker offload start");
  expect_flag_error({"start", "--idle-timeout", "0"},
                    "invalid argument \"0\" for \"--idle-timeout\" flag: must be longer than zero "
                    "(to never end an idle session, set \"idleTimeout\": \"0\" in config.json)",
                    "docker offload start");
  expect_flag_error({"start", "--idle-timeout"},
                    "flag needs an argument: --idle-timeout", "docker offload start");
}

TEST(Parse, DiagnoseFlags) {
  Parsed p = parse({"diagnose"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.verb, "diagnose");
  EXPECT_EQ(p.line.diagnose.format, "pretty");
  EXPECT_EQ(parse({"diagnose", "--format", "json"}).line.diagnose.format, "json");
  expect_flag_error({"diagnose", "--format", "yaml"},
                    "invalid argument \"yaml\" for \"--format\" flag: must be \"pretty\" or "
                    "\"json\"", "docker offload diagnose");
  expect_argument_error({"diagnose", "now"}, "docker: 'docker offload diagnose' accepts no arguments",
                        "docker offload diagnose [OPTIONS]", "docker offload diagnose");
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
                    "\"json\"", "docker offload status");
  expect_flag_error({"status", "--format"},
                    "flag needs an argument: --format", "docker offload status");
  expect_flag_error({"status", "--bogus"},
                    "unknown flag: --bogus", "docker offload status");
  expect_flag_error({"status", "--bogus=1"},
                    "unknown flag: --bogus", "docker offload status");
  expect_flag_error({"status", "-x"},
                    "unknown shorthand flag: 'x' in -x", "docker offload status");
  expect_argument_error({"status", "now"}, "docker: 'docker offload status' accepts no arguments",
                        "docker offload status [OPTIONS]", "docker offload status");
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
                    "unknown shorthand flag: 'f' in -f", "docker offload ps");
  expect_flag_error({"ps", "--format", "table"},
                    "invalid argument \"table\" for \"--format\" flag: must be \"pretty\" or "
                    "\"json\"", "docker offload ps");
}

TEST(Parse, ImagesFlags) {
  Parsed p = parse({"images", "--quiet", "--format", "json"});
  EXPECT_FALSE(p.code);
  EXPECT_TRUE(p.line.images.quiet);
  EXPECT_EQ(p.line.images.format, "json");
  expect_flag_error({"images", "-a"},
                    "unknown shorthand flag: 'a' in -a", "docker offload images");
}

TEST(Parse, VersionFlags) {
  EXPECT_TRUE(parse({"version", "--json"}).line.version.json);
  EXPECT_TRUE(parse({"version", "--short"}).line.version.short_only);
  expect_flag_error({"version", "--json", "--short"},
                    "--json and --short cannot be used together", "docker offload version");
}

TEST(Parse, AccountsFlags) {
  Parsed p = parse({"accounts", "--format", "json"});
  EXPECT_FALSE(p.code);
  EXPECT_EQ(p.line.verb, "accounts");
  EXPECT_EQ(p.line.accounts.format, "json");
}

TEST(Parse, UnknownCommandAndRootFlags) {
  expect_argument_error({"bogus"}, "docker: unknown command: docker offload bogus",
                        "docker offload COMMAND", "docker offload");
  Parsed root = parse({"--bogus", "status"});
  EXPECT_EQ(root.code, 125);
  EXPECT_EQ(root.err, usage_error("unknown flag: --bogus", "docker offload COMMAND",
                                  "docker offload"));
  // One verb per run: a second one is a stray argument of the first.
  expect_argument_error({"status", "ps"}, "docker: 'docker offload status' accepts no arguments",
                        "docker offload status [OPTIONS]", "docker offload status");
}

TEST(Parse, AccountsArguments) {
  expect_argument_error({"accounts", "add", "gpu"},
                        "docker: 'docker offload accounts add' requires 2 arguments",
                        "docker offload accounts add NAME JOINSTRING",
                        "docker offload accounts add");
  expect_argument_error({"accounts", "remove"},
                        "docker: 'docker offload accounts remove' requires 1 argument",
                        "docker offload accounts remove NAME", "docker offload accounts remove");
  expect_argument_error({"accounts", "bogus"}, "docker: unknown command: docker offload accounts bogus",
                        "docker offload accounts [OPTIONS] [COMMAND]", "docker offload accounts");
  Parsed bogus = parse({"accounts", "add", "--bogus"});
  EXPECT_EQ(bogus.code, 125);
  EXPECT_EQ(bogus.err, usage_error("unknown flag: --bogus",
                                   "docker offload accounts add NAME JOINSTRING",
                                   "docker offload accounts add"));
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
            "  -g, --gpu                     Request an engine with GPU support (the runner's "
            "NVIDIA GPUs)\n"
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
