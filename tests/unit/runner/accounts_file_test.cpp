// The accounts file as `offload-runner accounts` edits it and as a running runner follows it.
#include "offload/runner/accounts_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "offload/common/fs.h"
#include "temp_dir.h"
#include "error_of.h"

using namespace offload;
using namespace offload::runner;
using ::testing::HasSubstr;
using ::testing::Not;
using offload::test::TempDir;

namespace {

const std::string kTokenA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const std::string kTokenB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

using offload::testing::error_of;

// Comments, odd spacing, CRLF, settings and no final newline: all must survive edits.
const std::string kHandWritten =
    "# Team accounts -- ask ops@ before adding\n"
    "\n"
    "  alice:" + kTokenA + "   max-sessions=2\r\n"
    "# bob is on leave\n"
    "carol:" + kTokenB + " allow=devices,cap:sys_ptrace";

}  // namespace

TEST(AccountsFileEdit, AddAppendsOneLineAndKeepsEveryOtherByte) {
  const std::string out =
      with_account_added(kHandWritten, "dave", kTokenB + "cc", "max-sessions=1", "accounts");
  EXPECT_EQ(out, kHandWritten + "\ndave:" + kTokenB + "cc max-sessions=1\n");
  auto parsed = parse_accounts_file(out, "accounts");
  ASSERT_EQ(parsed.size(), 3u);
  EXPECT_EQ(parsed.at("dave").settings.max_sessions, 1u);
  EXPECT_EQ(parsed.at("alice").settings.max_sessions, 2u);
}

TEST(AccountsFileEdit, AddToAnEmptyOrAbsentFile) {
  EXPECT_EQ(with_account_added("", "dave", kTokenA, "", "accounts"), "dave:" + kTokenA + "\n");
  EXPECT_EQ(with_account_added("# none yet\n", "dave", kTokenA, "", "accounts"),
            "# none yet\ndave:" + kTokenA + "\n");
}

TEST(AccountsFileEdit, AddRefusesATakenOrInvalidNameAndBadSettingsWithoutEchoingTokens) {
  EXPECT_THAT(error_of([] { with_account_added(kHandWritten, "alice", "x" + kTokenB, "", "f"); }),
              HasSubstr("account \"alice\" exists already"));
  for (const std::string& bad :
       std::vector<std::string>{"", "-x", "a b", "a:b", "a#b", "é", std::string(65, 'a')})
    EXPECT_THAT(error_of([&] { with_account_added("", bad, kTokenA, "", "f"); }),
                HasSubstr("is not a valid account name"))
        << bad;
  const std::string message =
      error_of([] { with_account_added(kHandWritten, "dave", kTokenA, "allow=root", "f"); });
  EXPECT_THAT(message, HasSubstr("unknown allowance \"root\""));
  EXPECT_THAT(message, Not(HasSubstr(kTokenA)));
  // A file that is already broken is not edited (the error says so).
  EXPECT_THAT(error_of([] { with_account_added("nocolon\n", "dave", kTokenA, "", "f"); }),
              HasSubstr("fix the file first"));
}

TEST(AccountsFileEdit, RemoveDropsExactlyTheAccountsLine) {
  const std::string out = with_account_removed(kHandWritten, "alice", "accounts");
  EXPECT_EQ(out,
            "# Team accounts -- ask ops@ before adding\n"
            "\n"
            "# bob is on leave\n"
            "carol:" + kTokenB + " allow=devices,cap:sys_ptrace");
  // The last line, without a final newline.
  EXPECT_EQ(with_account_removed(kHandWritten, "carol", "accounts"),
            "# Team accounts -- ask ops@ before adding\n\n  alice:" + kTokenA +
                "   max-sessions=2\r\n# bob is on leave\n");
  // A commented-out account is not an account.
  EXPECT_THAT(error_of([] { with_account_removed(kHandWritten, "bob", "f"); }),
              HasSubstr("there is no account \"bob\""));
  // Removing everyone leaves a valid file without accounts.
  std::string none = with_account_removed(with_account_removed(kHandWritten, "alice", "f"),
                                          "carol", "f");
  EXPECT_TRUE(parse_accounts_file_allow_empty(none, "f").empty());
}

