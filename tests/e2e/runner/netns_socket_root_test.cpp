// socket_in_network_namespace against a real network namespace (ip netns).
// Needs root; skips otherwise.
#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <filesystem>
#include <string>
#include <thread>

#include "offload/common/process.h"
#include "offload/runner/netns_socket.h"

using namespace offload;
using namespace offload::runner;

namespace {

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// The network namespace a socket lives in (SIOCGSKNS gives a descriptor of it).
ino_t namespace_of_socket(int fd) {
  const int ns = ::ioctl(fd, SIOCGSKNS);
  if (ns < 0) return 0;
  struct stat st {};
  const ino_t inode = ::fstat(ns, &st) == 0 ? st.st_ino : 0;
  ::close(ns);
  return inode;
}

class NetnsSocket : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    name_ = "offload-nstest-" + std::to_string(::getpid());
    auto made = run_command({"ip", "netns", "add", name_});
    ASSERT_TRUE(made.ok()) << made.error << made.output;
    path_ = "/var/run/netns/" + name_;
  }
  void TearDown() override {
    if (!name_.empty()) run_command({"ip", "netns", "del", name_});
  }
  std::string name_, path_;
};

TEST_F(NetnsSocket, TheSocketLivesInTheNamespaceAndTheThreadStaysHome) {
  const ino_t home = inode_of("/proc/thread-self/ns/net");
  const ino_t theirs = inode_of(path_);
  ASSERT_NE(home, 0u);
  ASSERT_NE(theirs, home);
  for (int type : {SOCK_STREAM, SOCK_DGRAM}) {
    std::error_code ec;
    const int fd = socket_in_network_namespace(path_, AF_INET, type, ec);
    ASSERT_GE(fd, 0) << ec.message();
    EXPECT_EQ(namespace_of_socket(fd), theirs);
    EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
    ::close(fd);
    EXPECT_EQ(inode_of("/proc/thread-self/ns/net"), home) << "the thread was left in " << name_;
  }
  // A socket made afterwards, the usual way, is the runner's own again.
  const int ours = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(ours, 0);
  EXPECT_EQ(namespace_of_socket(ours), home);
  ::close(ours);
}

TEST_F(NetnsSocket, AThreadThatDialsManyTimesKeepsItsOwnNamespace) {
  // The loop threads dial over and over, and each remembers its own namespace:
  // another thread's visit elsewhere changes nothing for it.
  const ino_t home = inode_of("/proc/thread-self/ns/net");
  const ino_t theirs = inode_of(path_);
  auto dial_many = [&](int domain) {
    for (int i = 0; i < 200; ++i) {
      std::error_code ec;
      const int fd = socket_in_network_namespace(path_, domain, SOCK_STREAM, ec);
      ASSERT_GE(fd, 0) << ec.message();
      ASSERT_EQ(namespace_of_socket(fd), theirs);
      ::close(fd);
    }
    EXPECT_EQ(inode_of("/proc/thread-self/ns/net"), home);
  };
  std::thread other(dial_many, AF_INET);
  dial_many(AF_INET6);
  other.join();
  EXPECT_EQ(inode_of("/proc/thread-self/ns/net"), home);
}

TEST_F(NetnsSocket, ANamespaceThatIsGoneIsAnErrorAndTheThreadStaysHome) {
  const ino_t home = inode_of("/proc/thread-self/ns/net");
  ASSERT_TRUE(run_command({"ip", "netns", "del", name_}).ok());
  name_.clear();
  std::error_code ec;
  EXPECT_EQ(socket_in_network_namespace(path_, AF_INET, SOCK_STREAM, ec), -1);
  EXPECT_EQ(ec, std::errc::no_such_file_or_directory) << ec.message();
  // Not a namespace at all (a regular file): setns refuses, nothing changes.
  ec.clear();
  EXPECT_EQ(socket_in_network_namespace("/proc/self/status", AF_INET, SOCK_STREAM, ec), -1);
  EXPECT_TRUE(ec) << "setns accepted a file that is no namespace";
  EXPECT_EQ(inode_of("/proc/thread-self/ns/net"), home);
}

}  // namespace
