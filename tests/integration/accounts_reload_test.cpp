// The accounts file reloaded under a live runner (issue 12, onboarding): offloadd's RunnerClient ⇄
// loopback TLS ⇄ RunnerService, with the runner's AccountsFileWatcher feeding set_accounts as
// `offload-runner serve` does. No polling thread: the test asks the watcher to look.
#include <gtest/gtest.h>

#include <filesystem>

#include "offload/common/fs.h"
#include "offload/common/token.h"
#include "offload/daemon/runner_client.h"
#include "offload/runner/accounts_file.h"
#include "offload/runner/runner_service.h"
#include "test_target.h"

namespace {

using namespace offload;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using offload::testing::InProcessRunner;

class AccountsReload : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("offload-accounts-reload-" + random_hex(4));
    fs::create_directories(dir_);
    file_ = dir_ / "accounts";
    alice_ = random_hex(32);
    write("# the team\nalice:" + alice_ + "\n");
    runner_ = std::make_unique<InProcessRunner>(dir_, [&](runner::RunnerOptions& o) {
      o.account_tokens = {{"alice", alice_}};
    });
    watcher_ = std::make_unique<runner::AccountsFileWatcher>(
        file_, [this](auto accounts) { runner_->service().set_accounts(std::move(accounts)); });
  }

  void TearDown() override {
    watcher_.reset();
    runner_.reset();
    fs::remove_all(dir_);
  }

  void write(const std::string& text) { ASSERT_FALSE(write_file_atomic(file_, text)); }

  std::unique_ptr<daemon::RunnerClient> client(const std::string& token) {
    return std::make_unique<daemon::RunnerClient>(
        daemon::RunnerEndpoint{runner_->address(), runner_->identity.fingerprint, token});
  }

  static grpc::StatusCode hello_code(daemon::RunnerClient& c) {
    try {
      c.hello(5s);
      return grpc::StatusCode::OK;
    } catch (const daemon::RunnerError& e) {
      return e.code;
    }
  }

  fs::path dir_, file_;
  std::string alice_;
  std::unique_ptr<InProcessRunner> runner_;
  std::unique_ptr<runner::AccountsFileWatcher> watcher_;
};

TEST_F(AccountsReload, AnAddedAccountWorksAtOnceAndARemovedOneKeepsItsRunningSession) {
  // bob is not known yet.
  const std::string bob = random_hex(32);
  auto bob_client = client(bob);
  EXPECT_EQ(hello_code(*bob_client), grpc::StatusCode::UNAUTHENTICATED);

  // Added to the file: the next look applies it, and bob creates a session at once.
  write("# the team\nalice:" + alice_ + "\nbob:" + bob + " max-sessions=1\n");
  ASSERT_TRUE(watcher_->reload_if_changed());
  EXPECT_EQ(hello_code(*bob_client), grpc::StatusCode::OK);
  auto created = bob_client->create_session("bob@laptop", 10s);
  bob_client->attach(created.session_id(), created.session_token());
  // bob's max-sessions=1 came with him.
  EXPECT_THROW(client(bob)->create_session("second", 10s), daemon::RunnerError);

  // alice has a session too; then both leave the file except alice.
  auto alice_client = client(alice_);
  auto alice_session = alice_client->create_session("alice@laptop", 10s);
  ASSERT_EQ(runner_->service().session_count(), 2u);
  write("# the team\nalice:" + alice_ + "\n");
  ASSERT_TRUE(watcher_->reload_if_changed());

  // bob's token no longer greets nor creates...
  EXPECT_EQ(hello_code(*client(bob)), grpc::StatusCode::UNAUTHENTICATED);
  try {
    client(bob)->create_session("again", 10s);
    ADD_FAILURE() << "a removed account created a session";
  } catch (const daemon::RunnerError& e) {
    EXPECT_EQ(e.code, grpc::StatusCode::UNAUTHENTICATED) << e.what();
  }
  // ...but his running session goes on, with its own session token.
  EXPECT_EQ(runner_->service().session_count(), 2u);
  EXPECT_NE(runner_->service().find_session(created.session_id()), nullptr);
  EXPECT_EQ(bob_client->get_session().session_id(), created.session_id());
  // alice was not touched.
  EXPECT_EQ(hello_code(*alice_client), grpc::StatusCode::OK);
  EXPECT_EQ(runner_->backend().created, 2);
}

TEST_F(AccountsReload, AMalformedFileKeepsTheAccountsInForce) {
  const std::string bob = random_hex(32);
  write("alice:" + alice_ + "\nbob " + bob + "\n");  // no colon: malformed
  EXPECT_FALSE(watcher_->reload_if_changed());
  EXPECT_EQ(hello_code(*client(alice_)), grpc::StatusCode::OK);
  EXPECT_EQ(hello_code(*client(bob)), grpc::StatusCode::UNAUTHENTICATED);
  // Nothing changed since: no new attempt, the old accounts stay.
  EXPECT_FALSE(watcher_->reload_if_changed());
  // SIGHUP's explicit reload fails the same way and changes nothing either.
  EXPECT_FALSE(watcher_->reload("SIGHUP"));
  EXPECT_EQ(hello_code(*client(alice_)), grpc::StatusCode::OK);
  // Fixed: applied.
  write("alice:" + alice_ + "\nbob:" + bob + "\n");
  EXPECT_TRUE(watcher_->reload_if_changed());
  EXPECT_EQ(hello_code(*client(bob)), grpc::StatusCode::OK);
}

TEST_F(AccountsReload, AFileWithoutAccountsRefusesEveryNewSession) {
  auto alice_client = client(alice_);
  auto created = alice_client->create_session("alice@laptop", 10s);
  alice_client->attach(created.session_id(), created.session_token());
  write("# everyone removed\n");
  ASSERT_TRUE(watcher_->reload_if_changed());
  EXPECT_EQ(hello_code(*client(alice_)), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(alice_client->get_session().session_id(), created.session_id());
}

}  // namespace