TEST(AccountsFileEdit, ListingShowsSettingsAndNeverTokens) {
  const std::string table = render_accounts(parse_accounts_file(kHandWritten, "f"));
  EXPECT_EQ(table,
            "NAME    SETTINGS\n"
            "alice   max-sessions=2\n"
            "carol   allow=devices,cap:SYS_PTRACE\n");
  EXPECT_THAT(table, Not(HasSubstr(kTokenA)));
  auto plain = parse_accounts_file("x:" + kTokenA + "\n", "f");
  EXPECT_THAT(render_accounts(plain), HasSubstr("x      (runner defaults)"));
}

TEST(AccountsFileEdit, DefaultAdvertiseAddressComesFromRunnerEnv) {
  const std::string env = "# comment\nOFFLOAD_RUNNER_LISTEN=0.0.0.0:7443\nOFFLOAD_RUNNER_ARGS=\n";
  EXPECT_EQ(default_advertise_address("runner1", env), "runner1:7443");
  EXPECT_EQ(default_advertise_address("runner1", "OFFLOAD_RUNNER_LISTEN=\"[::]:9000\"\n"),
            "runner1:9000");
  EXPECT_EQ(default_advertise_address("runner1", ""), "");
  EXPECT_EQ(default_advertise_address("runner1", "OFFLOAD_RUNNER_LISTEN=0.0.0.0:0\n"), "");
  EXPECT_EQ(default_advertise_address("runner1", "OFFLOAD_RUNNER_LISTEN=nonsense\n"), "");
  EXPECT_EQ(default_advertise_address("", env), "");
}

// --- AccountsFileWatcher: reload on change, the old accounts stay on a bad file ---

class Watcher : public ::testing::Test {
 protected:
  void write(const std::string& text) { ASSERT_FALSE(write_file_atomic(file_, text)); }
  std::unique_ptr<AccountsFileWatcher> watch() {
    return std::make_unique<AccountsFileWatcher>(file_, [this](auto accounts) {
      ++applied_;
      in_force_ = std::move(accounts);
    });
  }
  TempDir dir_;
  std::filesystem::path file_ = dir_.path() / "accounts";
  std::map<std::string, AccountEntry> in_force_;
  int applied_ = 0;
};

TEST_F(Watcher, AppliesAChangeOnceAndNothingWhenUnchanged) {
  write("alice:" + kTokenA + "\n");
  auto watcher = watch();
  EXPECT_FALSE(watcher->reload_if_changed()) << "the version it started with is not news";
  write("alice:" + kTokenA + "\nbob:" + kTokenB + " max-sessions=3\n");
  EXPECT_TRUE(watcher->reload_if_changed());
  EXPECT_FALSE(watcher->reload_if_changed());
  EXPECT_EQ(applied_, 1);
  ASSERT_EQ(in_force_.size(), 2u);
  EXPECT_EQ(in_force_.at("bob").token, kTokenB);
  EXPECT_EQ(in_force_.at("bob").settings.max_sessions, 3u);
}

TEST_F(Watcher, AMalformedOrMissingFileKeepsThePreviousAccounts) {
  write("alice:" + kTokenA + "\n");
  auto watcher = watch();
  write("alice:" + kTokenA + "\nbob:short\n");
  EXPECT_FALSE(watcher->reload_if_changed());
  EXPECT_FALSE(watcher->reload("SIGHUP"));
  EXPECT_EQ(applied_, 0) << "a bad version must never be applied";
  std::filesystem::remove(file_);
  EXPECT_FALSE(watcher->reload_if_changed());
  EXPECT_EQ(applied_, 0);
  write("bob:" + kTokenB + "\n");
  EXPECT_TRUE(watcher->reload_if_changed());
  EXPECT_EQ(applied_, 1);
  EXPECT_EQ(in_force_.count("alice"), 0u);
}

TEST_F(Watcher, SighupReloadsEvenWhenTheFileLooksUnchanged) {
  write("alice:" + kTokenA + "\n");
  auto watcher = watch();
  EXPECT_TRUE(watcher->reload("SIGHUP"));
  EXPECT_EQ(applied_, 1);
  EXPECT_EQ(in_force_.count("alice"), 1u);
}
