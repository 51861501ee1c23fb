// What a spawned program inherits: stdin, stdout and stderr, nothing else. dockerd started by
// the runner, the runner started by offloadd and offloadd started by the CLI must not keep the
// parent's listeners and connections open (Asio opens its sockets without SOCK_CLOEXEC).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "offload/common/process.h"
#include "temp_dir.h"

using namespace offload;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// Descriptors the child must not see, opened the way the daemons open theirs.
class Inheritable : public ::testing::Test {
 protected:
  void SetUp() override {
    marker_ = dir_ / "held-open-by-the-parent";
    std::ofstream(marker_) << "x";
    file_fd_ = ::open(marker_.c_str(), O_RDONLY);  // no O_CLOEXEC, on purpose
    ASSERT_GE(file_fd_, 0);
    acceptor_.open(boost::asio::ip::tcp::v4());
    acceptor_.bind({boost::asio::ip::address_v4::loopback(), 0});
    acceptor_.listen();
    // The premise of the test: Asio leaves its descriptors inheritable.
    ASSERT_EQ(::fcntl(acceptor_.native_handle(), F_GETFD) & FD_CLOEXEC, 0);
    ASSERT_EQ(::fcntl(file_fd_, F_GETFD) & FD_CLOEXEC, 0);
    struct stat st {};
    ASSERT_EQ(::fstat(acceptor_.native_handle(), &st), 0);
    socket_link_ = "socket:[" + std::to_string(st.st_ino) + "]";
  }
  void TearDown() override {
    if (file_fd_ >= 0) ::close(file_fd_);
  }

  // `ls -l /proc/self/fd/` as the child sees it: one line per descriptor with its target.
  void expect_nothing_inherited(const std::string& listing) {
    ASSERT_NE(listing.find(" 0 -> "), std::string::npos) << listing;  // the listing is real
    EXPECT_EQ(listing.find(marker_.string()), std::string::npos)
        << "the child inherited fd " << file_fd_ << ":\n" << listing;
    EXPECT_EQ(listing.find(socket_link_), std::string::npos)
        << "the child inherited the listener (fd " << acceptor_.native_handle() << "):\n"
        << listing;
  }

  test::TempDir dir_{"offload-fds"};
  fs::path marker_;
  int file_fd_ = -1;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  std::string socket_link_;
};

TEST_F(Inheritable, ASpawnedProcessGetsOnlyItsStandardDescriptors) {
  fs::path log = dir_ / "child.log";
  SpawnOptions options;
  options.log_file = log;
  options.new_session = false;
  std::string error;
  pid_t pid = spawn_process({"ls", "-l", "/proc/self/fd/"}, options, error);
  ASSERT_GT(pid, 0) << error;
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "ls did not exit";
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::stringstream listing;
  listing << std::ifstream(log).rdbuf();
  expect_nothing_inherited(listing.str());
}

TEST_F(Inheritable, ARunCommandGetsOnlyItsStandardDescriptors) {
  auto r = run_command({"ls", "-l", "/proc/self/fd/"}, 10s);
  ASSERT_TRUE(r.ok()) << r.error << r.output;
  expect_nothing_inherited(r.output);
}

}  // namespace
