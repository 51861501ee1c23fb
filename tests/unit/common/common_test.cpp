#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <array>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "offload/common/clock.h"
#include "offload/common/log.h"
#include "offload/common/duration.h"
#include "offload/common/fs.h"
#include "offload/common/process.h"
#include "offload/common/text.h"
#include "offload/common/token.h"

using namespace offload;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST(Duration, ParsesGoStyle) {
  EXPECT_EQ(parse_duration("5m"), 5min);
  EXPECT_EQ(parse_duration("90s"), 90s);
  EXPECT_EQ(parse_duration("1h30m"), 90min);
  EXPECT_EQ(parse_duration("250ms"), 250ms);
  EXPECT_EQ(parse_duration("0"), 0ms);
}

TEST(Duration, RejectsBadInput) {
  for (const char* bad : {"", "5", "-5m", "5x", "m", "1.5h", "5m ", "99999999999999999999h"})
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
}

TEST(Duration, FormatsRoundTrip) {
  EXPECT_EQ(format_duration(90min), "1h30m");
  EXPECT_EQ(format_duration(0ms), "0s");
  EXPECT_EQ(*parse_duration(format_duration(3723004ms)), 3723004ms);
  EXPECT_EQ(humanize_duration(180s), "3 minutes");
  EXPECT_EQ(humanize_duration(1s), "1 second");
}

TEST(Token, RandomAndCompare) {
  auto a = random_hex(32), b = random_hex(32);
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, b);
  EXPECT_TRUE(secrets_equal(a, a));
  EXPECT_FALSE(secrets_equal(a, b));
  EXPECT_FALSE(secrets_equal(a, a.substr(0, 63)));
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Fs, AtomicWriteReplacesAndSetsMode) {
  auto dir = fs::temp_directory_path() / ("offload-fs-" + random_hex(4));
  ASSERT_FALSE(ensure_private_dir(dir / "sub"));
  struct stat st {};
  ASSERT_EQ(::stat((dir / "sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto file = dir / "sub" / "f.json";
  ASSERT_FALSE(write_file_atomic(file, "one"));
  ASSERT_FALSE(write_file_atomic(file, "two", fs::perms(0644)));
  std::string content;
  ASSERT_FALSE(read_file(file, content));
  EXPECT_EQ(content, "two");
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  // No temporary files left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "sub"), fs::directory_iterator()), 1);
  EXPECT_EQ(read_file(dir / "missing", content), std::errc::no_such_file_or_directory);
  fs::remove_all(dir);
}

TEST(Process, RunCommandCapturesOutputAndExitCode) {
  auto r = run_command({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.output.find("out"), std::string::npos);
  EXPECT_NE(r.output.find("err"), std::string::npos);
  auto missing = run_command({"/nonexistent/program"});
  EXPECT_EQ(missing.exit_code, -1);
  EXPECT_FALSE(missing.error.empty());
  auto slow = run_command({"sleep", "5"}, 100ms);
  EXPECT_EQ(slow.exit_code, -1);
  EXPECT_NE(slow.error.find("timed out"), std::string::npos);
}

TEST(Process, BlockSignalsForSigwaitBlocksThemAndIgnoresSigpipe) {
  // On a thread of its own: the mask is per thread and the test runner's must stay as it is.
  std::thread([] {
    const sigset_t set = block_signals_for_sigwait({SIGUSR1, SIGUSR2});
    EXPECT_TRUE(sigismember(&set, SIGUSR1));
    EXPECT_TRUE(sigismember(&set, SIGUSR2));
    EXPECT_FALSE(sigismember(&set, SIGTERM));
    sigset_t blocked;
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, nullptr, &blocked), 0);
    EXPECT_TRUE(sigismember(&blocked, SIGUSR1));
    EXPECT_TRUE(sigismember(&blocked, SIGUSR2));
    // A blocked signal waits for sigwait instead of killing the process.
    ASSERT_EQ(pthread_kill(pthread_self(), SIGUSR2), 0);
    int sig = 0;
    ASSERT_EQ(sigwait(&set, &sig), 0);
    EXPECT_EQ(sig, SIGUSR2);
  }).join();
  struct sigaction action {};
  ASSERT_EQ(sigaction(SIGPIPE, nullptr, &action), 0);
  EXPECT_EQ(action.sa_handler, SIG_IGN);
}

TEST(Text, JoinsAnyRangeOfStrings) {
  EXPECT_EQ(join(std::vector<std::string>{}), "");
  EXPECT_EQ(join(std::vector<std::string>{"a"}), "a");
  EXPECT_EQ(join(std::vector<std::string>{"a", "b", "c"}), "a, b, c");
  EXPECT_EQ(join(std::array<const char*, 2>{"x", "y"}, "|"), "x|y");
}

TEST(Text, ShortSessionIdIsTheFirstEightCharacters) {
  EXPECT_EQ(short_session_id("0123456789abcdef0123456789abcdef"), "01234567");
  EXPECT_EQ(short_session_id("abc"), "abc");
}

TEST(Clock, UnixNowIsWallClockMilliseconds) {
  auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  auto now = unix_now_ms();
  EXPECT_GE(now, before);
  EXPECT_GT(now, 1'600'000'000'000);  // after 2020: milliseconds, not seconds
}

namespace offload {
namespace {

TEST(JsonLog, OneObjectPerLineWithTheSessionAsAField) {
  const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'700'000'000'123));
  EXPECT_EQ(json_log_line(t, "info", "offload-runner", "session 0123abcd: running (engine 20.10)"),
            "{\"time\":\"2023-11-14T22:13:20.123Z\",\"level\":\"info\",\"message\":\"running "
            "(engine 20.10)\",\"fields\":{\"program\":\"offload-runner\",\"session\":\"0123abcd\"}}\n");
  EXPECT_EQ(json_log_line(t, "warning", "p", "a \"quoted\"\tline\nnext\x01"),
            "{\"time\":\"2023-11-14T22:13:20.123Z\",\"level\":\"warning\",\"message\":\"a "
            "\\\"quoted\\\"\\tline\\nnext\\u0001\",\"fields\":{\"program\":\"p\"}}\n");
  // Not the runner's session prefix: the message stays whole.
  EXPECT_NE(json_log_line(t, "info", "p", "session of bob: x").find("\"session of bob: x\""),
            std::string::npos);
}

}  // namespace
}  // namespace offload
