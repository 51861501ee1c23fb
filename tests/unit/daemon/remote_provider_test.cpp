#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "offload/common/fs.h"
#include "offload/daemon/provider.h"
#include "temp_dir.h"

using namespace offload;
using namespace offload::daemon;
namespace fs = std::filesystem;
using offload::test::TempDir;

namespace {

const std::string kFp = "sha256:" + std::string(64, 'c');
const std::string kToken = "s3cret-account-token-0123456789";

RemoteAccountSettings settings(const std::string& token_file) {
  return RemoteAccountSettings{"runner.example.com:7443", token_file, kFp};
}

// The ProvisionError message provision() throws, or "" when it succeeds.
std::string provision_error(RemoteProvider& provider) {
  try {
    provider.provision(std::chrono::seconds(1));
  } catch (const ProvisionError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST(RemoteProvider, DescribesItself) {
  TempDir dir;
  RemoteProvider provider(settings("gpu.token"), dir.path());
  EXPECT_EQ(provider.type(), "remote");
  EXPECT_EQ(provider.description(), "Runner at runner.example.com:7443");
  EXPECT_EQ(provider.address(), "runner.example.com:7443");
  EXPECT_EQ(provider.fingerprint(), kFp);
  EXPECT_EQ(provider.token_file(), dir.path() / "gpu.token");
  const Provider& base = provider;
  EXPECT_EQ(base.address(), "runner.example.com:7443");
}

TEST(RemoteProvider, AbsoluteTokenFileIsKept) {
  TempDir dir;
  RemoteProvider provider(settings((dir.path() / "elsewhere" / "t").string()), "/unused");
  EXPECT_EQ(provider.token_file(), dir.path() / "elsewhere" / "t");
}

TEST(RemoteProvider, ProvisionReturnsTheEndpoint) {
  TempDir dir;
  ASSERT_FALSE(write_file_atomic(dir.path() / "gpu.token", kToken + "\n"));
  RemoteProvider provider(settings("gpu.token"), dir.path());
  auto runner = provider.provision(std::chrono::seconds(1));
  EXPECT_EQ(runner.endpoint.address, "runner.example.com:7443");
  EXPECT_EQ(runner.endpoint.fingerprint, kFp);
  EXPECT_EQ(runner.endpoint.account_token, kToken);
  EXPECT_EQ(runner.runner_pid, -1);
  provider.release(runner);  // nothing to stop; must not throw
  EXPECT_TRUE(fs::exists(dir.path() / "gpu.token"));
}

TEST(RemoteProvider, TokenIsTheFirstNonEmptyLineTrimmed) {
  TempDir dir;
  for (const std::string& text :
       {kToken, kToken + "\r\n", "\n\n  \t\n  " + kToken + " \t\r\nsecond-line-ignored\n",
        "\r\n" + kToken}) {
    ASSERT_FALSE(write_file_atomic(dir.path() / "t", text));
    RemoteProvider provider(settings("t"), dir.path());
    EXPECT_EQ(provider.read_token(), kToken) << text;
  }
}

TEST(RemoteProvider, MissingTokenFileNamesIt) {
  TempDir dir;
  RemoteProvider provider(settings("gpu.token"), dir.path());
  auto msg = provision_error(provider);
  EXPECT_EQ(msg, "cannot read the account token file " + display_path(dir.path() / "gpu.token") +
                     ": No such file or directory (put the account's token, from the runner's "
                     "operator, in it)");
}

TEST(RemoteProvider, UnreadableTokenFileNamesIt) {
  TempDir dir;
  fs::create_directories(dir.path() / "gpu.token");  // a directory: read fails
  RemoteProvider provider(settings("gpu.token"), dir.path());
  auto msg = provision_error(provider);
  EXPECT_TRUE(contains(
      msg, "cannot read the account token file " + display_path(dir.path() / "gpu.token") + ": "))
      << msg;
}

TEST(RemoteProvider, EmptyTokenFile) {
  TempDir dir;
  for (const char* text : {"", "\n", "  \r\n\t\n"}) {
    ASSERT_FALSE(write_file_atomic(dir.path() / "gpu.token", text));
    RemoteProvider provider(settings("gpu.token"), dir.path());
    EXPECT_EQ(provision_error(provider),
              "the account token file " + display_path(dir.path() / "gpu.token") +
                  " is empty (put the account's token, from the runner's operator, in it)");
  }
}

TEST(RemoteProvider, TokenNeverAppearsInMessages) {
  TempDir dir;
  // A first line that is not a token: refused, and the message still does not quote it.
  const std::string secret = "my secret\x01token";
  ASSERT_FALSE(write_file_atomic(dir.path() / "gpu.token", secret + "\n"));
  RemoteProvider provider(settings("gpu.token"), dir.path());
  auto msg = provision_error(provider);
  EXPECT_TRUE(contains(msg, "is not a token")) << msg;
  EXPECT_FALSE(contains(msg, "secret")) << msg;
  EXPECT_FALSE(contains(msg, "my ")) << msg;
}

TEST(RemoteProvider, ReadsTheFileAtEveryProvision) {
  // A rotated token is picked up by the next start without restarting offloadd.
  TempDir dir;
  RemoteProvider provider(settings("gpu.token"), dir.path());
  ASSERT_FALSE(write_file_atomic(dir.path() / "gpu.token", "first-token-0123456789\n"));
  EXPECT_EQ(provider.provision(std::chrono::seconds(1)).endpoint.account_token,
            "first-token-0123456789");
  ASSERT_FALSE(write_file_atomic(dir.path() / "gpu.token", "second-token-0123456789\n"));
  EXPECT_EQ(provider.provision(std::chrono::seconds(1)).endpoint.account_token,
            "second-token-0123456789");
}
