// AccountTokens: which account, if any, a presented bearer token belongs to.
#include "offload/runner/account_tokens.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>

using namespace offload::runner;

namespace {

const std::string kAlice = "0123456789abcdef0123456789abcdef";
const std::string kBob = "fedcba9876543210fedcba9876543210";

using Tokens = std::map<std::string, std::string>;

AccountTokens two_accounts() { return AccountTokens(Tokens{{"alice", kAlice}, {"bob", kBob}}); }

}  // namespace

TEST(AccountTokens, TheRightTokenNamesItsAccount) {
  auto accounts = two_accounts();
  EXPECT_EQ(accounts.authenticate(kAlice), std::optional<std::string>("alice"));
  EXPECT_EQ(accounts.authenticate(kBob), std::optional<std::string>("bob"));
}

TEST(AccountTokens, AWrongOrEmptyTokenNamesNoAccount) {
  auto accounts = two_accounts();
  EXPECT_EQ(accounts.authenticate("not-a-token-of-this-runner-0123"), std::nullopt);
  EXPECT_EQ(accounts.authenticate(""), std::nullopt);
  // An account name is not its token.
  EXPECT_EQ(accounts.authenticate("alice"), std::nullopt);
}

TEST(AccountTokens, APrefixOrExtensionOfATokenNamesNoAccount) {
  auto accounts = two_accounts();
  EXPECT_EQ(accounts.authenticate(kAlice.substr(0, kAlice.size() - 1)), std::nullopt);
  EXPECT_EQ(accounts.authenticate(kAlice.substr(0, 1)), std::nullopt);
  EXPECT_EQ(accounts.authenticate(kAlice + "0"), std::nullopt);
}

TEST(AccountTokens, AnAccountWithAnEmptyTokenCannotBeEnteredWithNoToken) {
  AccountTokens accounts(Tokens{{"careless", ""}});
  EXPECT_EQ(accounts.authenticate(""), std::nullopt);
}

TEST(AccountTokens, NoAccountsAcceptNothing) {
  AccountTokens accounts(Tokens{});
  EXPECT_EQ(accounts.authenticate(kAlice), std::nullopt);
}
